"""Multi-run studies (attention variants, ablations) and their seed summaries."""
from __future__ import annotations

import numpy as np

from .experiment import run_training
from .profiles import get_profile

ATTENTION_VARIANTS = {"none": "efficientnet_b0", "SE": "efficientnet_b0_se", "CBAM": "efficientnet_b0_cbam",
                      "MSFF": "efficientnet_b0_msff"}
# One training budget for all four variants; the cpu profile's is set by the slowest variant.
ATTENTION_CPU_EPOCHS = 6

# The ablation study: each entry changes one thing from the DeepEfficientNet recipe.
ABLATIONS: dict[str, dict] = {
    "recipe": {},
    "SE off": {"model_kwargs": {"se": False}},
    "label smoothing off": {"label_smoothing": 0.0},
    "dropout off": {"dropout": 0.0},
    "stochastic depth off": {"drop_path": 0.0},
    "all regularisation off": {"label_smoothing": 0.0, "dropout": 0.0, "drop_path": 0.0, "weight_decay": 0.0},
    "step schedule": {"schedule": "step"},
    "constant schedule": {"schedule": "constant"},
    "one-cycle schedule": {"schedule": "onecycle"},
    "no augmentation": {"augment": "none"},
    "basic augmentation": {"augment": "basic"},
    "SGD": {"optimizer": "sgd", "lr": 0.05, "weight_decay": 5e-4},
    "AMP off (fp32)": {"amp": "off"},
    "AMP bf16": {"amp": "bf16"},
    "batch 64": {"batch_size": 64},
    "batch 256": {"batch_size": 256, "lr": 4e-3},
}


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")


BASELINES = {"SimpleCNN": ("simple_cnn", {}), "ResNet-18": ("resnet18", {}),
             "EfficientNet-Lite0 (scratch)": ("efficientnet_lite0", {}),
             "EfficientNet-Lite0 (ImageNet)": ("efficientnet_lite0", {"pretrained": True}),
             "DeepEfficientNet": ("deep_efficientnet", {})}


def run_baselines(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    """Each baseline once (seed 0) with its recipe; names and tags match `utils.train`'s runs."""
    prof = get_profile(profile)
    return [dict(run_training(model, dataset, prof.name, 0, model_kwargs=kwargs or None,
                              tag=f"{model}_pretrained" if kwargs.get("pretrained") else None), label=label)
            for label, (model, kwargs) in BASELINES.items()]


def run_attention_study(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    prof = get_profile(profile)
    budget = {"epochs": ATTENTION_CPU_EPOCHS} if prof.name == "cpu" else {}
    return [dict(run_training(model, dataset, prof.name, seed, tag=f"attention_{_slug(label)}", **budget),
                 label=label)
            for label, model in ATTENTION_VARIANTS.items() for seed in prof.seeds]


def run_ablation_study(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    prof = get_profile(profile)
    records = []
    for label, change in ABLATIONS.items():
        change = dict(change)
        model_kwargs = change.pop("model_kwargs", None)
        for seed in prof.seeds:
            # The unchanged recipe is the same run as notebook 03's, so it is reused, not retrained.
            tag = f"ablation_{_slug(label)}" if change or model_kwargs else None
            record = run_training("deep_efficientnet", dataset, prof.name, seed, model_kwargs=model_kwargs,
                                  tag=tag, **change)
            records.append(dict(record, label=label))
    return records


def summarize(records: list[dict], by: str = "label") -> list[dict]:
    """Mean and standard deviation over seeds of each group's validation/test metrics."""
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r[by], []).append(r)
    rows = []
    for name, rs in groups.items():
        row = {"name": name, "seeds": len(rs), "params": rs[0]["params"], "flops": rs[0]["flops"]}
        for split in ("val", "test"):
            for metric in ("acc", "macro_f1", "auc"):
                values = np.array([r[split][metric] for r in rs])
                row[f"{split}_{metric}_mean"] = float(values.mean())
                row[f"{split}_{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in rs]))
        rows.append(row)
    return rows


def format_summary(rows: list[dict], baseline: str | None = None) -> str:
    lines = [f"{'':<24}{'seeds':>6}{'params':>10}{'val acc %':>16}{'test acc %':>16}{'macro-F1':>10}{'train s':>9}"
             + (f"{'d val acc':>11}" if baseline else "")]
    base = next((r for r in rows if r["name"] == baseline), None)
    for r in rows:
        line = (f"{r['name']:<24}{r['seeds']:>6}{r['params'] / 1e6:>9.2f}M"
                f"{100 * r['val_acc_mean']:>10.2f} ±{100 * r['val_acc_std']:4.2f}"
                f"{100 * r['test_acc_mean']:>10.2f} ±{100 * r['test_acc_std']:4.2f}"
                f"{r['test_macro_f1_mean']:>10.4f}{r['train_seconds_mean']:>9.0f}")
        if base:
            line += f"{100 * (r['val_acc_mean'] - base['val_acc_mean']):>+11.2f}"
        lines.append(line)
    return "\n".join(lines)

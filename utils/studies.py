"""Multi-run studies (baselines, attention variants, ablations, architecture zoo, class imbalance,
PatchCamelyon) and their seed summaries. Each study is a table of named runs; the profile decides
seeds and, in the cpu profile, a stated smaller budget."""
from __future__ import annotations

import numpy as np
import torch

from .experiment import run_training
from .profiles import default_device, get_profile
from .training import resolve_amp

ATTENTION_VARIANTS = {"none": "efficientnet_b0", "SE": "efficientnet_b0_se", "CBAM": "efficientnet_b0_cbam",
                      "MSFF": "efficientnet_b0_msff"}
# One training budget for all four variants; the cpu profile's is set by the slowest variant.
ATTENTION_CPU_EPOCHS = 6

# The ablation budget per profile. cpu: 15 full-data runs would take about 2 hours on 2 cores, so each trains on
# the same stratified 3,000 training images for 4 epochs (val and test stay whole). smoke: 128 training images,
# which halves the longest notebook of make test (05).
ABLATION_BUDGET = {"smoke": {"train_limit": 128}, "cpu": {"train_limit": 3000, "epochs": 4}, "full": {}}

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


def run_deep_efficientnet(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    """DeepEfficientNet with its recipe once per profile seed (notebook 03; seed 0 is the run that
    notebook 06 explains and the other studies reuse)."""
    prof = get_profile(profile)
    return [run_training("deep_efficientnet", dataset, prof.name, seed) for seed in prof.seeds]


def run_baselines(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    """Each baseline with its recipe once per profile seed; names and tags match `utils.train`'s runs."""
    prof = get_profile(profile)
    return [dict(run_training(model, dataset, prof.name, seed, model_kwargs=kwargs or None), label=label)
            for label, (model, kwargs) in BASELINES.items() for seed in prof.seeds]


def run_attention_study(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    prof = get_profile(profile)
    budget = {"epochs": ATTENTION_CPU_EPOCHS} if prof.name == "cpu" else {}
    return [dict(run_training(model, dataset, prof.name, seed, tag=f"attention_{_slug(label)}", **budget),
                 label=label)
            for label, model in ATTENTION_VARIANTS.items() for seed in prof.seeds]


def effective_ablations(recipe_amp: torch.dtype | None) -> dict[str, dict]:
    """The ablations that change something where the recipe's ``amp="auto"`` resolves to ``recipe_amp``:
    "AMP off (fp32)" is the recipe itself on a CPU, "AMP bf16" the recipe itself on a bf16 GPU."""
    return {label: change for label, change in ABLATIONS.items()
            if "amp" not in change or resolve_amp(change["amp"], _device_of(change["amp"])) != recipe_amp}


def _device_of(amp: str) -> torch.device:
    # Explicit amp settings resolve the same on every device; only "auto" needs the real one.
    return default_device() if amp == "auto" else torch.device("cpu")


def run_ablation_study(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    prof = get_profile(profile)
    budget = ABLATION_BUDGET[prof.name]
    records = []
    for label, change in effective_ablations(resolve_amp("auto", default_device())).items():
        change = dict(change)
        model_kwargs = change.pop("model_kwargs", None)
        for seed in prof.seeds:
            # With the profile's own budget the unchanged recipe is notebook 03's run: reused, not retrained.
            changed = change or model_kwargs or budget
            tag = f"ablation_{_slug(label)}" if changed else None
            record = run_training("deep_efficientnet", dataset, prof.name, seed, model_kwargs=model_kwargs,
                                  tag=tag, **budget, **change)
            records.append(dict(record, label=label))
    return records


ZOO = {"CNN + CBAM": "cnn_attention", "VGG": "vgg", "Inception": "inception",
       "Autoencoder (pre-trained)": "autoencoder", "DeepCMorph-lite": "deepcmorph_lite"}


def run_zoo(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    """Each zoo model with the shared recipe, over the profile's seeds (same runs as `utils.train`)."""
    prof = get_profile(profile)
    return [dict(run_training(model, dataset, prof.name, seed), label=label)
            for label, model in ZOO.items() for seed in prof.seeds]


# Strategies against BloodMNIST's class imbalance, each a change to the SimpleCNN recipe.
IMBALANCE_STRATEGIES = {
    "cross_entropy": ("Cross-entropy", {}),
    "class_weighted": ("Class-weighted CE", {"class_weighted": True}),
    "balanced_sampling": ("Class-balanced sampling", {"balanced_sampling": True}),
    "focal": ("Focal loss", {"loss": "focal"}),
}
IMBALANCE_MODEL = "simple_cnn"
IMBALANCE_CPU_EPOCHS = 10


def run_imbalance_study(profile: str | None = None, dataset: str = "bloodmnist") -> list[dict]:
    prof = get_profile(profile)
    budget = {"epochs": IMBALANCE_CPU_EPOCHS} if prof.name == "cpu" else {}
    return [dict(run_training(IMBALANCE_MODEL, dataset, prof.name, seed, tag=f"imbalance_{key}",
                              labels={"imbalance": key}, **budget, **change), label=label)
            for key, (label, change) in IMBALANCE_STRATEGIES.items() for seed in prof.seeds]


PCAM_MODELS = {
    "EfficientNet-B0": ("efficientnet_b0", {}), "B0 + SE": ("efficientnet_b0_se", {}),
    "B0 + CBAM": ("efficientnet_b0_cbam", {}), "B0 + MSFF": ("efficientnet_b0_msff", {}),
    "DeepEfficientNet": ("deep_efficientnet", {}),
    "Lite0 (scratch)": ("efficientnet_lite0", {}), "Lite0 (ImageNet)": ("efficientnet_lite0", {"pretrained": True}),
    # ImageNet features were learnt at 224x224; 1.5x (144x144) costs 2.5x the compute of 96x96 on 2 cores.
    "Lite0 (ImageNet, 1.5x input)": ("efficientnet_lite0", {"pretrained": True, "input_scale": 1.5}),
}
# The cpu profile screens every entry on 2,000 stratified training patches for 3 epochs (3-8 minutes each
# on 2 cores), then trains the one with the best validation AUC on all training patches (7.3% of PCam, the
# budget of the targets) for 6 epochs: at 96x96 the ImageNet Lite0's all-patch run gained 0.0007
# validation AUC from 12 epochs over 6 (0.9484 vs 0.9477, both runs in results/runs) for twice the time,
# and at 1.5x input 6 epochs already take about 50 minutes. The full profile trains every entry on all
# patches, so it has no second stage. Smoke runs the same two stages on the Lite0 pair.
PCAM_SMOKE_MODELS = ("Lite0 (scratch)", "Lite0 (ImageNet)")
PCAM_SCREEN_BUDGET = {"smoke": {"train_limit": 192}, "cpu": {"train_limit": 2000, "epochs": 3}, "full": {}}
PCAM_FINAL_BUDGET = {"smoke": {}, "cpu": {"epochs": 6}, "full": None}
FINAL_SUFFIX = " (all patches)"


def run_pcam_study(profile: str | None = None) -> list[dict]:
    """Screen the PCAM_MODELS under the profile's PCAM_SCREEN_BUDGET, then, if the profile has a
    PCAM_FINAL_BUDGET, retrain the screen's best model on validation AUC on all training patches.
    Records carry ``label`` and ``stage`` ("screen" or "final")."""
    prof = get_profile(profile)
    models = {k: PCAM_MODELS[k] for k in PCAM_SMOKE_MODELS} if prof.name == "smoke" else PCAM_MODELS

    def train(label: str, budget: dict, stage: str) -> list[dict]:
        model, kwargs = PCAM_MODELS[label]
        return [dict(run_training(model, "pcam", prof.name, seed, model_kwargs=kwargs or None, **budget),
                     label=label + (FINAL_SUFFIX if stage == "final" else ""), stage=stage)
                for seed in prof.seeds]

    records = [r for label in models for r in train(label, PCAM_SCREEN_BUDGET[prof.name], "screen")]
    final_budget = PCAM_FINAL_BUDGET[prof.name]
    if final_budget is not None:
        winner = max(records, key=lambda r: r["val"]["auc"])["label"]
        records += train(winner, final_budget, "final")
    return records


# Training patches against validation AUC for one model at one budget per profile: how far does the 7.3% budget
# fall short, and how fast does more data help? The cpu profile's 6-epoch budget is the one whose
# all-patch run validation compared with 12 epochs (0.9477 vs 0.9484 AUC).
# The targets of the PatchCamelyon issue on our test split, with 7.3% of PCam's training patches.
PCAM_TARGETS = {"auc": 0.965, "acc": 0.90}
PCAM_SCALING_MODEL = "Lite0 (ImageNet)"
PCAM_SCALING = {"smoke": {"train_limits": (96, 192), "budget": {}},
                "cpu": {"train_limits": (2500, 5000, 10000, None), "budget": {"epochs": 6}},
                "full": {"train_limits": (2500, 5000, 10000, None), "budget": {}}}


def run_pcam_scaling(profile: str | None = None) -> list[dict]:
    """PCAM_SCALING_MODEL trained on stratified subsets of the training patches (None = all), over the
    profile's seeds; records carry ``label``."""
    prof = get_profile(profile)
    model, kwargs = PCAM_MODELS[PCAM_SCALING_MODEL]
    plan = PCAM_SCALING[prof.name]
    records = []
    for limit in plan["train_limits"]:
        for seed in prof.seeds:
            records.append(dict(run_training(model, "pcam", prof.name, seed, model_kwargs=kwargs, train_limit=limit,
                                             **plan["budget"]), label=PCAM_SCALING_MODEL))
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
        row["epochs"] = rs[0].get("config", {}).get("epochs", "")
        rows.append(row)
    return rows


def study_summary(session: dict, rows: list[dict], records: list[dict], chosen_by: str = "val_acc_mean",
                  **extra) -> dict:
    """A study's ``summary.json``: its rows and runs, and the row with the highest ``chosen_by`` (a
    validation metric: the test split never chooses)."""
    if not chosen_by.startswith("val_"):
        raise ValueError(f"a study's winner is chosen on validation, not on {chosen_by!r}")
    best = max(rows, key=lambda r: r[chosen_by])
    return {"session": session, **extra, "rows": rows, "runs": [r["run"] for r in records],
            "chosen_on": "val", "chosen_by": chosen_by, "best": best["name"]}


def _mean_sd(row: dict, metric: str) -> str:
    """Seed mean in percent, with its standard deviation when there are seeds to spread (16 characters)."""
    spread = f" ±{100 * row[f'{metric}_std']:4.2f}" if row["seeds"] > 1 else " " * 6
    return f"{100 * row[f'{metric}_mean']:>10.2f}{spread}"


def format_summary(rows: list[dict], baseline: str | None = None) -> str:
    width = max([len(r["name"]) for r in rows] + [8]) + 2
    lines = [f"{'':<{width}}{'seeds':>6}{'params':>10}{'MFLOPs':>8}{'epochs':>7}{'val acc %':>16}{'test acc %':>16}"
             f"{'macro-F1':>10}{'train s':>9}"
             + (f"{'d val acc':>11}" if baseline else "")]
    base = next((r for r in rows if r["name"] == baseline), None)
    for r in rows:
        line = (f"{r['name']:<{width}}{r['seeds']:>6}{r['params'] / 1e6:>9.2f}M{r['flops'] / 1e6:>8.1f}{r['epochs']:>7}"
                f"{_mean_sd(r, 'val_acc')}{_mean_sd(r, 'test_acc')}"
                f"{r['test_macro_f1_mean']:>10.4f}{r['train_seconds_mean']:>9.0f}")
        if base:
            line += f"{100 * (r['val_acc_mean'] - base['val_acc_mean']):>+11.2f}"
        lines.append(line)
    return "\n".join(lines)


def imbalance_summary(records: list[dict], class_names: list[str]) -> list[dict]:
    """Per strategy: seed mean and std of test macro-F1 and accuracy, and mean test recall per class."""
    rows = []
    for row in summarize(records):
        rs = [r for r in records if r["label"] == row["name"]]
        recall = np.array([[r["test"]["per_class"][c]["recall"] for c in class_names] for r in rs])
        rows.append(dict(row, imbalance=rs[0]["imbalance"], recall_mean=recall.mean(0).tolist(),
                         recall_std=(recall.std(0, ddof=1) if len(rs) > 1 else 0 * recall[0]).tolist(),
                         min_recall=float(recall.mean(0).min())))
    return rows


def format_imbalance(rows: list[dict], class_names: list[str]) -> str:
    from .plots import short_names
    names = short_names(class_names)
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'':<{width}}{'val macro-F1':>13}{'test macro-F1':>15}{'acc %':>8}  test recall per class: "
             + " ".join(f"{n:>6}" for n in names)]
    for r in rows:
        lines.append(f"{r['name']:<{width}}{r['val_macro_f1_mean']:>13.4f}"
                     f"{r['test_macro_f1_mean']:>8.4f} ±{r['test_macro_f1_std']:.3f}"
                     f"{100 * r['test_acc_mean']:>8.2f}  {'':<23}" + " ".join(f"{v:>6.3f}" for v in r["recall_mean"]))
    return "\n".join(lines)

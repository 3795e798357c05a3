"""Small analyses the notebooks show: tables, calibration, mistakes, CAM examples, ROAD."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .data import DEFAULT_DATA_ROOT, ImageDataset
from .metrics import apply_temperature, expected_calibration_error, fit_temperature, reliability_curve


def class_balance_table(data: ImageDataset) -> dict:
    counts = {s: data.class_counts(s) for s in data.splits}
    lines = [f"{'class':<24}" + "".join(f"{s:>8}" for s in counts) + f"{'train %':>9}"]
    total = sum(counts["train"])
    for c, name in enumerate(data.class_names):
        lines.append(f"{name.split('(')[0].strip():<24}" + "".join(f"{counts[s][c]:>8}" for s in counts)
                     + f"{100 * counts['train'][c] / total:>8.1f}%")
    return {"counts": counts, "imbalance_ratio": max(counts["train"]) / min(counts["train"]),
            "text": "\n".join(lines)}


def channel_statistics(data: ImageDataset) -> dict:
    out = {}
    for split, s in data.splits.items():
        x = s.images.float() / 255
        out[split] = {"mean": x.mean((0, 2, 3)).tolist(), "std": x.std((0, 2, 3)).tolist()}
    return out


def closest_lookalikes(data: ImageDataset, class_a: str, class_b: str, n: int = 8) -> dict:
    """Training images of ``class_a`` and ``class_b`` whose mean colour is closest to the other
    class's mean colour: n/2 of each, interleaved."""
    index = {name.split("(")[0].strip(): i for i, name in enumerate(data.class_names)}
    a, b = index[class_a], index[class_b]
    split = data.splits["train"]
    colour = (split.images.float() / 255).mean((2, 3))
    picks = []
    for mine, other in ((a, b), (b, a)):
        members = torch.nonzero(split.labels == mine).squeeze(1)
        target = colour[split.labels == other].mean(0)
        distance = (colour[members] - target).norm(dim=1)
        picks.append(members[distance.argsort()[: n // 2]].tolist())
    return {"images": [i for pair in zip(*picks) for i in pair]}


def per_class_table(per_class: dict) -> str:
    lines = [f"{'class':<24}{'precision':>10}{'recall':>8}{'F1':>8}{'n':>6}"]
    for name, m in per_class.items():
        lines.append(f"{name.split('(')[0].strip():<24}{m['precision']:>10.3f}{m['recall']:>8.3f}"
                     f"{m['f1']:>8.3f}{m['support']:>6}")
    return "\n".join(lines)


def load_predictions(record: dict) -> dict:
    with np.load(record["predictions"]) as npz:
        return {k: npz[k] for k in npz.files}


def calibration_study(record: dict) -> dict:
    """Temperature fitted on validation probabilities, applied to test: ECE and reliability before/after."""
    p = load_predictions(record)
    temperature = fit_temperature(p["val_probs"], p["val_labels"])
    scaled = apply_temperature(p["test_probs"], temperature)
    return {"temperature": temperature,
            "ece_before": expected_calibration_error(p["test_labels"], p["test_probs"]),
            "ece_after": expected_calibration_error(p["test_labels"], scaled),
            "curves": {"before": reliability_curve(p["test_labels"], p["test_probs"]),
                       f"after (T={temperature:.2f})": reliability_curve(p["test_labels"], scaled)}}


def most_confident_mistakes(record: dict, n: int = 16) -> dict:
    p = load_predictions(record)
    probs, labels = p["test_probs"], p["test_labels"]
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != labels)
    order = wrong[np.argsort(-probs[wrong].max(1))][:n]
    return {"index": order.tolist(), "true": labels[order].tolist(), "pred": pred[order].tolist(),
            "confidence": probs[order].max(1).tolist()}


def cam_examples(record: dict, per_class: int = 3, seed: int = 0, classes=None) -> dict:
    """Test indices with up to ``per_class`` correct and ``per_class`` wrong predictions per true class
    (of ``classes`` when given)."""
    p = load_predictions(record)
    labels, pred = p["test_labels"], p["test_probs"].argmax(1)
    rng = np.random.default_rng(seed)
    chosen = []
    for c in (np.unique(labels) if classes is None else classes):
        for ok in (True, False):
            pool = np.flatnonzero((labels == c) & ((pred == labels) == ok))
            chosen += rng.choice(pool, min(per_class, len(pool)), replace=False).tolist()
    chosen = np.array(chosen)
    return {"index": chosen.tolist(), "true": labels[chosen].tolist(), "pred": pred[chosen].tolist(),
            "correct": (pred[chosen] == labels[chosen]).tolist()}


def road_study(model, data: ImageDataset, record: dict, n: int = 256, seed: int = 0,
               percentiles=(20, 40, 60, 80)) -> dict:
    """Mean ROAD combined score of GradCAM, GradCAM++ and a random map on ``n`` test images,
    explaining the predicted class."""
    from .explain import compute_cams, road_scores
    p = load_predictions(record)
    rng = np.random.default_rng(seed)
    index = np.sort(rng.choice(len(p["test_labels"]), min(n, len(p["test_labels"])), replace=False))
    images = data.splits["test"].images[torch.as_tensor(index)].float() / 255
    classes = p["test_probs"][index].argmax(1).tolist()
    maps = {m: compute_cams(model, images, classes, m) for m in ("gradcam", "gradcam++")}
    maps["random"] = rng.random((len(index),) + tuple(images.shape[-2:])).astype(np.float32)
    scores = {m: road_scores(model, images, cams, classes, percentiles) for m, cams in maps.items()}
    return {"n": int(len(index)), "percentiles": list(percentiles),
            "mean": {m: float(s.mean()) for m, s in scores.items()},
            "std": {m: float(s.std()) for m, s in scores.items()}}


def score_road(record: dict, n: int, data_root=DEFAULT_DATA_ROOT, compute: bool = True) -> dict:
    """``road_study`` of a stored run's checkpoint on ``n`` test images, explaining its ``cam_layer``: a stored
    evaluation (``results/road/n<n>/<run>.json``, see ``experiment.stored_evaluation``)."""
    from .experiment import data_of, stored_evaluation
    from .models import load_checkpoint

    def evaluate() -> dict:
        model, _ = load_checkpoint(record["checkpoint"])
        data = data_of(record, data_root)
        return {"run": record["run"], "target_layer": model.cam_layer, **road_study(model, data, record, n)}
    return stored_evaluation(record, f"road/n{n}", evaluate, compute)


def binary_study(record: dict) -> dict:
    """Test metrics of a two-class run at 0.5 and at the threshold chosen on validation (Youden's J)."""
    from .metrics import binary_metrics, choose_threshold
    p = load_predictions(record)
    threshold = choose_threshold(p["val_labels"], p["val_probs"][:, 1])
    return {"run": record["run"], "threshold": threshold, "train_n": record["data"]["n"]["train"],
            "epochs": record["config"]["epochs"], "epochs_run": record["epochs_run"],
            "val_at_0.5": binary_metrics(p["val_labels"], p["val_probs"][:, 1], 0.5),
            "test_at_0.5": binary_metrics(p["test_labels"], p["test_probs"][:, 1], 0.5),
            "test_at_val_threshold": binary_metrics(p["test_labels"], p["test_probs"][:, 1], threshold)}


def binary_table(studies: dict[str, dict]) -> str:
    """One line per run: training patches, epochs, validation AUC, then test AUC, and accuracy /
    sensitivity / specificity / F1 at 0.5 and at the validation threshold."""
    width = max([len(name) for name in studies] + [8]) + 1
    lines = [f"{'':<{width}}{'train n':>7}{'ep':>3}{'val AUC':>8} | {'AUC':>6} | {'at 0.5: acc':>11}{'sens':>7}{'spec':>7}{'F1':>7} | "
             f"{'t(val)':>6}{'acc':>7}{'sens':>7}{'spec':>7}{'F1':>7}"]
    for name, s in studies.items():
        a, b = s["test_at_0.5"], s["test_at_val_threshold"]
        lines.append(f"{name:<{width}}{s['train_n']:>7}{s['epochs_run']:>3}{s['val_at_0.5']['auc']:>8.4f} | {a['auc']:>6.4f} | {a['acc']:>11.4f}{a['sensitivity']:>7.3f}{a['specificity']:>7.3f}"
                     f"{a['f1']:>7.3f} | {s['threshold']:>6.3f}{b['acc']:>7.4f}{b['sensitivity']:>7.3f}"
                     f"{b['specificity']:>7.3f}{b['f1']:>7.3f}")
    return "\n".join(lines)


def scaling_study(studies: dict[str, dict], targets: dict[str, float]) -> dict:
    """Validation metrics at 0.5 against training patches (runs of one model at one budget), with a straight
    line fitted to each metric against log10(patches) by least squares (``np.polyfit``) and the patches
    at which that line reaches each target. The fit uses validation only, so nothing said from it leans on
    the test split; test metrics are kept beside it for display. Learning curves flatten as data grows, so
    the line's answer is a lower bound on the patches a target needs, not a forecast."""
    points = sorted((s["train_n"], s) for s in studies.values())
    n = np.array([p[0] for p in points], dtype=float)
    out = {"train_n": n.astype(int).tolist(), "fitted_on": "val", "fits": {}}
    for metric, target in targets.items():
        values = np.array([p[1]["val_at_0.5"][metric] for p in points])
        slope, intercept = np.polyfit(np.log10(n), values, 1)
        decades = (target - intercept) / slope if slope > 0 else np.inf
        needed = float(10 ** decades) if decades < 15 else float("inf")  # beyond 10^15 patches: never
        out[f"val_{metric}"] = values.tolist()
        out[f"test_{metric}"] = [p[1]["test_at_0.5"][metric] for p in points]
        out["fits"][metric] = {"target": target, "per_tenfold": float(slope), "intercept": float(intercept),
                               "patches_for_target": needed}
    return out


def identity_but_epochs(record: dict) -> dict:
    """What names a run but its epochs: two records with the same one differ in nothing else."""
    return {"config": dict(record["config"], epochs=None),
            **{k: record.get(k) for k in ("model", "dataset", "profile", "profile_limits", "model_kwargs", "train_limit",
                                          "seed")}}


def epoch_variants(record: dict) -> list[dict]:
    """The stored runs in ``record``'s folder that differ from it in nothing but their epochs (itself included),
    each labelled as ``record`` (else by its model): the stored JSON has no label, and only the epochs differ."""
    from .experiment import load_results
    return [dict(r, label=record.get("label", record["model"]))
            for r in load_results(Path(record["predictions"]).parent)
            if identity_but_epochs(r) == identity_but_epochs(record)]


def pcam_levers(records: list[dict], best: dict, best_tta: dict, scaling: dict,
                epoch_runs: list[dict] = ()) -> list[dict]:
    """What each measured change bought in validation AUC (what decides) and test AUC, each change
    against the run it changes: ImageNet weights and a 1.5x input (screen runs of one seed), test-time
    augmentation (the best run on validation), more epochs (``epoch_runs``: runs that differ only in
    their epochs, fewest against most) and more training patches (the scaling study's smallest against
    its largest subset, seed means)."""
    from .studies import PCAM_SCALING_MODEL
    screen = {r["label"]: r for r in records if r.get("stage") == "screen" and r["seed"] == best["seed"]}
    rows = []

    def change(lever, before: dict, after: dict, before_name: str, after_name: str):
        rows.append({"lever": lever, "from": before_name, "to": after_name,
                     "val_auc": after["val"]["auc"] - before["val"]["auc"],
                     "test_auc": after["test"]["auc"] - before["test"]["auc"]})

    for lever, before, after in (("ImageNet weights", "Lite0 (scratch)", "Lite0 (ImageNet)"),
                                 ("1.5x input", "Lite0 (ImageNet)", "Lite0 (ImageNet, 1.5x input)")):
        if before in screen and after in screen:
            change(lever, screen[before], screen[after], before, after)
    change("test-time augmentation", best, best_tta, best["label"], best["label"] + " + TTA")
    if len(epoch_runs) > 1:
        fewest, most = (sorted(epoch_runs, key=lambda r: r["config"]["epochs"])[i] for i in (0, -1))
        name = f"{fewest['label']}, {fewest['data']['n']['train']:,} patches"
        change("more epochs", fewest, most, f"{name}, {fewest['config']['epochs']} epochs", f"{most['config']['epochs']} epochs")
    n = np.array(scaling["train_n"])
    if len(set(n)) > 1:
        lo, hi = n == n.min(), n == n.max()
        val, test = np.array(scaling["val_auc"]), np.array(scaling["test_auc"])
        rows.append({"lever": "more training patches", "from": f"{PCAM_SCALING_MODEL}, {n.min():,} patches",
                     "to": f"{n.max():,} patches", "val_auc": float(val[hi].mean() - val[lo].mean()),
                     "test_auc": float(test[hi].mean() - test[lo].mean())})
    return rows


def levers_table(rows: list[dict]) -> str:
    width = max(len(r["lever"]) for r in rows) + 2
    lines = [f"{'':<{width}}{'d val AUC':>10}{'d test AUC':>11}  from -> to"]
    for r in rows:
        lines.append(f"{r['lever']:<{width}}{r['val_auc']:>+10.4f}{r['test_auc']:>+11.4f}  {r['from']} -> {r['to']}")
    return "\n".join(lines)

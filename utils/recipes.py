"""Training recipes: the DeepEfficientNet recipe, its per-dataset changes, and the larger-batch option of
the GPU engine. Per-profile budgets are in utils/profiles.py."""
from __future__ import annotations

import dataclasses
import math

from .profiles import Profile
from .training import TrainConfig

# The DeepEfficientNet recipe, used for every model so comparisons share one engine: TrainConfig's defaults
# (AdamW + cosine with a 1-epoch warmup, lr 2e-3, weight decay 0.05, label smoothing 0.1, basic augmentation
# (flips and 90-degree turns, chosen on validation at full budget: see TrainConfig.augment),
# 50 epochs at batch 128, mixed precision where the device has it). Below: only what differs from them.
BASE = TrainConfig()

# PatchCamelyon follows its seed project: AdamW with a one-cycle schedule, the best epoch and early
# stopping chosen on validation AUC, flips / 90-degree turns / colour jitter (no affine warp).
DATASET_CHANGES: dict[str, dict] = {
    "bloodmnist": {},
    "pcam": {"epochs": 30, "lr": 1e-3, "schedule": "onecycle", "select_metric": "auc", "early_stop_patience": 5,
             "augment": "color"},
}
# Model arguments per dataset, given to every model that takes them: 96x96 patches use the standard
# stride-2 stem (the stride-1 stem exists for 28x28 images).
DATASET_MODEL_KWARGS: dict[str, dict] = {"pcam": {"stem_stride": 2}}

# Batch size as a lever. On one H100 at dff1171 a DeepEfficientNet step took 62 ms at batch 128 and 81 ms at 512
# (../shared/gpu-runs/dff1171/step_profile.txt), so an epoch at 512 costs about a third of the time; but batch 512
# at lr 0.004 with the recipe's 1-epoch warmup reached val 95.44% against 96.26% at 128 (recipe_probe.jsonl there).
# A larger batch is only a candidate: the recipe search (utils.studies.RECIPE_SEARCH) screens 2x and 4x batches on
# validation, and one is chosen only where `large_batch_holds`.
def batch_scaled(batch_size: int, warmup_epochs: float | None = None, base: TrainConfig = BASE) -> dict:
    """TrainConfig changes that train at ``batch_size`` instead of ``base``'s: the learning rate scaled by the
    square root of the batch ratio (the rule for Adam-type optimizers: Malladi et al., NeurIPS 2022), and by
    default a warmup of as many steps as ``base``'s (so, in epochs, longer by the batch ratio)."""
    ratio = batch_size / base.batch_size
    return {"batch_size": batch_size, "lr": base.lr * math.sqrt(ratio),
            "warmup_epochs": base.warmup_epochs * ratio if warmup_epochs is None else warmup_epochs}


# Half a point of validation accuracy: about one standard error at 97% on BloodMNIST's 1,712 validation images.
LARGE_BATCH_TOLERANCE = 0.005


def large_batch_holds(val_acc: float, recipe_val_acc: float, tolerance: float = LARGE_BATCH_TOLERANCE) -> bool:
    """Whether a larger-batch setting keeps the recipe's validation accuracy (within ``tolerance``)."""
    return val_acc >= recipe_val_acc - tolerance


def train_config(model: str, dataset: str, profile: Profile, **overrides) -> TrainConfig:
    """The resolved TrainConfig for one run; ``overrides`` win over everything else."""
    changes = dict(DATASET_CHANGES.get(dataset, {}), **profile.recipe_changes.get(dataset, {}))
    if profile.epochs is not None:
        changes["epochs"] = profile.epochs
    elif profile.model_epochs:
        if model not in profile.model_epochs:
            raise KeyError(f"the {profile.name} profile has no epochs for {model!r}: add it to model_epochs in "
                           f"utils/profiles.py (PROFILES)")
        changes["epochs"] = profile.model_epochs[model]
    if profile.batch_size is not None:
        changes["batch_size"] = profile.batch_size
    changes.update(overrides)
    unknown = set(changes) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
    return dataclasses.replace(BASE, **changes)

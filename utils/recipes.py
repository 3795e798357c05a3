"""Training recipes: the DeepEfficientNet recipe, per-dataset changes, and per-profile epochs."""
from __future__ import annotations

import dataclasses

from .profiles import Profile
from .training import TrainConfig

# The DeepEfficientNet recipe (also used for every other model so comparisons share one engine):
# AdamW + cosine with warmup, label smoothing 0.1, full augmentation, 50 epochs, mixed precision.
BASE = TrainConfig(epochs=50, batch_size=128, optimizer="adamw", lr=2e-3, weight_decay=0.05,
                   schedule="cosine", warmup_epochs=1.0, label_smoothing=0.1, augment="full", amp="auto")

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

# cpu profile: epochs that fit about 10 minutes on 2 cores at 28x28, from measured seconds per
# epoch (python -m utils.bench --epoch-times; see README).
CPU_EPOCHS = {
    "simple_cnn": 30, "resnet18": 3, "efficientnet_lite0": 8, "deep_efficientnet": 5,
    "efficientnet_b0": 9, "efficientnet_b0_se": 7, "efficientnet_b0_cbam": 6, "efficientnet_b0_msff": 6,
    # The architecture zoo (notebook 08) gets about 4 minutes each.
    "cnn_attention": 15, "autoencoder": 15, "vgg": 4, "inception": 4, "deepcmorph_lite": 4,
}


def train_config(model: str, dataset: str, profile: Profile, **overrides) -> TrainConfig:
    """The resolved TrainConfig for one run; ``overrides`` win over everything else."""
    changes = dict(DATASET_CHANGES.get(dataset, {}))
    if profile.epochs is not None:
        changes["epochs"] = profile.epochs
    elif profile.name == "cpu":
        changes["epochs"] = CPU_EPOCHS.get(model, 6)
    if profile.name == "smoke":
        changes["batch_size"] = 64
    changes.update(overrides)
    unknown = set(changes) - {f.name for f in dataclasses.fields(TrainConfig)}
    if unknown:
        raise TypeError(f"unknown TrainConfig fields: {sorted(unknown)}")
    return dataclasses.replace(BASE, **changes)

"""Run profiles and every per-profile budget, in one table (``PROFILES``).

``PROFILE`` = smoke | cpu | full (default: full on CUDA, cpu otherwise), read by ``get_profile()`` at the
entry points (notebooks, command lines) only; below them the ``Profile`` object is passed down.
- smoke: a few hundred images of each split, 1 epoch: seconds, for tests and nbval.
- cpu:   all data, epochs cut so one model trains in about 10 minutes on 2 CPU cores.
- full:  the paper recipe (50 epochs): minutes a run on a GPU, a quarter of an hour (SimpleCNN) to about five hours
  (ResNet-18) a run on one CPU core.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

PROFILE_NAMES = ("smoke", "cpu", "full")


@dataclass(frozen=True)
class Profile:
    name: str
    train_limit: int | None   # images drawn (stratified) from train; None = all
    val_limit: int | None     # images drawn (stratified) from val; None = all
    test_limit: int | None    # images drawn (stratified) from test; None = all (the official split)
    epochs: int | None        # every run's epochs; None = the recipe's, or model_epochs where it names the model
    seeds: tuple[int, ...]    # seeds for multi-seed studies
    # Seeds for the studies of the fast backbone (SimpleCNN, minutes a run where B0 takes hours); None = ``seeds``.
    small_backbone_seeds: tuple[int, ...] | None = None
    batch_size: int | None = None  # None = the recipe's
    model_epochs: dict[str, int] = field(default_factory=dict)
    # Per study: what its runs change from the recipe at this profile (utils.studies reads these by name), and the
    # images the Grad-CAM study scores.
    budgets: dict[str, dict | None] = field(default_factory=dict)
    # Per dataset: TrainConfig changes this profile makes to the recipe itself (utils.recipes.train_config).
    recipe_changes: dict[str, dict] = field(default_factory=dict)
    # Where figures go when not the repository's figures/ (a notebook run in another profile than it is committed in).
    figures: str | None = None

    def budget(self, study: str) -> dict | None:
        return self.budgets[study]


PROFILES = {
    # smoke: the fewest images that still give each class of both datasets a few examples in every split (at least
    # 4 of BloodMNIST's smallest class in val, 8 in test) and four steps per epoch at batch 64; make test trains
    # about a hundred of these runs on 2 cores.
    "smoke": Profile(
        "smoke", train_limit=256, val_limit=64, test_limit=128, epochs=1, seeds=(0,), batch_size=64,
        budgets={
            "attention": {}, "imbalance": {},
            # 128 training images: this halves the longest notebook of make test (05).
            "ablations": {"train_limit": 128},
            # The whole search on the ablations' 128 training images (two steps at batch 64, one at 2x and 4x).
            "recipe_search": {"train_limit": 128},
            # The two stages of the cpu profile on the Lite0 pair.
            "pcam_models": ("Lite0 (scratch)", "Lite0 (ImageNet)"),
            "pcam_screen": {"train_limit": 192}, "pcam_final": {},
            "pcam_scaling": {"train_limits": (96, 192)},
            "gradcam": {"road_images": 16},
        }),
    "cpu": Profile(
        "cpu", train_limit=None, val_limit=None, test_limit=None, epochs=None, seeds=(0,),
        # Epochs that fit about 10 minutes on 2 cores at 28x28, from measured seconds per epoch
        # (python -m utils.bench --epoch-times; see README); the zoo models get about 4 minutes each.
        model_epochs={
            "simple_cnn": 30, "resnet18": 3, "efficientnet_lite0": 8, "deep_efficientnet": 5,
            "efficientnet_b0": 9, "efficientnet_b0_se": 7, "efficientnet_b0_cbam": 6, "efficientnet_b0_msff": 6,
            "cnn_attention": 15, "autoencoder": 15, "vgg": 4, "inception": 4, "deepcmorph_lite": 4,
        },
        budgets={
            # One budget for all four attention variants, set by the slowest.
            "attention": {"epochs": 6},
            "imbalance": {"epochs": 10},
            # 15 full-data runs would take about 2 hours on 2 cores, so each trains on the same stratified
            # 3,000 training images for 4 epochs (val and test stay whole).
            "ablations": {"train_limit": 3000, "epochs": 4},
            # None: 5-epoch screens would not choose the 50-epoch recipe (utils.studies, RECIPE_SEARCH).
            "recipe_search": None,
            # Every PCAM_MODELS entry is screened on 2,000 stratified training patches for 3 epochs (3-8 minutes
            # each on 2 cores), then the best on validation AUC trains on all training patches (7.3% of PCam, the
            # budget of the targets) for 6 epochs: at 96x96 the ImageNet Lite0's all-patch run gained 0.0007
            # validation AUC from 12 epochs over 6 (0.9484 vs 0.9477, both runs in results/runs) for twice the
            # time, and at 1.5x input 6 epochs already take about 50 minutes.
            "pcam_models": None,  # all of utils.studies.PCAM_MODELS
            "pcam_screen": {"train_limit": 2000, "epochs": 3}, "pcam_final": {"epochs": 6},
            # The learning curve at the final run's budget (6 epochs, the one compared with 12 above).
            "pcam_scaling": {"train_limits": (2500, 5000, 10000, None), "epochs": 6},
            # ROAD scores of the test images explained: the mean's standard error shrinks as 1/sqrt(n).
            "gradcam": {"road_images": 256},
        }),
    "full": Profile(
        "full", train_limit=None, val_limit=None, test_limit=None, epochs=None, seeds=(0, 1, 2),
        small_backbone_seeds=(0, 1, 2, 3, 4),
        budgets={
            "attention": {}, "imbalance": {}, "ablations": {}, "recipe_search": {},
            # Every entry trains on all patches, so there is no second stage.
            "pcam_models": None, "pcam_screen": {}, "pcam_final": None,
            "pcam_scaling": {"train_limits": (2500, 5000, 10000, None)},
            "gradcam": {"road_images": 256},
        }),
}


def default_profile_name() -> str:
    return "full" if torch.cuda.is_available() else "cpu"


class ProfileError(ValueError):
    """A profile name that is not one of ``PROFILE_NAMES``; the message says which, where it came from and the fix."""


def check_profile_name(given: str | None, from_environment: bool = True) -> None:
    """Refuse a profile name that is not one of ``PROFILE_NAMES`` (None: unset, the device default), naming where it
    came from and the fix."""
    if given and given not in PROFILES:
        source = f"PROFILE={given} (the environment variable)" if from_environment else f"the profile {given!r}"
        raise ProfileError(f"{source} is not a profile; PROFILE is one of {', '.join(PROFILE_NAMES)}, or unset "
                           f"(full on CUDA, cpu otherwise)")


def get_profile(name: str | None = None, committed: str | None = None) -> Profile:
    """The named profile, else $PROFILE, else ``committed`` (a notebook's: the profile its outputs are committed in),
    else the device default. Only entry points call it without a name; their parser (``utils.cli.OneLineParser``)
    refuses a bad $PROFILE in one line before anything runs. A notebook run in another profile than it is committed in
    (PROFILE=cpu on a full-profile notebook) writes its figures to ``build/<profile>/figures``, so they never replace
    the committed ones."""
    given = name or os.environ.get("PROFILE")
    check_profile_name(given, from_environment=not name)
    resolved = given or committed or default_profile_name()
    profile = PROFILES[resolved]
    if committed is not None and resolved != committed and resolved != "smoke":
        profile = replace(profile, figures=f"build/{resolved}/figures")
    return profile


def as_profile(profile: Profile | str) -> Profile:
    """A profile passed down from an entry point, as the object or its name; never re-read from $PROFILE here."""
    if isinstance(profile, Profile):
        return profile
    if profile is None:
        raise TypeError("no profile passed down: resolve it once at the entry point with utils.profiles.get_profile()")
    return get_profile(profile)


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def output_dir(kind: str, profile: Profile | str) -> Path:
    """Where ``figures`` or ``results`` go for ``profile``: the repository's folders, except in the smoke
    profile, whose throw-away outputs go to build/smoke/ so they never overwrite real results, and for the figures
    of a notebook run in another profile than it is committed in (``Profile.figures``)."""
    profile = as_profile(profile)
    if kind == "figures" and profile.figures:
        return Path(profile.figures)
    return Path("build/smoke") / kind if profile.name == "smoke" else Path(kind)

"""Run profiles, resolved here and nowhere else.

``PROFILE`` = smoke | cpu | full (default: full on CUDA, cpu otherwise).
- smoke: a few hundred images of each split, 1 epoch: seconds, for tests and nbval.
- cpu:   all data, epochs cut so one model trains in about 10 minutes on 2 CPU cores.
- full:  the paper recipe (50 epochs), meant for a GPU.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

PROFILE_NAMES = ("smoke", "cpu", "full")


@dataclass(frozen=True)
class Profile:
    name: str
    train_limit: int | None   # images drawn (stratified) from train; None = all
    val_limit: int | None     # images drawn (stratified) from val; None = all
    test_limit: int | None    # images drawn (stratified) from test; None = all (the official split)
    epochs: int | None        # None = the recipe's (full) or utils.recipes.CPU_EPOCHS (cpu)
    seeds: tuple[int, ...]    # seeds for multi-seed studies


PROFILES = {
    # smoke: the fewest images that still give each class of both datasets a few examples in every split and two
    # steps per epoch at batch 128; make test trains about a hundred of these runs on 2 cores.
    "smoke": Profile("smoke", train_limit=256, val_limit=128, test_limit=256, epochs=1, seeds=(0,)),
    "cpu": Profile("cpu", train_limit=None, val_limit=None, test_limit=None, epochs=None, seeds=(0,)),
    "full": Profile("full", train_limit=None, val_limit=None, test_limit=None, epochs=None, seeds=(0, 1, 2)),
}


def default_profile_name() -> str:
    return "full" if torch.cuda.is_available() else "cpu"


def get_profile(name: str | None = None) -> Profile:
    """The named profile, else $PROFILE, else the device default."""
    name = name or os.environ.get("PROFILE") or default_profile_name()
    if name not in PROFILES:
        raise ValueError(f"PROFILE must be one of {', '.join(PROFILE_NAMES)}, got {name!r}")
    return PROFILES[name]


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def output_dir(kind: str, profile: Profile | str | None = None) -> Path:
    """Where ``figures`` or ``results`` go for ``profile`` (default: the resolved one): the repository's
    folders, except in the smoke profile, whose throw-away outputs go to build/smoke/ so they never
    overwrite real results."""
    name = profile.name if isinstance(profile, Profile) else get_profile(profile).name
    return Path("build/smoke") / kind if name == "smoke" else Path(kind)

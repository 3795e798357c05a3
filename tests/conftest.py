import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PROFILE", "smoke")
os.environ.setdefault("CI", "1")  # quiet progress bars in tests
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def blood():
    """The real BloodMNIST file (data/ or $MEDMNIST_MIRROR), verified by MD5."""
    from utils.data import load_bloodmnist
    return load_bloodmnist(REPO / "data")


@pytest.fixture(scope="session")
def pcam():
    """The real PatchCamelyon subset (data/ or $PCAM_MIRROR / $MEDMNIST_MIRROR), decoded once and cached."""
    from utils.data import load_pcam
    return load_pcam(REPO / "data")

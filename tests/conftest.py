import json
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("PROFILE", "smoke")
os.environ.setdefault("CI", "1")  # quiet progress bars in tests
# At most 2 threads a process, shared out among pytest-xdist workers (-n N) so they do not oversubscribe the cores.
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))
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


def store_record(folder: Path, prefix: str = "run", **fields) -> dict:
    """A synthetic run record that ``check_run_record`` accepts: named by the hash of its config, with
    (empty) predictions and checkpoint beside it. ``fields`` override the defaults."""
    from utils.experiment import config_hash, record_identity
    record = {"model": "simple_cnn", "dataset": "bloodmnist", "profile": "cpu", "config": {}, "model_kwargs": {},
              "seed": 0, "git_commit": "test", "device": "cpu", "val": {}, "test": {}, **fields}
    run = f"{prefix}-{config_hash(record_identity(record))}"
    folder.mkdir(parents=True, exist_ok=True)
    record.update(run=run, checkpoint=str(folder / f"{run}.pt"), predictions=str(folder / f"{run}.npz"))
    for suffix in (".pt", ".npz"):
        (folder / f"{run}{suffix}").touch()
    (folder / f"{run}.json").write_text(json.dumps(record))
    return record

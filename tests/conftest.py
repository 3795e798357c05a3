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


def synthetic_predictions(acc: float, n: int = 20) -> tuple:
    """(labels, probabilities) of two classes, right on the first ``round(acc * n)`` images: the higher ``acc``,
    the higher every metric."""
    import numpy as np
    labels = np.arange(n) % 2
    right = np.arange(n) < round(acc * n)
    predicted = np.where(right, labels, 1 - labels)
    probs = np.where(np.arange(2) == predicted[:, None], 0.8, 0.2).astype(np.float32)
    return labels, probs


def store_record(folder: Path, prefix: str = "run", accuracy: dict | None = None, **fields) -> dict:
    """A synthetic run record that ``check_run_record`` accepts: named by the hash of its config, with an (empty)
    checkpoint and predictions beside it whose val and test accuracies are ``accuracy`` (default 0.5), its metrics
    those of the predictions. ``fields`` override the other defaults."""
    from utils.experiment import config_hash, record_identity
    from utils.metrics import classification_metrics
    from utils.storage import save_npz
    assert not {"val", "test"} & set(fields), "give accuracy={'val': ..., 'test': ...}: metrics come from predictions"
    predictions = {split: synthetic_predictions((accuracy or {}).get(split, 0.5)) for split in ("val", "test")}
    record = {"model": "simple_cnn", "dataset": "bloodmnist", "profile": "cpu", "config": {}, "model_kwargs": {},
              "seed": 0, "git_commit": "test", "device": "cpu",
              **{split: classification_metrics(*predictions[split]) for split in predictions}, **fields}
    run = f"{prefix}-{config_hash(record_identity(record))}"
    folder.mkdir(parents=True, exist_ok=True)
    record.update(run=run, checkpoint=str(folder / f"{run}.pt"), predictions=str(folder / f"{run}.npz"))
    (folder / f"{run}.pt").touch()
    save_npz(folder / f"{run}.npz", **{f"{split}_{kind}": array for split, (labels, probs) in predictions.items()
                                        for kind, array in (("labels", labels), ("probs", probs))})
    (folder / f"{run}.json").write_text(json.dumps(record))
    return record

"""The released checkpoints: which stored runs a user gets (``predict``, ``export``, model cards, the
selective-prediction and robustness evaluations all start here).

``RELEASED_PROFILE`` is the one name to re-point: every BloodMNIST run of that profile in ``results/runs/``
whose checkpoint is there (committed) is released, so seeds the campaign commits later join by themselves.
Set it to "cpu" to release the cpu-profile checkpoints instead.
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from .experiment import RESULTS_ROOT, committed_files, load_results

RELEASED_PROFILE = "full"
RELEASED_DATASET = "bloodmnist"
# Derived evaluations of the released checkpoints live here (selective/, onnx/, robustness/, predict/).
DEPLOYMENT_ROOT = RESULTS_ROOT / "deployment"


def released_records(folder: str | Path = RESULTS_ROOT / "runs", profile: str = RELEASED_PROFILE,
                     dataset: str = RELEASED_DATASET) -> list[dict]:
    """The valid run records of ``profile`` on ``dataset`` in ``folder`` whose checkpoint lies beside them and is
    committed (a checkpoint that only this machine holds is not released; outside a git checkout, every one there),
    ordered by model then seed."""
    committed = committed_files(Path(folder))
    records = [r for r in load_results(folder, profile=profile, dataset=dataset)
               if Path(folder, Path(r["checkpoint"]).name).is_file()
               and (not committed or Path(r["checkpoint"]).name in committed)]
    return sorted(records, key=lambda r: (r.get("tag") or r["model"], r["seed"]))


def by_model(records: list[dict]) -> dict[str, list[dict]]:
    """Records grouped by model label (the tag where there is one, e.g. ``efficientnet_lite0_pretrained``)."""
    groups = defaultdict(list)
    for record in records:
        groups[record.get("tag") or record["model"]].append(record)
    return dict(groups)


def provenance(started: float, packages: tuple[str, ...] = ()) -> dict:
    """What a stored evaluation carries to be trusted: commit, device, versions of torch, numpy, scikit-learn
    and ``packages``, wall seconds since ``started`` and when it was written."""
    import importlib.metadata
    import platform
    import time

    import torch

    from .experiment import device_name, git_commit
    from .profiles import default_device
    names = ("torch", "numpy", "scikit-learn") + tuple(packages)
    return {"git_commit": git_commit(), "device": device_name(default_device()), "python": platform.python_version(),
            "versions": {n: importlib.metadata.version(n) for n in names},
            "wall_seconds": time.time() - started, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}

"""One run = one JSON file (+ checkpoint + predictions), cached by the hash of its resolved config.

``run_training`` is what the CLI and the notebooks call; re-running with the same config returns
the stored result in seconds unless ``force`` (or ``FORCE=1``) asks for a retrain.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from .data import DEFAULT_DATA_ROOT, ImageDataset, load_dataset
from .metrics import classification_metrics
from .models import accepts_kwarg, build_model, count_parameters, load_checkpoint, save_checkpoint
from .profiles import Profile, as_profile, default_device, output_dir
from .recipes import DATASET_MODEL_KWARGS, train_config
from .storage import move_aside, run_lock, save_npz, write_json
from .training import FitResult, TrainConfig, fit, predict_proba

RESULTS_ROOT = Path("results")
REPO_ROOT = Path(__file__).resolve().parent.parent


def git_commit() -> str:
    """HEAD (+ "-dirty" when utils/ has uncommitted changes); $GIT_COMMIT where the code is a copy
    without its .git folder (e.g. sent to a GPU machine)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                                check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "utils"],
                               cwd=REPO_ROOT, capture_output=True, text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get("GIT_COMMIT", "unknown")


def count_flops(model: torch.nn.Module, image_size: int) -> int:
    """FLOPs of one forward pass on one image (torch.utils.flop_counter: a multiply-add = 2 FLOPs)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.rand(1, 3, image_size, image_size, device=device))
    model.train(was_training)
    return int(counter.get_total_flops())


def config_hash(record: dict) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:10]


def cpu_model() -> str:
    """The CPU's model name where Linux says it (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        return next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                    if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory in the process; returns whether it could (glibc on Linux only).

    By default glibc hands a large freed block back to the kernel, so each training step of a small CNN frees its
    activations (a few MB each) and faults them in again at the next step. Keeping them saves a few percent of a
    float32 step of the speedrun's SimpleCNN and nothing in bfloat16 (``python -m utils.bench --malloc``, side by side:
    ``results/bench/malloc_cpu.json``); it changes no number, only seconds."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # another C library (musl)
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # mallopt's parameter numbers (malloc.h)
    return bool(libc.mallopt(m_mmap_threshold, 32 << 20) and libc.mallopt(m_trim_threshold, 1 << 30))


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def peak_memory(device: torch.device) -> tuple[int, str]:
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device)), "cuda_max_memory_allocated"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process_max_rss"


def evaluate_split(model, data: ImageDataset, split: str, cfg: TrainConfig) -> tuple[dict, np.ndarray]:
    """A run's reported scores: one plain float32 pass, what `utils.evaluate` repeats on any device
    (training-time validation uses the run's mixed precision)."""
    probs = predict_proba(model, data.splits[split].images, channels_last=cfg.channels_last).cpu().numpy()
    labels = data.splits[split].labels.cpu().numpy()
    return classification_metrics(labels, probs, data.class_names), probs


def prepare_data(dataset: str, profile, data_root, device, seed: int = 0,
                 train_limit: int | None = None) -> ImageDataset:
    """The dataset cut to the profile's limits (``train_limit`` overrides the profile's) on ``device``."""
    data = load_dataset(dataset, data_root, device="cpu")
    data.splits = {"train": data.splits["train"].subset(train_limit or profile.train_limit, seed),
                   "val": data.splits["val"].subset(profile.val_limit, seed),
                   "test": data.splits["test"].subset(profile.test_limit, seed)}
    return data.to(device)


def data_of(record: dict, data_root: str | Path = DEFAULT_DATA_ROOT, device="cpu") -> ImageDataset:
    """The data exactly as the run behind ``record`` saw it (its profile's subsets, its seed): index i of
    its test split is index i of the run's stored test predictions."""
    return prepare_data(record["dataset"], as_profile(record["profile"]), data_root, device, record["seed"],
                        record.get("train_limit"))


def profile_limits(profile: Profile) -> dict[str, int]:
    """The profile's cuts of the data (train, val, test images) that are set."""
    return {k: getattr(profile, k) for k in ("train_limit", "val_limit", "test_limit") if getattr(profile, k)}


@dataclass(frozen=True)
class RunPlan:
    """Everything that names a run, resolved before anything is trained."""
    name: str
    profile: Profile
    config: TrainConfig
    model_kwargs: dict
    identity: dict
    tag: str | None
    out: Path

    def path(self, suffix: str) -> Path:
        """``<out>/<run><suffix>``: .json (the record), .pt, .npz, .state.pt."""
        return self.out / f"{self.name}{suffix}"

    @property
    def json_path(self) -> Path:
        return self.path(".json")


def plan_run(model: str, dataset: str = "bloodmnist", profile: Profile | str | None = None, seed: int = 0,
             out: str | Path | None = None, model_kwargs: dict | None = None, tag: str | None = None,
             train_limit: int | None = None, **overrides) -> RunPlan:
    """The run ``run_training`` would train or reuse for these arguments (its name is the hash of
    everything that changes what is trained)."""
    prof = as_profile(profile)
    if train_limit is not None and train_limit < 1:
        raise ValueError(f"train_limit is {train_limit}; give a whole number of 1 or more, or None for the profile's")
    cfg = train_config(model, dataset, prof, seed=seed, **overrides)
    if cfg.epochs < 1:
        raise ValueError(f"epochs is {cfg.epochs}; give a whole number of 1 or more")
    model_kwargs = dict(model_kwargs or {})
    for key, value in DATASET_MODEL_KWARGS.get(dataset, {}).items():
        if accepts_kwarg(model, key):
            model_kwargs.setdefault(key, value)
    for key in ("dropout", "drop_path"):
        value = getattr(cfg, key)
        if value is not None and accepts_kwarg(model, key):
            model_kwargs[key] = value
    identity = {"model": model, "dataset": dataset, "profile": prof.name, "config": cfg.to_dict(),
                "model_kwargs": model_kwargs}
    if train_limit:
        identity["train_limit"] = train_limit
    # A profile that cuts the data names its cuts, so a run stored before they changed is not reused (the cpu
    # and full profiles cut nothing: their names are unchanged).
    if limits := profile_limits(prof):
        identity["profile_limits"] = limits
    # Runs from ImageNet weights are named apart from scratch runs of the same model.
    tag = tag or (f"{model}_pretrained" if model_kwargs.get("pretrained") else None)
    name = f"{tag or model}-{dataset}-{prof.name}-s{seed}-{config_hash(identity)}"
    return RunPlan(name, prof, cfg, model_kwargs, identity, tag, Path(out) if out else output_dir("results", prof) / "runs")


# What a run record must hold to be reused; ``check_run_record`` checks these and how they fit together.
RUN_RECORD_KEYS = ("run", "model", "dataset", "profile", "config", "model_kwargs", "seed", "git_commit", "device",
                   "val", "test", "checkpoint", "predictions")


def record_identity(record: dict) -> dict:
    """What ``plan_run`` hashed into the run's name, read back from its record."""
    identity = {key: record[key] for key in ("model", "dataset", "profile", "config", "model_kwargs")}
    if record.get("train_limit"):
        identity["train_limit"] = record["train_limit"]
    if record.get("profile_limits"):
        identity["profile_limits"] = record["profile_limits"]
    return identity


class InvalidRunRecord(ValueError):
    """A run record that must not be reused: why is in the message."""


@functools.lru_cache(maxsize=None)
def committed_files(folder: Path) -> frozenset[str]:
    """File names under ``folder`` that git tracks (empty outside a git checkout)."""
    try:
        listed = subprocess.run(["git", "ls-files", "--", "."], cwd=folder, capture_output=True, text=True,
                                check=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        return frozenset()
    return frozenset(Path(name).name for name in listed)


# The metrics of each split that a record must hold (what the summaries, the README and the report read).
REPORTED_METRICS = ("n", "acc", "auc", "macro_f1", "ece")
# The bootstrap interval of accuracy ("acc_ci95"), 2,000 resamples of a split, costs more to recompute than the rest
# together (40 ms against 20 ms for BloodMNIST's test split), and only the README and the report print it (of the
# test split): they check it (``check_run_records(..., intervals=("test",))``); every other read checks the rest.
INTERVAL = "acc_ci95"


@functools.lru_cache(maxsize=None)
def _metrics_of_predictions(npz_path: str, stamp: tuple, class_names: tuple | None,
                            bootstrap: tuple[bool, bool]) -> dict[str, dict]:
    """``classification_metrics`` of the val and test predictions in ``npz_path``, once per process for each
    version of the file (``stamp``: its size and modification time)."""
    with np.load(npz_path) as saved:
        return {split: classification_metrics(saved[f"{split}_labels"], saved[f"{split}_probs"],
                                              list(class_names) if class_names else None, bootstrap=interval)
                for split, interval in zip(("val", "test"), bootstrap)}


def _first_difference(stored, recomputed, field: str) -> tuple[str, object, object] | None:
    """(field, stored value, recomputed value) of the first place where ``stored`` differs from ``recomputed``
    (numbers to 1e-9, NaN equal to NaN), or None."""
    if isinstance(stored, dict) and isinstance(recomputed, dict):
        for key in stored:
            if key not in recomputed:
                return f"{field}.{key}", stored[key], "nothing (not a metric of this code)"
            if difference := _first_difference(stored[key], recomputed[key], f"{field}.{key}"):
                return difference
        return None
    if isinstance(stored, (list, tuple)) and isinstance(recomputed, (list, tuple)) and len(stored) == len(recomputed):
        for i, (a, b) in enumerate(zip(stored, recomputed)):
            if difference := _first_difference(a, b, f"{field}[{i}]"):
                return difference
        return None
    numbers = (int, float)
    if isinstance(stored, numbers) and isinstance(recomputed, numbers) and not isinstance(stored, bool):
        if (math.isnan(stored) and math.isnan(recomputed)) or abs(stored - recomputed) <= 1e-9:
            return None
    elif stored == recomputed:
        return None
    return field, stored, recomputed


def check_record_metrics(record: dict, npz_path: Path, intervals: tuple[str, ...] = ()) -> None:
    """``InvalidRunRecord`` unless every metric of the record's val and test splits is what its stored
    predictions give (``classification_metrics``, recomputed): naming the first field that differs. The bootstrap
    interval (``INTERVAL``) is checked for the splits in ``intervals`` only."""
    for split in ("val", "test"):
        if not isinstance(record[split], dict) or (missing := [k for k in REPORTED_METRICS if k not in record[split]]):
            raise InvalidRunRecord(f"its {split} metrics lack {', '.join(missing) if isinstance(record[split], dict) else 'everything'}")
    stat = npz_path.stat()
    class_names = tuple(record["class_names"]) if record.get("class_names") else None
    try:
        recomputed = _metrics_of_predictions(str(npz_path), (stat.st_size, stat.st_mtime_ns), class_names,
                                             tuple(split in intervals for split in ("val", "test")))
    except Exception as error:  # not an npz, or without the arrays: np.load and numpy raise several kinds
        raise InvalidRunRecord(f"its predictions {npz_path.name} cannot be read ({type(error).__name__}: "
                               f"{str(error).splitlines()[0][:100] if str(error) else ''})") from None
    for split in ("val", "test"):
        checked = {k: v for k, v in record[split].items() if k != INTERVAL or split in intervals}
        if difference := _first_difference(checked, recomputed[split], split):
            field, said, actual = difference
            raise InvalidRunRecord(f"{field} is {said} but its predictions {npz_path.name} give {actual} "
                                   f"(edited, or scored by other code)")


def check_run_record(json_path: str | Path, intervals: tuple[str, ...] = ()) -> dict:
    """The record at ``json_path`` if it can be trusted, else ``InvalidRunRecord`` saying why: it parses,
    has every key of ``RUN_RECORD_KEYS``, names this run, its config hashes to the name, its
    predictions and checkpoint lie beside it, and every val and test metric is what its predictions give
    (``check_record_metrics``; the bootstrap intervals of the splits in ``intervals``). A committed record may lack its checkpoint: only a few checkpoints are
    committed, and the record's metrics and predictions stand without the weights."""
    json_path = Path(json_path)
    try:
        record = json.loads(json_path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidRunRecord(f"not valid JSON ({error}): a half-written or damaged file") from None
    if not isinstance(record, dict):
        raise InvalidRunRecord("not a run record (not a JSON object)")
    missing = [key for key in RUN_RECORD_KEYS if key not in record]
    if missing:
        raise InvalidRunRecord(f"not a complete run record (missing {', '.join(missing)})")
    if record["run"] != json_path.stem:
        raise InvalidRunRecord(f"holds run {record['run']!r}, not the run its name says")
    if not json_path.stem.endswith(f"-{config_hash(record_identity(record))}"):
        raise InvalidRunRecord("its config does not hash to its name (edited, or from other code)")
    if not json_path.with_suffix(".npz").is_file():
        raise InvalidRunRecord(f"its predictions {json_path.with_suffix('.npz').name} are missing")
    if not json_path.with_suffix(".pt").is_file() and json_path.name not in committed_files(json_path.parent):
        raise InvalidRunRecord(f"its checkpoint {json_path.with_suffix('.pt').name} is missing")
    check_record_metrics(record, json_path.with_suffix(".npz"), intervals)
    return record


def check_run_records(folder: str | Path, intervals: tuple[str, ...] = ()) -> int:
    """How many run records ``folder`` holds, every one checked (``check_run_record``); else one
    ``InvalidRunRecord`` naming each bad file and why. For what prints results (summaries, README, report): they
    stop before writing anything rather than leave a bad record out or print it."""
    paths = sorted(Path(folder).glob("*.json"))
    faults = []
    for path in paths:
        try:
            check_run_record(path, intervals)
        except InvalidRunRecord as error:
            faults.append(f"{path}: {error}")
    if faults:
        raise InvalidRunRecord("; ".join(faults) + ". Restore the file (git checkout -- <file>), or move it away and "
                               "train the run again")
    return len(paths)


def reusable_record(json_path: Path) -> dict | None:
    """The stored record of a run if it passes ``check_run_record``; a record that does not is moved
    aside (``<run>.json.invalid``) with a message, and None says the run is to be trained."""
    if not json_path.is_file():
        return None
    try:
        return check_run_record(json_path)
    except InvalidRunRecord as error:
        move_aside(json_path, f"{error}; the run will be trained again")
        return None


def run_training(model: str, dataset: str = "bloodmnist", profile: Profile | str | None = None, seed: int = 0,
                 out: str | Path | None = None, data_root: str | Path = DEFAULT_DATA_ROOT,
                 resume: bool = True, force: bool | None = None, model_kwargs: dict | None = None,
                 tag: str | None = None, data: ImageDataset | None = None, train_limit: int | None = None,
                 labels: dict | None = None, **overrides) -> dict:
    """Train ``model`` with its recipe for ``dataset`` under ``profile`` and write
    ``<out>/<run>.json``, ``<out>/<run>.pt`` (best-on-validation checkpoint) and ``<out>/<run>.npz``
    (val/test probabilities). ``overrides`` change TrainConfig fields (ablations); ``train_limit``
    trains on a stratified subset of that many training images; ``labels`` are extra fields for the
    record (e.g. ``{"imbalance": "focal"}``) that do not change what is trained."""
    plan = plan_run(model, dataset, profile, seed, out, model_kwargs, tag, train_limit, **overrides)
    force = bool(int(os.environ.get("FORCE", "0"))) if force is None else force
    if not force and (stored := reusable_record(plan.json_path)):
        return stored
    with run_lock(plan.out, plan.name):
        # Another process may have trained this run while we waited for the lock.
        if not force and (stored := reusable_record(plan.json_path)):
            return stored
        return _train_run(plan, data, data_root, resume and not force, labels)


def _train_run(plan: RunPlan, data: ImageDataset | None, data_root, resume: bool, labels: dict | None) -> dict:
    prof, cfg, model_kwargs, identity, tag, run_name = (plan.profile, plan.config, plan.model_kwargs,
                                                        plan.identity, plan.tag, plan.name)
    model, dataset, seed, train_limit = identity["model"], identity["dataset"], cfg.seed, identity.get("train_limit")
    device = default_device()
    json_path, ckpt_path, npz_path, state_path = (plan.path(suffix) for suffix in (".json", ".pt", ".npz", ".state.pt"))
    started, commit = time.time(), git_commit()
    data = data if data is not None else prepare_data(dataset, prof, data_root, device, seed, train_limit)
    torch.manual_seed(seed)
    net = build_model(model, data.num_classes, **model_kwargs)
    params, flops = count_parameters(net), count_flops(net, data.image_size)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    pretrain_history = None
    if hasattr(net, "pretrain"):
        # Self-supervised pre-training on the training images (e.g. the autoencoder's reconstruction);
        # repeated identically on resume, after which fit restores its own checkpointed state.
        net.to(device)
        pretrain_history = net.pretrain(data.splits["train"], cfg,
                                        torch.Generator(device=device).manual_seed(seed))
    result: FitResult = fit(net, data, cfg, state_path=state_path, resume=resume, desc=run_name)
    net.load_state_dict(result.best_state)
    val_metrics, val_probs = evaluate_split(net, data, "val", cfg)
    test_metrics, test_probs = evaluate_split(net, data, "test", cfg)
    peak_bytes, peak_kind = peak_memory(device)

    record = {
        "run": run_name, **identity, **(labels or {}), "seed": seed, "tag": tag,
        "pretrained": bool(model_kwargs.get("pretrained", False)),
        # The CPU's model beside the device: a CPU run's seconds depend on it (records before 8 December lack it).
        "device": device_name(device), "cpu": cpu_model(), "torch_version": torch.__version__, "git_commit": commit,
        "python": platform.python_version(), "params": params, "flops": flops,
        "image_size": data.image_size, "class_names": data.class_names,
        "data": {"source": Path(data.source).name, "md5": data.md5,
                 "n": {k: len(v) for k, v in data.splits.items()}},
        "train_seconds": result.train_seconds, "wall_seconds": time.time() - started,
        "peak_memory_bytes": peak_bytes, "peak_memory_kind": peak_kind, "amp_dtype": result.amp_dtype,
        "engine": result.extra["engine"], "engine_fallback": result.extra["engine_fallback"],
        "pretrain_history": pretrain_history, "best_epoch": result.best_epoch, "epochs_run": len(result.history), "history": result.history,
        "val": val_metrics, "test": test_metrics,
        "checkpoint": str(ckpt_path), "predictions": str(npz_path),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    meta = {"dataset": dataset, "class_names": data.class_names, "input_size": data.image_size,
            "profile": prof.name, "seed": seed, "run": run_name, "config": cfg.to_dict(),
            "val": {k: val_metrics[k] for k in ("acc", "auc", "macro_f1", "ece")},
            "test": {k: test_metrics[k] for k in ("acc", "auc", "macro_f1", "ece")}}
    # The record is written last: its presence says the checkpoint and predictions beside it are complete.
    save_checkpoint(ckpt_path, net, meta)
    save_npz(npz_path, val_probs=val_probs.astype(np.float32), val_labels=data.splits["val"].labels.cpu().numpy(),
             test_probs=test_probs.astype(np.float32), test_labels=data.splits["test"].labels.cpu().numpy())
    write_json(json_path, record)
    # The run is complete and its checkpoint written: the resumable training state is ours to drop.
    state_path.unlink(missing_ok=True)
    return record


def stored_evaluation(record: dict, kind: str, evaluate: Callable[[], dict], compute: bool = True,
                      force: bool | None = None) -> dict:
    """What ``evaluate()`` measures of a stored run, kept in ``results/<kind>/<run>.json`` with the commit, device
    and seconds that measured it (``"<kind>_scoring"``, the kind's first folder), and read back from there unless ``force`` (default: $FORCE).
    ``compute=False`` only reads: a missing file is a ``FileNotFoundError`` that says how to make it."""
    json_path = output_dir("results", record["profile"]) / kind / f"{record['run']}.json"
    force = bool(int(os.environ.get("FORCE", "0"))) if force is None else force
    if json_path.is_file() and not force:
        try:
            return json.loads(json_path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            move_aside(json_path, f"not valid JSON ({error}); scoring again")
    if not compute:
        raise FileNotFoundError(f"{json_path}: the {kind} evaluation of {record['run']} is not stored; "
                                f"python -m utils.sweep --profile {record['profile']} measures it")
    started, device = time.time(), default_device()
    result = evaluate()
    scoring = kind.split("/")[0] + "_scoring"  # "road/n256" -> "road_scoring"
    result[scoring] = {"device": device_name(device), "torch_version": torch.__version__, "git_commit": git_commit(),
                       "wall_seconds": time.time() - started, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    write_json(json_path, result, default=float)
    return result


def score_with_tta(record: dict, data_root: str | Path = DEFAULT_DATA_ROOT, compute: bool = True,
                   force: bool | None = None) -> dict:
    """A stored run's checkpoint scored again on val and test, averaging its 8 flips and 90-degree turns
    (``predict_proba(tta=True)``). Returns the run's record with those ``val``/``test`` metrics,
    ``"tta": true`` and ``predictions`` in ``results/tta/<run>.npz``: a ``stored_evaluation``. Nothing is
    retrained."""
    npz_path = output_dir("results", record["profile"]) / "tta" / f"{record['run']}.npz"

    def evaluate() -> dict:
        device = default_device()
        model, _ = load_checkpoint(record["checkpoint"])
        data = data_of(record, data_root, device)
        model.to(device)
        metrics, probs = {}, {}
        for split in ("val", "test"):
            probs[split] = predict_proba(model, data.splits[split].images, tta=True).cpu().numpy()
            metrics[split] = classification_metrics(data.splits[split].labels.cpu().numpy(), probs[split], data.class_names)
        save_npz(npz_path, **{f"{s}_probs": probs[s].astype(np.float32) for s in probs},
                 **{f"{s}_labels": data.splits[s].labels.cpu().numpy() for s in probs})
        return dict(record, **metrics, tta=True, predictions=str(npz_path))
    return stored_evaluation(record, "tta", evaluate, compute, force)


def load_results(folder: str | Path = RESULTS_ROOT / "runs", **match) -> list[dict]:
    """All valid run records in ``folder`` whose top-level fields equal ``match`` (e.g. model=...,
    profile=...); an invalid one is named on stderr and left out, never read as a result."""
    records = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            records.append(check_run_record(path))
        except InvalidRunRecord as error:
            print(f"{path}: {error}; left out", file=sys.stderr)
    return [r for r in records if all(r.get(k) == v for k, v in match.items())]

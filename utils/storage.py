"""Every file the project writes goes through ``atomic_write``; every run trains under ``run_lock``.

A write goes to a hidden temporary file beside its target, is flushed to disk, then renamed over the
target in one step: a process killed at any moment, or a full disk, leaves either the old file or the
new one, never a part of one. A run is trained by one process at a time: a second sweep or notebook
asking for the same run waits, then reuses what the first wrote.
"""
from __future__ import annotations

import errno
import fcntl
import json
import math
import numbers
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Callable


class StorageFullError(OSError):
    """The disk filled up while writing a result; the file being replaced is intact."""


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"{path} still holds its earlier contents" if path.exists() else f"{path} was not created"
            raise StorageFullError(error.errno, f"{path}: no space left on the device while writing it; "
                                   f"{kept} and no other result was touched. Free space "
                                   f"(df -h {path.parent}) and run the same command again.") from None
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text.encode()))


def write_json(path: str | Path, payload, **dumps_kwargs) -> Path:
    return write_text(path, json.dumps(payload, **{"indent": 1, **dumps_kwargs}) + "\n")


# Derived numbers (summaries recomputed from stored runs and compared byte for byte by CI) keep this many significant
# digits: two x86 CPUs give the same stored predictions a temperature or an ECE that differs in the 16th digit (an
# LBFGS step or a sum reduced in another order), and CI must come out the same on either. Measurements written once
# (run records, timings) keep every digit.
DERIVED_DIGITS = 10


def round_derived(value, digits: int = DERIVED_DIGITS):
    """``value`` with every float (in dicts, lists and tuples, NumPy scalars too) rounded to ``digits`` significant
    digits, the one way derived numbers are written."""
    if isinstance(value, dict):
        return {k: round_derived(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_derived(v, digits) for v in value]
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return float(f"{value:.{digits}g}") if math.isfinite(value) else value
    return value


def derived_json(payload) -> str:
    """The text of a derived JSON file: floats rounded by ``round_derived``, indented one space."""
    return json.dumps(round_derived(payload), indent=1) + "\n"


def save_torch(obj, path: str | Path) -> Path:
    import torch
    return atomic_write(path, lambda f: torch.save(obj, f))


def save_npz(path: str | Path, **arrays) -> Path:
    import numpy as np
    return atomic_write(path, lambda f: np.savez_compressed(f, **arrays))


def move_aside(path: Path, reason: str) -> Path:
    """Keep a file we will not use under a new name (``<name>.invalid``), and say so on stderr."""
    aside = path.with_name(path.name + ".invalid")
    os.replace(path, aside)
    print(f"{path}: {reason}; not used, kept as {aside.name}", file=sys.stderr, flush=True)
    return aside


@contextmanager
def run_lock(folder: Path, name: str):
    """Hold ``<folder>/.locks/<name>.lock`` (an flock, released when the holder exits or dies)."""
    lock_path = Path(folder) / ".locks" / f"{name}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"{name}: another process is training this run; waiting for it", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Every file the project writes goes through ``atomic_path`` (``atomic_write`` for bytes); every run trains under
``run_lock``; every file or folder a user names for output is checked by ``claim_output`` / ``claim_folder``.

A write goes to a hidden temporary file beside its target, is flushed to disk, then renamed over the
target in one step: a process killed at any moment, a failed write or a full disk leaves either the old file or the
new one, never a part of one, and no temporary file. A run is trained by one process at a time: a second sweep or
notebook asking for the same run waits, then reuses what the first wrote. An output a user names is checked before
any work: it may not be a folder, an input of the command (a checkpoint, its predictions and record, an image
read), or an existing file unless ``--force`` says to replace it, and its folder must be writable.
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


class OutputError(ValueError):
    """An output path that cannot or may not be written; the message names it and says what to do."""


@contextmanager
def atomic_path(path: str | Path):
    """A temporary path beside ``path`` to write (by any means: ``torch.save``, an exporter's ``save``), renamed to
    ``path`` when the block ends; removed, with ``path`` untouched, when the block or the rename fails."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            kept = f"{path} still holds its earlier contents" if path.exists() else f"{path} was not created"
            raise StorageFullError(error.errno, f"{path}: no space left on the device while writing it; "
                                   f"{kept} and no other result was touched. Free space "
                                   f"(df -h {path.parent}) and run the same command again.") from None
        raise


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it to ``path``."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _check_writable(target: Path, folder: Path, fix: str) -> None:
    """``target`` (a file or folder to be created in or as ``folder``) can be written: no file stands where a folder
    above it must be, and the nearest existing folder is writable."""
    existing = _nearest_existing(folder.absolute())
    if not existing.is_dir():
        raise OutputError(f"{target} lies under the file {existing}; {fix}, or move the file away")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write in {existing} (read-only, or not this user's); {fix} where you can "
                          f"write, or change its permissions")


def claim_folder(folder: str | Path) -> Path:
    """``folder`` if outputs can be written in it (it is created later if missing): refused when it, or a folder
    above it, is a file, or when the nearest existing folder is not writable."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder} is a file; give a folder (created if missing), or move the file away")
    _check_writable(folder, folder, "give a folder (created if missing)")
    return folder


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist: compare where they lead
        return a.resolve() == b.resolve()


def claim_output(path: str | Path, force: bool = False, inputs=(), flag: str = "--force") -> Path:
    """``path`` if the command may write it, checked before any work: not a folder, never one of ``inputs`` (the
    files the command reads, through any link or spelling, even with ``force``), an existing file only with
    ``force`` (``flag`` names the option that sets it), in a folder that can be written."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"{path} is a folder; give the name of a file to write (inside it, if it goes there)")
    for given in map(Path, inputs):
        if _same_file(path, given):
            raise OutputError(f"{path} is {given}, which this command reads; give another file name "
                              f"(it is never replaced, {flag} or not)")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputError(f"{path} exists; pass {flag} to replace it, or give another file name")
    _check_writable(path, path.parent, "give a file name")
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

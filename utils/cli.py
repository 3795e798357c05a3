"""What the command lines share: a parser whose every error is one line, and argument types that say what they
accept. A value that cannot be used is refused here, before anything is trained, locked or written."""
from __future__ import annotations

import argparse
from pathlib import Path


class OneLineParser(argparse.ArgumentParser):
    """``argparse`` with each error on one line (``<prog>: error: <what is wrong and what is accepted>``), exit 2.
    A command that reads $PROFILE (it has a ``--profile`` option, or says ``reads_profile=True``) has it checked
    here, with its arguments: an unknown profile is refused before anything loads."""

    def __init__(self, *args, reads_profile: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.reads_profile = reads_profile

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def parse_known_args(self, args=None, namespace=None):
        parsed, extra = super().parse_known_args(args, namespace)
        if (self.reads_profile or any(action.dest == "profile" for action in self._actions)) \
                and getattr(parsed, "profile", None) is None:
            import os
            from .profiles import ProfileError, check_profile_name
            try:
                check_profile_name(os.environ.get("PROFILE"))
            except ProfileError as error:
                self.error(str(error))
        return parsed, extra


def _checked(text: str, convert, accepted, unreadable: str, refused: str, shown=str):
    """``convert(text)`` where ``accepted`` holds for it; else the argparse error: ``'text' is not <unreadable>`` when
    it does not convert, ``<shown(value)> is not accepted; <refused>`` when it is out of range."""
    try:
        value = convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {unreadable}") from None
    if not accepted(value):
        raise argparse.ArgumentTypeError(f"{shown(value)} is not accepted; {refused}")
    return value


def positive_float(text: str) -> float:
    """A number above 0 (minutes, seconds)."""
    return _checked(text, float, lambda v: v > 0, "a number; give one above 0", "give a number above 0",
                    shown=lambda v: f"{v:g}")


def positive_int(text: str) -> int:
    """A whole number of 1 or more (epochs, images, workers): 0 or less would be ignored or mean something else."""
    return _checked(text, int, lambda v: v >= 1, "a whole number; give one of 1 or more",
                    "give a whole number of 1 or more")


def probability(text: str) -> float:
    """A number from 0 to 1 (a threshold on a probability); NaN, which every comparison fails, is refused."""
    return _checked(text, float, lambda v: 0 <= v <= 1, "a number; give one from 0 to 1",
                    "give a number from 0 to 1", shown=lambda v: text)


def seed(text: str) -> int:
    """A random seed: a whole number from 0 to 2**32 - 1 (what NumPy's generator takes; PyTorch's takes the same)."""
    return _checked(text, int, lambda v: 0 <= v < 2**32, f"a whole number; give a seed from 0 to {2**32 - 1}",
                    f"give a seed from 0 to {2**32 - 1}")


def gpu_share(text: str) -> float:
    """GPUs for one run: a fraction up to 1 (0.25: four runs share a GPU), a whole number above it, or 0 for none
    (what Ray schedules: a fraction above 1 is refused by it)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; give a fraction up to 1 (0.25: four runs share "
                                         f"a GPU), a whole number, or 0") from None
    if not (0 <= value <= 1 or value.is_integer()):
        raise argparse.ArgumentTypeError(f"{text} is not accepted; give a fraction up to 1 (0.25: four runs share a "
                                         f"GPU), a whole number, or 0")
    return value


def output_folder(text: str) -> str:
    """A folder to write into: it may not exist yet (it is created), but it may not be a file, lie under one, or be
    where this process cannot write (``utils.storage.claim_folder``)."""
    from .storage import OutputError, claim_folder
    try:
        claim_folder(text)
    except OutputError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text

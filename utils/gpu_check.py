"""`python -m utils.gpu_check [--minutes M] [--dry-run]` (`make gpu-check`): what a lent GPU is for, in one command
that ends within M minutes (default 10) and commits nothing:

1. the CUDA-only tests (the graph step equal to eager, capture, replay randomness);
2. the benchmark in full mode (`utils.bench`), its recipe timing cut to ``BENCH_FIT_EPOCHS`` epochs so that it ends
   within ``BENCH_SECONDS``, into ``results/bench/bench_<device>.json``;
3. the missing full-profile runs of the headline studies, trained with the faster engine of that benchmark until
   the deadline (`utils.sweep --stop-after`: a run cut short keeps its last epoch's state and resumes next time).

Without CUDA each step says why it is skipped. At the end it lists what it wrote under ``results/``: commit it yourself.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .cli import OneLineParser, positive_float

TEST_SECONDS = 120
BENCH_SECONDS = 240
BENCH_FIT_EPOCHS = 10
# Time kept back for the sweep to stop its workers (utils.stopping's grace) and for the listing at the end.
MARGIN_SECONDS = 45
# Less than this left for training: not worth starting the workers.
MIN_TRAIN_SECONDS = 60
HEADLINE_STUDIES = ("deep_efficientnet", "baselines", "attention")


@dataclass(frozen=True)
class Step:
    name: str
    command: list[str]
    seconds: float             # the step's time limit
    skipped: str | None = None  # why it does not run here, or None


def device_slug(name: str) -> str:
    """A file-name form of a device name ("NVIDIA H100 80GB HBM3" -> "nvidia_h100_80gb_hbm3")."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def bench_path(device: str) -> Path:
    return Path("results/bench") / f"bench_{device_slug(device)}.json"


def plan_check(minutes: float, cuda: bool, device: str) -> list[Step]:
    """The three steps and their time limits within ``minutes``; each skipped with its reason where it cannot run."""
    python = sys.executable
    training_seconds = 60 * minutes - TEST_SECONDS - BENCH_SECONDS - MARGIN_SECONDS
    steps = [
        Step("CUDA-only tests", [python, "-m", "pytest", "-q", "tests/test_training.py", "-k", "cuda or graph or host"],
             TEST_SECONDS),
        Step("benchmark (full mode)", [python, "-m", "utils.bench", "--fit-epochs", str(BENCH_FIT_EPOCHS),
                                       "--out", str(bench_path(device))], BENCH_SECONDS),
        Step("full-profile training", [python, "-m", "utils.sweep", "--profile", "full", "--only", *HEADLINE_STUDIES,
                                       "--stop-after", f"{max(training_seconds, 0) / 60:.2f}"],
             training_seconds + MARGIN_SECONDS,
             None if training_seconds >= MIN_TRAIN_SECONDS else
             f"{max(training_seconds, 0):.0f} s would be left after the tests and the benchmark; give --minutes "
             f"{(TEST_SECONDS + BENCH_SECONDS + MARGIN_SECONDS + MIN_TRAIN_SECONDS) / 60:.1f} or more"),
    ]
    if not cuda:
        why = "no CUDA device here: this step is for a lent GPU (the CPU runs the rest of the tests in make test)"
        return [Step(s.name, s.command, s.seconds, why) for s in steps]
    return steps


def faster_engine(bench: dict) -> str:
    """The engine whose training step the benchmark measured faster: graph where it ran and beat eager."""
    engines = bench.get("engines", {})
    graph, eager = engines.get("graph", {}), engines.get("eager", {})
    if "wall_ms_per_step" in graph and graph["wall_ms_per_step"] < eager.get("wall_ms_per_step", float("inf")):
        return "graph"
    return "eager"


def written_results() -> list[str]:
    """What is new or changed under results/ (git's view): the check commits nothing itself."""
    out = subprocess.run(["git", "status", "--porcelain", "--", "results"], capture_output=True, text=True).stdout
    return [line[3:] for line in out.splitlines()]


def run_check(minutes: float, dry_run: bool = False) -> int:
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "cpu"
    steps = plan_check(minutes, cuda, device)
    failed = 0
    for step in steps:
        if step.name == "full-profile training" and not step.skipped and not dry_run:
            path = bench_path(device)
            engine = faster_engine(json.loads(path.read_text())) if path.is_file() else "eager"
            step = Step(step.name, step.command + ["--engine", engine], step.seconds)
        head = f"gpu-check: {step.name} (at most {step.seconds / 60:.1f} min)"
        if step.skipped:
            print(f"{head}: skipped, {step.skipped}", flush=True)
            continue
        print(f"{head}: {' '.join(step.command[1:])}", flush=True)
        if dry_run:
            continue
        started = time.time()
        try:
            code = subprocess.run(step.command, timeout=step.seconds).returncode
        except subprocess.TimeoutExpired:
            code = "timed out"
        failed += code != 0
        print(f"gpu-check: {step.name} ended ({code}) after {time.time() - started:.0f} s", flush=True)
    if not dry_run:
        written = written_results()
        print("gpu-check: written under results/ (nothing is committed):" + "".join(f"\n  {p}" for p in written)
              if written else "gpu-check: nothing written under results/")
    return 1 if failed else 0


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.gpu_check", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=positive_float, default=10.0, help="the whole check's time (default 10)")
    parser.add_argument("--dry-run", action="store_true", help="say what would run, and within which limits")
    args = parser.parse_args(argv)
    sys.exit(run_check(args.minutes, args.dry_run))


if __name__ == "__main__":
    main()

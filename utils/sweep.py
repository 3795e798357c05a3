"""`python -m utils.sweep [--profile P] [--workers N] [--only STUDY ...] [--dry-run]`: plan every training run
the notebooks need, train what is missing N at a time, then write the studies' summaries (``utils.summaries``),
so that executing the notebooks afterwards trains nothing.

The runs are the studies' own declarations (``utils.studies.STUDIES``), so this list can never drift from
what the notebooks train. Stored runs are skipped. A study whose next stage depends on results
(PatchCamelyon's final run retrains the screen's winner) is planned again once those results exist. Each
run trains in its own worker process: one GPU holds several of these small models at once and keeps busier
than with one at a time; on a CPU, workers share the cores.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context

import torch

from .experiment import run_training
from .profiles import PROFILE_NAMES, Profile, as_profile, get_profile
from .studies import STUDIES, PlannedRun, stored_record, walk_stages
from .summaries import SUMMARIES, write_summaries

def plan(names: list[str], profile: Profile | str) -> dict[str, dict]:
    """Run name -> ``run_training`` arguments of every run the named studies need that is not stored
    yet, each run once, in study order. A next stage is planned once every run of its study's first stage
    is stored."""
    profile = as_profile(profile)
    planned: dict[str, dict] = {}

    def add(runs: list[PlannedRun]) -> list[dict | None]:
        records = []
        for p in runs:
            name, record = stored_record(p, profile)
            if record is None:
                planned.setdefault(name, dict(model=p.model, dataset=p.dataset, profile=profile.name, seed=p.seed,
                                              **p.arguments))
            records.append(record)
        return records

    for name in names:
        walk_stages(STUDIES[name], profile, add)
    return planned


# Measured on one H100 at dff1171: four host-bound runs at a time each trained at single-run speed
# (../shared/gpu-runs/dff1171/README.md), so one GPU takes four workers; a CPU's cores are better spent
# on one run's threads.
RUNS_PER_GPU = 4


def default_workers() -> int:
    """Worker processes that fill this machine: RUNS_PER_GPU per visible CUDA device, else 1."""
    return RUNS_PER_GPU * torch.cuda.device_count() if torch.cuda.is_available() else 1


def time_left(finished_seconds: float, done: int, left: int) -> str:
    """The estimate printed after each finished run: the pace so far (wall seconds per finished run, workers
    included) times the runs left."""
    if done == 0:
        return "unknown"
    seconds = finished_seconds / done * left
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _init_worker(threads: int):
    os.environ["TQDM_DISABLE"] = "1"  # one line per finished run instead of interleaved bars
    torch.set_num_threads(threads)


def _train(kwargs: dict) -> tuple[str, float]:
    started = time.time()
    record = run_training(**kwargs)
    return record["run"], time.time() - started


def sweep(names: list[str], profile: Profile | str, workers: int, dry_run: bool = False) -> int:
    """Train everything ``plan`` lists, ``workers`` at a time, until nothing is left; 1 if a run failed."""
    profile = as_profile(profile)
    started, attempted = time.time(), set()
    # The caller's thread budget (its cores, or less where it was told so, as under make test) shared out.
    threads = max(1, torch.get_num_threads() // workers)
    while True:
        todo = plan(names, profile)
        print(f"sweep ({profile.name}): {len(todo)} run{'' if len(todo) == 1 else 's'} to train"
              + (" (dry run)" if dry_run else ""), flush=True)
        if dry_run:
            print("\n".join(f"  {run}" for run in todo))
            return 0
        if not todo:
            # Every run is stored: measure the evaluations the summaries need (TTA, ROAD), write the summaries.
            covered = [name for name, summary in SUMMARIES.items() if set(summary.studies) <= set(names)]
            written = write_summaries(profile, covered, datasets=[], compute=True)
            print(f"sweep done in {time.time() - started:.0f} s; {len(written)} of {len(covered)} summaries rewritten",
                  flush=True)
            return 0
        if attempted & set(todo):
            print("sweep: runs still missing after their attempt (see the errors above)", file=sys.stderr)
            return 1
        attempted |= set(todo)
        failed, batch_started = 0, time.time()
        print(f"sweep: {workers} worker{'' if workers == 1 else 's'}, {threads} thread{'' if threads == 1 else 's'} each",
              flush=True)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads,)) as pool:
            futures = {pool.submit(_train, kwargs): run for run, kwargs in todo.items()}
            for done, future in enumerate(as_completed(futures), 1):
                left = f"{len(todo) - done} left, about {time_left(time.time() - batch_started, done, len(todo) - done)}"
                try:
                    run, seconds = future.result()
                    print(f"[{done}/{len(todo)}] {run} {seconds:.0f} s; {left}", flush=True)
                except Exception as error:  # report every failure, finish the others
                    failed += 1
                    print(f"[{done}/{len(todo)}] FAILED {futures[future]}: {error!r}; {left}", file=sys.stderr,
                          flush=True)
        if failed:
            return 1


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.sweep", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="default: $PROFILE, else full on CUDA, cpu otherwise")
    parser.add_argument("--workers", type=int, help=f"runs trained at the same time (default: {RUNS_PER_GPU} per "
                        "CUDA device, 1 on a CPU)")
    parser.add_argument("--only", nargs="+", choices=list(STUDIES), default=list(STUDIES), metavar="STUDY",
                        help=f"studies to run, of: {', '.join(STUDIES)}")
    parser.add_argument("--dry-run", action="store_true", help="list the runs to train and stop")
    args = parser.parse_args(argv)
    sys.exit(sweep(args.only, get_profile(args.profile), args.workers or default_workers(), args.dry_run))


if __name__ == "__main__":
    main()

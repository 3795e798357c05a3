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
import importlib.util
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures import TimeoutError as FuturesTimeout
from multiprocessing import get_context

import torch

from .cli import OneLineParser, gpu_share, positive_float, positive_int
from .experiment import run_training
from .profiles import PROFILE_NAMES, Profile, as_profile, get_profile
from .stopping import Stopped, init_worker, run_stoppable, stop_workers, workers_stopped_on_signal
from .studies import STUDIES, PlannedRun, plan_of, stored_record, walk_stages
from .summaries import SUMMARIES, write_summaries
from .training import ENGINES

def plan(names: list[str], profile: Profile | str, runs: list[str] | None = None) -> dict[str, dict]:
    """Run name -> ``run_training`` arguments of every run the named studies need that is not stored
    yet, each run once, in study order (only names starting with one of ``runs``, where given). A next stage is
    planned once every run of its study's first stage is stored."""
    profile = as_profile(profile)
    planned: dict[str, dict] = {}

    prefixes = tuple(runs or ())

    def add(study_runs: list[PlannedRun]) -> list[dict | None]:
        records = []
        for p in study_runs:
            name, record = stored_record(p, profile)
            if record is None and (not prefixes or name.startswith(prefixes)):
                planned.setdefault(name, dict(model=p.model, dataset=p.dataset, profile=profile.name, seed=p.seed,
                                              **p.arguments))
            records.append(record)
        return records

    for name in names:
        walk_stages(STUDIES[name], profile, add)
    return planned


# Measured on one H100 at dff1171: four host-bound runs at a time each trained at single-run speed
# (../shared/gpu-runs/dff1171/README.md), so one GPU takes four workers.
RUNS_PER_GPU = 4
# On a CPU, one single-thread worker per core: two one-thread DeepEfficientNet runs train more images per second
# than one two-thread run, and a one-thread run slows little when something else takes its core where a two-thread
# run slows down (every OpenMP region waits for its descheduled thread). The ratios, measured side by side by
# `python -m utils.bench --cpu-threads`, are in the README, "Training on a CPU".
CPU_WORKER_THREADS = 1
# Workers on a CPU run at this niceness, so tests and editing beside a sweep stay usable.
CPU_WORKER_NICENESS = 10


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def default_workers() -> int:
    """Worker processes that fill this machine: RUNS_PER_GPU per visible CUDA device, else one per core."""
    return RUNS_PER_GPU * torch.cuda.device_count() if torch.cuda.is_available() else cpu_cores()


def worker_threads(workers: int) -> int:
    """Threads per worker: the caller's thread budget shared out on a GPU (the GPU does the work); on a CPU one
    each, unless fewer workers than the budget's threads were asked for."""
    budget = torch.get_num_threads()
    if torch.cuda.is_available():
        return max(1, budget // workers)
    return max(CPU_WORKER_THREADS, budget // workers) if workers < budget else CPU_WORKER_THREADS


# A campaign that may be cut short trains what matters most first (issues #23, #33, #35): the headline models over
# every seed; then the attention variants on the fast backbone, seed by seed (a cut campaign leaves paired seeds); then
# one seed of each slow comparison; then one seed of each recipe ingredient the course project credited; then
# DeepEfficientNet's own SE; then the rest. A run cut short (its state file is there) resumes before all of them: a
# session that ends mid-run otherwise leaves two half-trained runs behind for every new one it starts.
HEADLINE_MODELS = ("deep_efficientnet", "simple_cnn", "efficientnet_lite0_pretrained")
SMALL_BACKBONE_VARIANTS = ("simple_cnn_se", "simple_cnn_cbam", "simple_cnn_msff")
FIRST_SEED_MODELS = ("attention_none", "attention_se", "attention_cbam", "attention_msff", "resnet18",
                     "efficientnet_lite0")
FIRST_SEED_INGREDIENTS = ("ablation_all_regularisation_off", "ablation_step_schedule", "ablation_no_augmentation",
                          "ablation_affine_colour")
THEN_MODELS = ("ablation_se_off",)


def run_kind(kwargs: dict) -> str:
    """A planned run's tag, else its model (``_pretrained`` where it starts from ImageNet weights)."""
    pretrained = (kwargs.get("model_kwargs") or {}).get("pretrained")
    return kwargs.get("tag") or kwargs["model"] + ("_pretrained" if pretrained else "")


def campaign_order(todo: dict[str, dict]) -> dict[str, dict]:
    """``todo`` in the campaign's order above (each group in plan order)."""
    def rank(kwargs: dict) -> tuple:
        kind, seed = run_kind(kwargs), kwargs["seed"]
        if plan_of(kwargs).path(".state.pt").exists():
            return (-1,)
        if kwargs["dataset"] != "bloodmnist":
            return (6,)
        if kind in HEADLINE_MODELS:
            return 0, HEADLINE_MODELS.index(kind), seed
        if kind in SMALL_BACKBONE_VARIANTS:
            return 1, seed, SMALL_BACKBONE_VARIANTS.index(kind)
        first_seed = seed == as_profile(kwargs["profile"]).seeds[0]
        if kind in FIRST_SEED_MODELS and first_seed:
            return 2, FIRST_SEED_MODELS.index(kind)
        if kind in FIRST_SEED_INGREDIENTS and first_seed:
            return 3, FIRST_SEED_INGREDIENTS.index(kind)
        if kind in THEN_MODELS:
            return 4, seed
        return (5,)
    return dict(sorted(todo.items(), key=lambda item: rank(item[1])))


def time_left(finished_seconds: float, done: int, left: int) -> str:
    """The estimate printed after each finished run: the pace so far (wall seconds per finished run, workers
    included) times the runs left."""
    if done == 0:
        return "unknown"
    seconds = finished_seconds / done * left
    return f"{seconds / 60:.0f} min" if seconds >= 120 else f"{seconds:.0f} s"


def _init_worker(threads: int, niceness: int):
    init_worker()  # a stopped sweep stops its workers (utils.stopping)
    os.environ["TQDM_DISABLE"] = "1"  # one line per finished run instead of interleaved bars
    torch.set_num_threads(threads)
    if niceness:
        os.nice(niceness)


def _train(kwargs: dict) -> tuple[str, float]:
    started = time.time()
    record = run_stoppable(run_training, **kwargs)
    return record["run"], time.time() - started


def report(finished, total: int) -> int:
    """One line per run as ``finished`` gives its (name, seconds, error or None), with the runs and time left, as the
    local pool prints; the number that failed."""
    started, failed = time.time(), 0
    for done, (run, seconds, error) in enumerate(finished, 1):
        left = f"{total - done} left, about {time_left(time.time() - started, done, total - done)}"
        if error is None:
            print(f"[{done}/{total}] {run} {seconds:.0f} s; {left}", flush=True)
        else:
            failed += 1
            print(f"[{done}/{total}] FAILED {run}: {error}; {left}", file=sys.stderr, flush=True)
    return failed


def sweep(names: list[str], profile: Profile | str, workers: int, dry_run: bool = False, backend=None,
          stop_after: float | None = None, engine: str | None = None, runs: list[str] | None = None) -> int:
    """Train everything ``plan`` lists, ``workers`` at a time (or each batch by ``backend``, e.g. on Ray:
    ``utils.ray_sweep``), until nothing is left; 1 if a run failed. ``stop_after`` (seconds, local pool): then stop
    the workers as SIGTERM would (a run cut short keeps its last epoch's state and resumes next time) and return 0.
    ``runs``: only the planned runs whose names start with one of these (e.g. ``ablation_se_off``).
    ``engine``: the training engine of every run (not part of a run's name)."""
    deadline = None if stop_after is None else time.time() + stop_after
    profile = as_profile(profile)
    started, attempted = time.time(), set()
    threads = worker_threads(workers)
    niceness = 0 if torch.cuda.is_available() else CPU_WORKER_NICENESS
    while True:
        todo = campaign_order(plan(names, profile, runs))
        print(f"sweep ({profile.name}): {len(todo)} run{'' if len(todo) == 1 else 's'} to train"
              + (" (dry run)" if dry_run else ""), flush=True)
        if dry_run:
            print("\n".join(f"  {run}" for run in todo))
            return 0
        if not todo and runs:
            print(f"sweep done in {time.time() - started:.0f} s (only runs named {', '.join(runs)}*)", flush=True)
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
        jobs = {run: dict(kwargs, engine=engine) if engine else kwargs for run, kwargs in todo.items()}
        if backend is not None:
            if report(backend(jobs), len(jobs)):
                return 1
            continue
        print(f"sweep: {workers} worker{'' if workers == 1 else 's'}, {threads} thread{'' if threads == 1 else 's'} each"
              + (f", niceness {niceness}" if niceness else ""), flush=True)
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker,
                                 initargs=(threads, niceness)) as pool, workers_stopped_on_signal():
            futures = {pool.submit(_train, kwargs): run for run, kwargs in jobs.items()}
            try:
                failed = report(_finished(futures, None if deadline is None else max(0.0, deadline - time.time())),
                                len(jobs))
            except FuturesTimeout:
                for future in futures:
                    future.cancel()
                stopped = stop_workers()
                print(f"sweep: stopped after {stop_after / 60:.1f} min as asked; {stopped} worker"
                      f"{'' if stopped == 1 else 's'} stopped, a run cut short keeps its last epoch's state; the same "
                      "command trains what is missing", flush=True)
                return 0
        if failed:
            return 1


def _finished(futures: dict, timeout: float | None):
    """(run, seconds, error or None) of each pool future as it finishes; ``FuturesTimeout`` at ``timeout``."""
    for future in as_completed(futures, timeout=timeout):
        try:
            run, seconds = future.result()
            yield run, seconds, None
        except Exception as error:  # report every failure, finish the others
            yield futures[future], 0.0, repr(error)


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.sweep", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="default: $PROFILE, else full on CUDA, cpu otherwise")
    parser.add_argument("--workers", type=positive_int, help=f"runs trained at the same time (default: {RUNS_PER_GPU} per "
                        f"CUDA device, else one per CPU core with {CPU_WORKER_THREADS} thread each)")
    parser.add_argument("--only", nargs="+", choices=list(STUDIES), default=list(STUDIES), metavar="STUDY",
                        help=f"studies to run, of: {', '.join(STUDIES)}")
    parser.add_argument("--runs", nargs="+", metavar="PREFIX", help="only the planned runs whose names start with one "
                        "of these (e.g. ablation_se_off simple_cnn_se)")
    parser.add_argument("--dry-run", action="store_true", help="list the runs to train and stop")
    parser.add_argument("--stop-after", type=positive_float, metavar="MINUTES",
                        help="stop the workers after this long; a run cut short resumes from its last epoch next time")
    parser.add_argument("--engine", choices=ENGINES, help="training engine of every run (default: the recipe's, auto)")
    parser.add_argument("--backend", choices=("local", "ray"), default="local", help="local: worker processes on this "
                        "machine (default); ray: one Ray task per run, on a local Ray instance or a cluster (utils.ray_sweep)")
    parser.add_argument("--address", help="with --backend ray: the cluster to join (auto: the one `ray start` started on "
                        "this machine, or HOST:PORT); default: a new local Ray instance")
    parser.add_argument("--gpus-per-run", type=gpu_share, help="with --backend ray: GPUs each run asks for (default: "
                        f"1/{RUNS_PER_GPU} where the cluster has GPUs, else 0)")
    parser.add_argument("--cpus-per-run", type=positive_int, help="with --backend ray: CPUs (and threads) each run asks "
                        f"for (default: {CPU_WORKER_THREADS})")
    args = parser.parse_args(argv)
    ray_only = [flag for flag, value in (("--address", args.address), ("--gpus-per-run", args.gpus_per_run),
                                         ("--cpus-per-run", args.cpus_per_run)) if value is not None]
    if args.backend == "local" and ray_only:
        parser.error(f"{', '.join(ray_only)} go{'es' if len(ray_only) == 1 else ''} with --backend ray")
    if args.backend == "ray" and args.workers:
        parser.error("--workers goes with --backend local; Ray fills the cluster by --cpus-per-run and --gpus-per-run")
    if args.backend == "ray" and importlib.util.find_spec("ray") is None:
        parser.error("--backend ray needs Ray: pip install 'ray>=2.9' (it is in requirements.txt)")
    try:
        stop_after = None if args.stop_after is None else 60 * args.stop_after
        if args.backend == "ray" and not args.dry_run:  # the same plan and loop, each run a Ray task
            from .ray_sweep import ray_backend
            with ray_backend(args.address, args.gpus_per_run, args.cpus_per_run or CPU_WORKER_THREADS,
                             gpus_by_default=1 / RUNS_PER_GPU, niceness=CPU_WORKER_NICENESS) as backend:
                sys.exit(sweep(args.only, get_profile(args.profile), 1, backend=backend, engine=args.engine, runs=args.runs))
        sys.exit(sweep(args.only, get_profile(args.profile), args.workers or default_workers(), args.dry_run,
                       stop_after=stop_after, engine=args.engine, runs=args.runs))
    except Stopped as stop:  # SIGTERM or SIGINT: the workers are stopped already
        sys.exit(stop.exit_code)


if __name__ == "__main__":
    main()

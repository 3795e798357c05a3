"""`python -m utils.sweep --backend ray [--address auto|HOST:PORT] [--gpus-per-run F] [--cpus-per-run N]`: the
sweep's runs trained as Ray tasks, on one machine or on a cluster of any number of GPUs and nodes.

``utils.sweep`` plans and loops as it does for its local pool (the studies' declarations, headline runs first, a next
stage once its first stage is stored, the summaries when nothing is missing); ``ray_backend`` trains each batch it
plans, each missing run one Ray task that asks for ``--cpus-per-run`` CPUs and ``--gpus-per-run`` GPUs (default 1/4
where the cluster has GPUs: four small runs share one GPU, as with the local pool). This module knows nothing of the
plan: the sweep passes it runs (``run_training`` arguments by name) and prints a line as each comes back.

Where results go: a task trains with ``run_training`` into the sweep's results folder when it sees that folder
(a file system every node shares: the driver leaves a probe file there and the task looks for it), with its atomic
writes and run locks. A task on a node that does not see it trains in a folder of its own node and returns the
record, predictions and checkpoint; the driver writes them under the run's lock with the same atomic writes,
checkpoint and predictions first, the record last. Either way a restarted sweep trains only what is missing.

A task whose worker or node dies, or that raises, is retried ``RETRIES`` times (Ray's ``max_retries``), resuming
from its last epoch where it can; then it comes back with its error, by name, and the other runs go on.
"""
from __future__ import annotations

import hashlib
import logging
import os
import secrets
import signal
import socket
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from typing import Callable, Iterator

from .experiment import REPO_ROOT, git_commit, reusable_record
from .stopping import STOP_SIGNALS, WORKER_GRACE_SECONDS, Stopped
from .storage import atomic_write, run_lock
from .studies import plan_of

# Attempts after the first: a worker killed (out of memory, preempted), a node lost, or an error that may not recur
# (a GPU out of memory beside other runs). A run that fails every time is reported after 1 + RETRIES attempts.
RETRIES = 2
# What a task returns to a driver that does not share its results folder, written in this order (the record last:
# its presence says the files beside it are complete).
RETURNED_FILES = (".pt", ".npz", ".json")


def node_folder(driver_cwd: str) -> Path:
    """Where a task trains on a node that does not see the driver's results folder: one folder per driver folder,
    kept, so that a retried task resumes from its last epoch and a restarted driver gets a finished run back without
    training it again."""
    return Path(tempfile.gettempdir()) / "ray-sweep" / hashlib.sha256(driver_cwd.encode()).hexdigest()[:12]


class StopFlag:
    """A Ray actor the driver sets when the sweep is stopped; every task watches it (``_interrupt_when_set``).
    Why not ``ray.cancel``: a cancel that meets a task's reply in flight aborts the driver (Ray's check "Tried to
    complete task that was not pending", ray-project/ray#54846, seen with Ray 2.60 when a run ended as the sweep was
    stopped), so the tasks stop themselves and return."""

    def __init__(self):
        self.stopped = False

    def set(self) -> None:
        self.stopped = True

    def is_set(self) -> bool:
        return self.stopped


# Seconds between a task's looks at the stop flag: a stopped run unwinds within about this long.
STOP_POLL_S = 0.5


@contextmanager
def _interrupt_when_set(stop_flag) -> Iterator[None]:
    """Within the block, a KeyboardInterrupt in this (the task's main) thread once ``stop_flag`` is set, as
    ``ray.cancel`` would raise: the run unwinds (temporary file removed, lock released, last epoch's state kept)."""
    import _thread
    import threading
    import ray
    finished = threading.Event()

    def watch():
        while not finished.wait(STOP_POLL_S):
            if ray.get(stop_flag.is_set.remote()) and not finished.is_set():
                _thread.interrupt_main()
                return
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        finished.set()
        watcher.join()


def train_run(kwargs: dict, driver_cwd: str, probe: str | None, threads: int, niceness: int, stop_flag) -> dict:
    """One Ray task: ``run_training(**kwargs)`` where the driver's results folder is seen (``probe`` names a file
    the driver wrote there), else in ``node_folder`` with the run's files returned as bytes. Once ``stop_flag`` is
    set, the run unwinds and the task returns ``stopped`` (a task that starts after that trains nothing)."""
    import ray
    started = time.time()
    if ray.get(stop_flag.is_set.remote()):
        return {"run": None, "seconds": 0.0, "files": None, "stopped": True}
    try:
        with _interrupt_when_set(stop_flag):
            return _train_run(kwargs, driver_cwd, probe, threads, niceness, started)
    except KeyboardInterrupt:
        if not ray.get(stop_flag.is_set.remote()):
            raise
        return {"run": None, "seconds": time.time() - started, "files": None, "stopped": True}


def _train_run(kwargs: dict, driver_cwd: str, probe: str | None, threads: int, niceness: int, started: float) -> dict:
    import torch
    from .experiment import run_training
    torch.set_num_threads(threads)
    if not torch.cuda.is_available():  # as the local pool's CPU workers: editing and tests beside a sweep stay usable
        os.setpriority(os.PRIO_PROCESS, 0, max(os.getpriority(os.PRIO_PROCESS, 0), niceness))
    if probe is not None and Path(probe).is_file():
        os.chdir(driver_cwd)  # relative paths (results/, data/) as in the driver: the records are the local pool's
        record = run_training(**kwargs)
        return {"run": record["run"], "seconds": time.time() - started, "files": None, "stopped": False}
    folder = node_folder(driver_cwd)
    folder.mkdir(parents=True, exist_ok=True)
    os.chdir(folder)  # the same relative paths, so the record names its files as the local pool's does
    record = run_training(**kwargs, data_root=REPO_ROOT / "data")
    json_path = Path(record["checkpoint"]).with_suffix(".json")
    files = {suffix: json_path.with_suffix(suffix).read_bytes() for suffix in RETURNED_FILES}
    return {"run": record["run"], "seconds": time.time() - started, "files": files, "stopped": False}


def store_returned(json_path: Path, files: dict[str, bytes]) -> None:
    """Write a run that a task returned into the driver's results folder: under the run's lock, each file atomically,
    the record last; a valid record already there (another sweep's) is kept."""
    with run_lock(json_path.parent, json_path.stem):
        if reusable_record(json_path):
            return
        for suffix in RETURNED_FILES:
            atomic_write(json_path.with_suffix(suffix), lambda f, data=files[suffix]: f.write(data))


def one_line(error: BaseException) -> str:
    """A task's error in one line: the exception the run raised (not Ray's wrapper and traceback), else Ray's."""
    import ray
    cause = error.cause if isinstance(error, ray.exceptions.RayTaskError) and error.cause is not None else error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}"


# How long the sweep waits for a cluster's address to answer before it says it cannot be reached (Ray itself retries
# for minutes, naming addresses the user never gave).
CONNECT_TIMEOUT_S = 5.0


class ClusterUnreachable(SystemExit):
    """No Ray cluster answers at ``--address``. A ``SystemExit`` whose code is its one line (exit status 1): the
    sweep's command line ends with it, not with a traceback or with Ray retrying for minutes."""

    def __init__(self, address: str, reason: str):
        super().__init__(f"python -m utils.sweep: error: --address {address}: {reason}; start a cluster there (`ray "
                         f"start --head --port PORT` on that machine), check the host and port (`ray status` there "
                         f"prints them), or leave --address out to start a local Ray instance")


def check_address(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Raise ``ClusterUnreachable`` unless ``address`` (HOST:PORT, or ray://HOST:PORT) accepts a connection within
    ``timeout`` seconds; "auto" and None are Ray's to resolve."""
    if address in (None, "auto", "local"):
        return
    host, colon, port = address.split("://", 1)[-1].rstrip("/").rpartition(":")
    host = host.strip("[]")
    if not (colon and host and port.isdigit() and 0 < int(port) < 65536):
        raise ClusterUnreachable(address, "not HOST:PORT (e.g. 10.0.0.5:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except TimeoutError:
        raise ClusterUnreachable(address, f"nothing answered within {timeout:g} s") from None
    except OSError as error:
        raise ClusterUnreachable(address, f"cannot connect ({error.strerror or error})") from None


def connect(address: str | None) -> bool:
    """Join the cluster at ``address`` ("auto": the one ``ray start`` started on this machine), else start a local
    Ray instance; True if this call started or joined it (and so shuts it down). A Ray already initialised in this
    process (a test's) is used as it is. An address that does not answer stops the sweep in one line
    (``ClusterUnreachable``) before Ray is started."""
    import ray
    if ray.is_initialized():
        return False
    check_address(address)
    try:
        ray.init(address=address or "local", include_dashboard=False, logging_level=logging.WARNING)
    except ConnectionError as error:  # "auto" with no cluster on this machine, or a port that is not Ray's
        if not address:
            raise
        raise ClusterUnreachable(address, str(error).strip().splitlines()[0]) from None
    return True


# What the sweep's loop gets: for a batch of runs (name -> ``run_training`` arguments), each run's (name, seconds,
# error or None) as it finishes.
Backend = Callable[[dict[str, dict]], Iterator[tuple[str, float, str | None]]]


@contextmanager
def ray_backend(address: str | None, gpus_per_run: float | None, cpus_per_run: int, *, gpus_by_default: float,
                niceness: int, shared: bool | None = None) -> Iterator[Backend]:
    """Within the block, a ``Backend`` that trains each run as a Ray task (``connect``: ``address``) with
    ``cpus_per_run`` CPUs (and threads) and ``gpus_per_run`` GPUs (None: ``gpus_by_default`` where the cluster has
    GPUs, else 0), at ``niceness`` on a CPU. ``shared=None`` finds out whether each task sees the results folder;
    False makes every task return its files (what a node without the shared folder does)."""
    import ray
    started_here = connect(address)
    try:
        resources = ray.cluster_resources()
        gpus = gpus_per_run if gpus_per_run is not None else (gpus_by_default if resources.get("GPU") else 0)
        env = {"PYTHONPATH": os.pathsep.join(filter(None, (str(REPO_ROOT), os.environ.get("PYTHONPATH")))),
               "GIT_COMMIT": git_commit(), "TQDM_DISABLE": "1"}
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus, max_retries=RETRIES, retry_exceptions=True,
                          runtime_env={"env_vars": env})(train_run)
        print(f"sweep: Ray with {resources.get('CPU', 0):g} CPUs and {resources.get('GPU', 0):g} GPUs; each run "
              f"{cpus_per_run} CPU{'' if cpus_per_run == 1 else 's'}" + (f", {gpus:g} GPU" if gpus else "")
              + f", {RETRIES} retries", flush=True)
        stop_flag = ray.remote(num_cpus=0)(StopFlag).remote()
        yield lambda todo: _train_batch(todo, task, stop_flag, shared, cpus_per_run, niceness)
    finally:
        if started_here:
            ray.shutdown()


@contextmanager
def _stops_noted():
    """Within the block SIGTERM and SIGINT are noted in the list it gives, for the sweep to stop on between two waits:
    an exception raised by a signal handler inside ``ray.wait`` breaks it (a ``SystemError`` from Ray's core)."""
    noted: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: noted.append(signum)) for signum in STOP_SIGNALS}
    try:
        yield noted
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop(pending: dict, stop_flag) -> int:
    """Stop the pending tasks: the stop flag set (each running run unwinds and its task returns), then, after
    ``WORKER_GRACE_SECONDS``, the worker of any task still running killed."""
    import ray
    ray.get(stop_flag.set.remote())
    _, stuck = ray.wait(list(pending), num_returns=len(pending), timeout=WORKER_GRACE_SECONDS)
    for ref in stuck:
        ray.cancel(ref, force=True)
    return len(pending)


def _train_batch(todo: dict[str, dict], task, stop_flag, shared: bool | None, threads: int,
                 niceness: int) -> Iterator[tuple[str, float, str | None]]:
    """Submit every run of ``todo``; yield each one's (name, seconds, error or None) as it finishes. SIGTERM or
    SIGINT stops the runs not finished (``_stop``) and raises ``Stopped``."""
    import ray
    json_paths = {run: plan_of(kwargs).json_path for run, kwargs in todo.items()}
    probe = None
    if shared is not False:  # a file only the nodes that share the results folder see
        probe = next(iter(json_paths.values())).parent.resolve() / f".ray-probe-{secrets.token_hex(8)}"
        atomic_write(probe, lambda f: f.write(b"written by the sweep's driver; removed when it ends\n"))
    try:
        with _stops_noted() as stops:
            pending = {task.options(name=run).remote(kwargs, os.getcwd(), probe and str(probe), threads, niceness,
                                                    stop_flag): run
                       for run, kwargs in todo.items()}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
                if stops:
                    stopped = _stop(pending, stop_flag)
                    print(f"sweep: stopped by {signal.Signals(stops[0]).name}; {stopped} Ray task"
                          f"{'' if stopped == 1 else 's'} stopped, nothing more is written. The same command trains "
                          f"what is missing (a run cut short resumes from its last epoch).", file=sys.stderr, flush=True)
                    raise Stopped(stops[0])
                for ref in ready:
                    run = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                        if result["files"] is not None:
                            store_returned(json_paths[run], result["files"])
                    except Exception as error:  # failed every attempt (1 + RETRIES), or could not be stored
                        yield run, 0.0, one_line(error)
                    else:
                        yield run, result["seconds"], None
    finally:
        if probe:
            probe.unlink(missing_ok=True)

"""The sweep on Ray (issue #27, ``utils/ray_sweep.py``), on one local Ray instance of 2 CPUs shared by this module's
tests, in the smoke profile: the Ray sweep stores the local pool's records (same names, same metrics) and then finds
nothing to do; a worker killed mid-run is retried and the sweep completes, with the files returned to the driver; a
run that fails every attempt is named with its error while the others are stored. The imbalance study's four
SimpleCNN runs (a few seconds each) stand for any study."""
import importlib.util
import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from utils.sweep import CPU_WORKER_NICENESS, CPU_WORKER_THREADS, RUNS_PER_GPU, campaign_order, main, plan, sweep

needs_ray = pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                               reason="ray is not installed (pip install -r requirements.txt)")
STUDY = ["imbalance"]
RUNS = Path("build/smoke/results/runs")


@pytest.fixture(scope="module")
def local_ray():
    import ray
    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def ray_sweep(names: list[str], shared: bool | None = None) -> int:
    """``python -m utils.sweep --backend ray --only <names>`` on this module's Ray instance."""
    from utils.ray_sweep import ray_backend
    with ray_backend(None, None, CPU_WORKER_THREADS, gpus_by_default=1 / RUNS_PER_GPU, niceness=CPU_WORKER_NICENESS,
                     shared=shared) as backend:
        return sweep(names, "smoke", 1, backend=backend)


def _metrics(folder: Path) -> dict[str, tuple]:
    """Run name -> (val metrics, test metrics) of every record in ``folder``."""
    return {path.stem: (record["val"], record["test"]) for path in sorted(folder.glob("*.json"))
            for record in [json.loads(path.read_text())]}


@pytest.fixture(scope="module")
def pool_metrics(tmp_path_factory):
    """What the local pool stores for the study (two workers, one thread each, as the Ray tasks)."""
    folder, cwd = tmp_path_factory.mktemp("pool"), os.getcwd()
    os.chdir(folder)
    try:
        assert sweep(STUDY, "smoke", workers=2) == 0
    finally:
        os.chdir(cwd)
    metrics = _metrics(folder / RUNS)
    assert len(metrics) == 4
    return metrics


@needs_ray
def test_the_ray_sweep_stores_the_local_pools_records_then_finds_nothing_to_do(tmp_path, monkeypatch, capsys,
                                                                                local_ray, pool_metrics):
    monkeypatch.chdir(tmp_path)
    assert ray_sweep(STUDY) == 0
    assert _metrics(RUNS) == pool_metrics  # same names, same val and test metrics
    assert plan(STUDY, "smoke") == {}  # every record valid (checked against its predictions)
    out = capsys.readouterr().out
    assert "4 runs to train" in out and "[4/4] imbalance_" in out and "0 left" in out
    assert not list(RUNS.glob(".ray-probe-*")), "the driver left its probe file"
    written = {path.name: path.stat().st_mtime_ns for path in RUNS.iterdir() if path.is_file()}
    assert ray_sweep(STUDY) == 0  # a second sweep
    assert "0 runs to train" in capsys.readouterr().out
    assert {path.name: path.stat().st_mtime_ns for path in RUNS.iterdir() if path.is_file()} == written


def _descendants(pid: int) -> set[int]:
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            parents[int(stat.parent.name)] = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            pass
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


def _kill_when_training(run: str, lock: Path, killed: list, timeout: float = 150):
    """SIGKILL the Ray worker (a process this test started) that trains ``run``, once its run lock exists."""
    deadline = time.time() + timeout
    while not lock.exists() and time.time() < deadline:
        time.sleep(0.02)
    for pid in _descendants(os.getpid()):
        try:
            title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if title == f"ray::{run}".encode():
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
            return


@needs_ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the Ray worker in Linux /proc")
def test_a_worker_killed_mid_run_is_retried_and_the_runs_come_back_to_the_driver(tmp_path, monkeypatch, capsys,
                                                                                 local_ray, pool_metrics):
    import shutil
    from utils.ray_sweep import node_folder
    monkeypatch.chdir(tmp_path)
    node = node_folder(os.getcwd())  # where a node without the shared results folder trains
    shutil.rmtree(node, ignore_errors=True)
    first = next(iter(campaign_order(plan(STUDY, "smoke"))))
    killed = []
    killer = threading.Thread(target=_kill_when_training, args=(first, node / RUNS / ".locks" / f"{first}.lock", killed))
    killer.start()
    try:
        assert ray_sweep(STUDY, shared=False) == 0
    finally:
        killer.join()
        shutil.rmtree(node, ignore_errors=True)
    assert killed, f"no Ray worker was training {first}"
    assert _metrics(RUNS) == pool_metrics  # written by the driver from what the tasks returned
    assert plan(STUDY, "smoke") == {}
    assert "[4/4]" in capsys.readouterr().out


@needs_ray
def test_a_run_that_fails_every_attempt_is_named_with_its_error_and_the_others_are_stored(tmp_path, monkeypatch,
                                                                                         capsys, local_ray):
    import utils.sweep
    monkeypatch.chdir(tmp_path)
    good_run, good = next(iter(plan(STUDY, "smoke").items()))
    bad = dict(good, tag="broken", model_kwargs={"no_such_argument": 1})  # build_model raises, on every attempt
    todo = {good_run: good, "broken-run": bad}
    monkeypatch.setattr(utils.sweep, "plan", lambda names, profile, runs=None: todo)
    assert ray_sweep(STUDY) == 1
    err = capsys.readouterr().err
    failed = [line for line in err.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and "FAILED broken-run: TypeError" in failed[0] and "no_such_argument" in failed[0], err
    assert list(_metrics(RUNS)) == [good_run]


@needs_ray
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="finds the Ray workers in Linux /proc")
def test_a_stopped_ray_sweep_stops_its_tasks_and_writes_nothing_after(tmp_path, monkeypatch, capsys, local_ray):
    from utils.stopping import Stopped
    monkeypatch.chdir(tmp_path)

    returned = threading.Event()

    def stop_after_the_first_record():
        deadline = time.time() + 150
        while not list(RUNS.glob("*.json")) and time.time() < deadline and not returned.is_set():
            time.sleep(0.05)
        if not returned.is_set():
            os.kill(os.getpid(), signal.SIGTERM)
    # A SIGTERM that arrives after ray_sweep has returned (it failed early on a loaded machine) must fail this test,
    # not kill the process that runs the test suite: outside ray_sweep's own handler it is ignored.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: None)
    stopper = threading.Thread(target=stop_after_the_first_record)
    stopper.start()
    try:
        with pytest.raises(Stopped):
            ray_sweep(STUDY)
    finally:
        returned.set()
        stopper.join()
        signal.signal(signal.SIGTERM, previous)
    written = {path.name: path.stat().st_mtime_ns for path in RUNS.glob("*.json")}
    assert "sweep: stopped by SIGTERM" in capsys.readouterr().err
    training = [pid for pid in _descendants(os.getpid())
                if Path(f"/proc/{pid}/cmdline").exists() and b"ray::imbalance" in Path(f"/proc/{pid}/cmdline").read_bytes()]
    assert not training, "a stopped task still trains"
    time.sleep(1)
    assert {path.name: path.stat().st_mtime_ns for path in RUNS.glob("*.json")} == written
    assert not list(RUNS.glob(".*.tmp")) and not list(RUNS.glob(".ray-probe-*"))
    assert len(plan(STUDY, "smoke")) == 4 - len(written)  # the same command trains only what is missing


@pytest.mark.parametrize("argv, says", [
    (["--address", "auto"], "--address goes with --backend ray"),
    (["--gpus-per-run", "0.25", "--cpus-per-run", "2"], "--gpus-per-run, --cpus-per-run go with --backend ray"),
    (["--backend", "ray", "--workers", "2"], "--workers goes with --backend local"),
    (["--backend", "ray", "--gpus-per-run", "1.5"], "give a fraction up to 1"),
    (["--backend", "ray", "--cpus-per-run", "0"], "give a whole number of 1 or more"),
])
def test_ray_arguments_out_of_place_get_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "smoke", "--only", "imbalance", *argv])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err and len(err.strip().splitlines()) == 1, err

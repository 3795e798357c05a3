"""How a sweep and its worker processes stop (``utils.sweep``).

SIGTERM or SIGINT to the sweep stops every worker before the sweep exits, so nothing trains or writes after it
is gone. A worker that is stopped unwinds its run like an exception: the temporary file of a write in progress is
removed, the run's lock released, and the state of its last finished epoch stays for the next sweep, which
resumes it. Ctrl-C reaches the whole process group: workers leave SIGINT to the sweep, which stops them. A worker
whose sweep dies without a word (SIGKILL) is sent SIGTERM by the kernel (Linux).
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
from contextlib import contextmanager
from multiprocessing import active_children

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# Seconds a stopped worker has to unwind its run before it is killed: it is between two steps within a second,
# unless a long kernel (a large evaluation batch) holds it.
WORKER_GRACE_SECONDS = 30


class Stopped(BaseException):
    """SIGTERM or SIGINT arrived. A BaseException, so that ``except Exception`` clauses let it through."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # what a shell reports for a process the signal ended


def _raise_stopped(signum, frame):
    raise Stopped(signum)


@contextmanager
def stop_raises():
    """Within the block, SIGTERM and SIGINT raise ``Stopped`` in the main thread instead of ending the process."""
    previous = {signum: signal.signal(signum, _raise_stopped) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


@contextmanager
def workers_stopped_on_signal():
    """Within the block, SIGTERM and SIGINT raise ``Stopped``; leaving the block on it, every worker is stopped
    (``stop_workers``) and said so before ``Stopped`` goes on. Enter it after the worker pool, so that the pool's
    own exit (which waits for its workers) finds them stopped."""
    with stop_raises():
        try:
            yield
        except Stopped as stop:
            stopped = stop_workers()
            print(f"sweep: stopped by {stop}; {stopped} worker{'' if stopped == 1 else 's'} stopped, nothing more is "
                  f"written. The same command trains what is missing (a run cut short resumes from its last epoch).",
                  file=sys.stderr, flush=True)
            raise


def stop_workers() -> int:
    """SIGTERM to every worker process of this one, then wait until each has exited (SIGKILL after
    ``WORKER_GRACE_SECONDS``); further signals are ignored meanwhile. Returns how many were stopped."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    workers = active_children()
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(WORKER_GRACE_SECONDS)
        if worker.is_alive():
            worker.kill()
            worker.join()
    return len(workers)


_training = False  # in a worker: whether a run is training (a stop unwinds it) or the worker waits for one


def _stop_worker(signum, frame):
    if _training:
        raise Stopped(signum)
    os._exit(128 + signum)


def init_worker() -> None:
    """In a worker process: SIGTERM stops it (``run_stoppable``), SIGINT is the sweep's, and the death of the sweep
    sends it SIGTERM."""
    signal.signal(signal.SIGTERM, _stop_worker)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() == 1:  # the sweep died before the line above
            os._exit(128 + signal.SIGTERM)


def run_stoppable(function, *args, **kwargs):
    """``function(*args, **kwargs)`` in a worker; a SIGTERM meanwhile unwinds it (files and locks released) and ends
    the worker, which writes nothing more."""
    global _training
    _training = True
    try:
        return function(*args, **kwargs)
    except Stopped as stop:
        sys.stderr.flush()
        os._exit(stop.exit_code)
    finally:
        _training = False

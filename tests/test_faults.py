"""The fault matrix: what a killed process, a damaged file, bad input, a NaN, a full disk or a second
process does to the project. Each test fails when the behaviour it names breaks."""
import errno
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap

import numpy as np
import pytest
import torch

from tests.conftest import REPO
from utils import experiment, storage
from utils.data import DataIntegrityError, ImageDataset, ImageSplit, find_bloodmnist, load_pcam
from utils.models import CheckpointError, build_model, load_checkpoint, save_checkpoint
from utils.profiles import get_profile
from utils.training import NonFiniteLossError, TrainConfig, fit, predict_proba

# A smoke run of the smallest model, at batch 64.
RUN = ["--model", "simple_cnn", "--profile", "smoke", "--epochs", "3", "--seed", "3"]
STEPS_PER_EPOCH = len(experiment.prepare_data("bloodmnist", get_profile("smoke"), experiment.DEFAULT_DATA_ROOT,
                                              "cpu").splits["train"]) // 64
THREADS = torch.get_num_threads()


def _python(code: str = "", args=(), **popen):
    env = {**os.environ, "PROFILE": "smoke", "CI": "1", "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *(["-c", code] if code else []), *args], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def _train_cli(out, *extra):
    """``python -m utils.train`` in this process; its printed one-line summary."""
    from utils.train import main
    buffer = io.StringIO()
    sys.stdout, saved = buffer, sys.stdout
    try:
        main([*RUN, "--out", str(out), *extra])
    finally:
        sys.stdout = saved
    return json.loads(buffer.getvalue().strip().splitlines()[-1])


def _weights(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    """The uninterrupted run every interrupted one must reproduce."""
    out = tmp_path_factory.mktemp("straight")
    summary = _train_cli(out)
    return out, summary


# --- process killed (SIGKILL) at an arbitrary moment of training -------------------------------

@pytest.mark.parametrize("kill_at_step, rerun", [(STEPS_PER_EPOCH + 2, ["--resume"]), (2 * STEPS_PER_EPOCH + STEPS_PER_EPOCH // 2 + 1, [])],
                         ids=["mid-epoch-2-then-resume", "mid-epoch-3-then-plain-rerun"])
def test_a_run_killed_mid_training_ends_where_an_uninterrupted_run_ends(straight_run, tmp_path, kill_at_step, rerun,
                                                                        monkeypatch, capsys):
    killer = textwrap.dedent(f"""
        import os, signal, sys, torch
        torch.set_num_threads({THREADS})
        steps, step = 0, torch.optim.AdamW.step
        def killing_step(self, *args, **kwargs):
            global steps
            steps += 1
            if steps == {kill_at_step}:
                os.kill(os.getpid(), signal.SIGKILL)
            return step(self, *args, **kwargs)
        torch.optim.AdamW.step = killing_step
        from utils.train import main
        main(sys.argv[1:])
    """)
    proc = _python(killer, [*RUN, "--out", str(tmp_path)])
    proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL
    assert not list(tmp_path.glob("*.json")), "a killed run left a record behind"
    assert list(tmp_path.glob("*.state.pt")), "no epoch state was saved before the kill"

    # The rerun, with --resume or without, trains only the epochs the killed run had not finished.
    from utils.training import EagerStep
    epochs_trained, run_epoch = [], EagerStep.run_epoch
    monkeypatch.setattr(EagerStep, "run_epoch", lambda self, *a, **k: epochs_trained.append(1) or run_epoch(self, *a, **k))
    resumed = _train_cli(tmp_path, *rerun)
    done = (kill_at_step - 1) // STEPS_PER_EPOCH
    assert len(epochs_trained) == 3 - done, "the rerun did not continue from the saved state"
    assert f"({done} of 3 epochs done)" in capsys.readouterr().err, "the rerun did not say it resumed"
    out, straight = straight_run
    assert resumed["run"] == straight["run"]
    for key in ("val_acc", "test_acc", "test_auc"):
        assert resumed[key] == straight[key], key
    a, b = _weights(out / f"{straight['run']}.pt"), _weights(tmp_path / f"{resumed['run']}.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = [json.loads((d / f"{straight['run']}.json").read_text())["history"] for d in (out, tmp_path)]
    strip = [[{k: v for k, v in row.items() if k != "seconds"} for row in h] for h in history]
    assert strip[0] == strip[1]
    assert not list(tmp_path.glob("*.state.pt")), "the finished run kept its resumable state"


# --- killed while writing a checkpoint, state file, run JSON or summary --------------------------

class Killed(BaseException):
    """Stands for the process dying between writing a temporary file and renaming it."""


def _die_before_rename(monkeypatch, only_suffix=""):
    rename = os.replace

    def replace(src, dst):
        if str(dst).endswith(only_suffix):
            raise Killed(dst)
        return rename(src, dst)
    monkeypatch.setattr(storage.os, "replace", replace)


def _write_checkpoint(path):
    save_checkpoint(path, build_model("simple_cnn", 8), {"dataset": "bloodmnist"})


def _write_state(path, resume=False):
    images = torch.randint(0, 256, (64, 3, 28, 28), dtype=torch.uint8)
    data = ImageDataset("t", [str(i) for i in range(8)], {s: ImageSplit(images, torch.arange(64) % 8)
                                                        for s in ("train", "val", "test")}, "", "")
    fit(build_model("simple_cnn", 8), data, TrainConfig(epochs=1, batch_size=32, augment="none"), state_path=path,
        resume=resume)


def _write_summary(path):
    storage.write_json(path, {"chosen_on": "val", "new": True})


@pytest.mark.parametrize("write", [_write_checkpoint, _write_state, _write_summary],
                         ids=["checkpoint", "state", "summary"])
def test_a_write_cut_short_leaves_the_earlier_file_whole(tmp_path, monkeypatch, write):
    target = tmp_path / "file.pt"
    target.write_bytes(b"earlier contents")
    _die_before_rename(monkeypatch)
    with pytest.raises(Killed):
        write(target)
    assert target.read_bytes() == b"earlier contents"
    assert [p.name for p in tmp_path.iterdir()] == ["file.pt"], "a temporary file was left behind"


def test_a_run_killed_while_writing_its_record_is_trained_again(tmp_path, monkeypatch, capsys):
    _die_before_rename(monkeypatch, only_suffix=".json")
    with pytest.raises(Killed):
        experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, seed=5)
    assert not list(tmp_path.glob("*.json"))
    monkeypatch.undo()
    trained = []
    monkeypatch.setattr(experiment, "fit", lambda *a, **k: trained.append(1) or fit(*a, **k))
    record = experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, seed=5)
    assert trained == [1] and experiment.check_run_record(tmp_path / f"{record['run']}.json") == record


def test_a_process_killed_mid_write_leaves_no_file_that_is_read_back(tmp_path, straight_run):
    """A real SIGKILL after the bytes are written, before the rename: the temporary file stays, unread."""
    out, summary = straight_run
    runs = tmp_path / "runs"
    shutil.copytree(out, runs, ignore=shutil.ignore_patterns(".locks"))
    record_path = runs / f"{summary['run']}.json"
    before = record_path.read_bytes()
    pid = os.fork()
    if pid == 0:  # the child writes a new record and dies before renaming it
        try:
            os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)
            storage.write_json(record_path, {"run": "half written"})
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    assert record_path.read_bytes() == before
    assert len(list(runs.glob(".*.tmp"))) == 1  # what the dead process left, under a name nothing reads
    assert [r["run"] for r in experiment.load_results(runs)] == [summary["run"]]


# --- truncated or corrupt .pt given to utils.evaluate, load_checkpoint or a notebook --------------

@pytest.fixture(scope="module")
def checkpoint(straight_run):
    out, summary = straight_run
    return out / f"{summary['run']}.pt"


def _damaged(kind, checkpoint, tmp_path):
    path = tmp_path / "model.pt"
    if kind == "truncated":
        path.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    elif kind == "garbage":
        path.write_bytes(b"\x00not a checkpoint" * 100)
    elif kind == "foreign":  # a bare state_dict, as another program saves weights
        torch.save(build_model("simple_cnn", 8).state_dict(), path)
    elif kind == "wrong_file":  # the run's JSON record handed over by mistake
        path.write_text(checkpoint.with_suffix(".json").read_text())
    elif kind == "predictions":  # the run's .npz: a zip archive too, but not torch's
        path.write_bytes(checkpoint.with_suffix(".npz").read_bytes())
    return path


@pytest.mark.parametrize("kind", ["truncated", "garbage", "foreign", "wrong_file", "predictions"])
def test_a_damaged_checkpoint_gets_one_line_naming_the_file_and_the_fix(kind, checkpoint, tmp_path, capsys):
    path = _damaged(kind, checkpoint, tmp_path)
    with pytest.raises(CheckpointError) as error:
        load_checkpoint(path)
    message = str(error.value)
    assert str(path) in message and "\n" not in message
    assert ("truncated or damaged" in message and "retrain" in message) if kind == "truncated" else "pass the" in message
    chained = error.value.__cause__ or (None if error.value.__suppress_context__ else error.value.__context__)
    assert chained is None  # no wall of torch's own traceback above the message

    from utils.evaluate import main
    with pytest.raises(SystemExit) as exit_:
        main(["--checkpoint", str(path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith("error: ") and str(path) in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err


# --- corrupt, partial or foreign run JSON where a cached run is expected --------------------------

def _break(kind, path, other):
    record = json.loads(path.read_text())
    if kind == "half_written":
        path.write_text(path.read_text()[:200])
    elif kind == "not_a_record":
        path.write_text("[1, 2, 3]")
    elif kind == "missing_keys":
        path.write_text(json.dumps({k: v for k, v in record.items() if k not in ("val", "test")}))
    elif kind == "foreign":  # another run's record under this run's name
        path.write_text(other.read_text())
    elif kind == "edited_config":
        record["config"]["lr"] *= 10
        path.write_text(json.dumps(record))
    elif kind == "checkpoint_missing":
        path.with_suffix(".pt").unlink()
    elif kind == "predictions_missing":
        path.with_suffix(".npz").unlink()


REASONS = {"half_written": "not valid JSON", "not_a_record": "not a run record", "missing_keys": "missing val, test",
           "foreign": "holds run", "edited_config": "does not hash to its name",
           "checkpoint_missing": "checkpoint", "predictions_missing": "predictions"}


@pytest.mark.parametrize("kind", list(REASONS))
def test_a_record_that_cannot_be_trusted_is_named_and_never_reused(kind, straight_run, tmp_path, capsys):
    out, summary = straight_run
    shutil.copytree(out, tmp_path / "runs", ignore=shutil.ignore_patterns(".locks"))
    path = tmp_path / "runs" / f"{summary['run']}.json"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(dict(json.loads(path.read_text()), run="simple_cnn-bloodmnist-smoke-s0-0123456789")))
    _break(kind, path, other)
    with pytest.raises(experiment.InvalidRunRecord, match=REASONS[kind]):
        experiment.check_run_record(path)
    assert experiment.load_results(tmp_path / "runs") == []
    assert REASONS[kind] in capsys.readouterr().err
    assert experiment.reusable_record(path) is None
    assert not path.exists() and path.with_name(path.name + ".invalid").is_file(), "moved aside, not deleted"
    assert "the run will be trained again" in capsys.readouterr().err


def test_a_half_written_record_is_retrained_with_a_message(tmp_path, capsys):
    first = experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, seed=7)
    path = tmp_path / f"{first['run']}.json"
    path.write_text(path.read_text()[:100])
    second = experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, seed=7)
    assert "not valid JSON" in capsys.readouterr().err
    assert second["created"] >= first["created"] and experiment.check_run_record(path) == second
    assert second["cpu"] == experiment.cpu_model()  # a CPU run's seconds depend on which CPU
    assert path.with_name(path.name + ".invalid").read_text() == json.dumps(first, indent=1)[:100]


# --- truncated data files, a tar member that is not a JPEG -----------------------------------------

@pytest.fixture
def no_mirrors(monkeypatch):
    for var in ("MEDMNIST_MIRROR", "PCAM_MIRROR"):
        monkeypatch.delenv(var, raising=False)


def _truncated_copy(source, folder, name):
    path = folder / name
    with open(source, "rb") as f:
        path.write_bytes(f.read(1 << 20))
    return path


def test_a_truncated_bloodmnist_file_is_named_with_its_checksum_size_and_fix(blood, tmp_path, no_mirrors):
    path = _truncated_copy(blood.source, tmp_path, "bloodmnist.npz")
    before = path.read_bytes(), path.stat().st_mtime_ns
    with pytest.raises(DataIntegrityError) as error:
        find_bloodmnist(tmp_path, download=False)
    message = str(error.value)
    for part in (str(path), "7053d0359d879ad8a5505303e11de1dc", "35,461,855", "truncated", "left untouched",
                 "zenodo.org"):
        assert part in message, part
    assert (path.read_bytes(), path.stat().st_mtime_ns) == before


def test_a_truncated_pcam_tar_is_named_with_its_checksum_size_and_fix(pcam_source, tmp_path, no_mirrors):
    from utils.data import PCAM_SUBSET_MD5, find_pcam
    path = _truncated_copy(pcam_source, tmp_path, "pcam_subset.tar")
    before = path.read_bytes()
    with pytest.raises(DataIntegrityError) as error:
        find_pcam(tmp_path)
    message = str(error.value)
    for part in (str(path), PCAM_SUBSET_MD5, "134,338,560", "truncated", "AI4ALL-PCam"):
        assert part in message, part
    assert path.read_bytes() == before


@pytest.fixture
def pcam_source():
    """The real tar, found before ``no_mirrors`` hides where it lies."""
    from pathlib import Path
    for folder in (REPO / "data", *(Path(os.environ[v]) for v in ("PCAM_MIRROR", "MEDMNIST_MIRROR")
                                     if os.environ.get(v))):
        if (folder / "pcam_subset.tar").is_file():
            return folder / "pcam_subset.tar"
    pytest.skip("pcam_subset.tar not found")


def test_a_tar_member_that_is_not_a_jpeg_is_named(tmp_path, monkeypatch, no_mirrors):
    path = tmp_path / "pcam_subset.tar"
    with tarfile.open(path, "w") as tar:
        for name, payload in [("data/train/0/patch0000001.jpg", b"this is not a JPEG")]:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    monkeypatch.setattr("utils.data.PCAM_SUBSET_MD5", digest)  # past the checksum, to the decoder
    before = path.read_bytes()
    with pytest.raises(DataIntegrityError, match=r"member data/train/0/patch0000001.jpg is not a readable JPEG"):
        load_pcam(tmp_path)
    assert path.read_bytes() == before and not (tmp_path / "cache").exists()


# --- wrong shape, dtype, range or channel count ----------------------------------------------------

@pytest.mark.parametrize("images, expected", [
    (torch.rand(2, 3, 28, 28), "uint8"),                                          # floats, not 0-255
    (torch.randint(0, 256, (2, 3, 28, 28), dtype=torch.int64), "uint8"),         # a wider integer range
    (torch.randint(0, 256, (2, 28, 28, 3), dtype=torch.uint8), "permute"),      # channels last
    (torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8), "grayscale"),    # one channel
    (torch.randint(0, 256, (3, 28, 28), dtype=torch.uint8), "unsqueeze"),       # one image without batch
    (torch.zeros(0, 3, 28, 28, dtype=torch.uint8), "empty"),
    (np.zeros((2, 3, 28, 28), dtype=np.uint8), "torch.Tensor"),
])
def test_predict_proba_says_what_it_expected(images, expected):
    with pytest.raises(ValueError, match=expected):
        predict_proba(build_model("simple_cnn", 8), images)


def test_evaluate_refuses_a_checkpoint_for_other_images(tmp_path, capsys):
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("simple_cnn", 8), {"dataset": "bloodmnist", "input_size": 96})
    from utils.evaluate import main
    with pytest.raises(SystemExit):
        main(["--checkpoint", str(path)])
    assert "trained on 96x96 images" in capsys.readouterr().err


# --- loss becomes NaN or inf -----------------------------------------------------------------------

class NaNAfter(torch.nn.Module):
    """simple_cnn whose training forward passes turn NaN from the ``start``-th on."""

    def __init__(self, start):
        super().__init__()
        self.net, self.start, self.calls = build_model("simple_cnn", 8), start, 0

    def forward(self, x):
        out = self.net(x)
        if self.training:
            self.calls += 1
            if self.calls >= self.start:
                return out * float("nan")
        return out


def test_a_nan_loss_stops_training_naming_the_step_and_keeps_the_last_good_state(blood, tmp_path):
    data = ImageDataset("b", blood.class_names, {"train": blood.splits["train"].subset(128, 0),
                                                  "val": blood.splits["val"].subset(64, 0),
                                                  "test": blood.splits["test"].subset(64, 0)}, "", "")
    state = tmp_path / "run.state.pt"
    cfg = TrainConfig(epochs=3, batch_size=64, augment="none")
    with pytest.raises(NonFiniteLossError, match=r"epoch 2, step 1 of 2; the last good state \(epoch 1\) is kept"):
        fit(NaNAfter(start=3), data, cfg, state_path=state, desc="nan-run")
    assert torch.load(state, weights_only=False)["epoch"] == 1


def test_a_nan_run_writes_no_record(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(experiment, "build_model", lambda name, classes, **kw: NaNAfter(start=2))
    from utils.train import main
    with pytest.raises(SystemExit):
        main([*RUN, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "non-finite at epoch 1, step 2" in err and len(err.strip().splitlines()) == 1
    assert not list(tmp_path.glob("*.json")) and not list(tmp_path.glob("*.pt"))


# --- no space left on the device while writing results ---------------------------------------------

def _disk_full(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(storage.os, "fsync", fsync)


@pytest.mark.parametrize("write", [_write_summary, _write_checkpoint], ids=["summary", "checkpoint"])
def test_a_full_disk_is_reported_and_earlier_results_stay_intact(tmp_path, monkeypatch, write):
    earlier = tmp_path / "summary.json"
    earlier.write_text('{"earlier": true}')
    _disk_full(monkeypatch)
    with pytest.raises(storage.StorageFullError) as error:
        write(earlier)
    message = str(error.value)
    assert str(earlier) in message and "no space left" in message and "earlier contents" in message
    assert earlier.read_text() == '{"earlier": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# --- two sweeps or notebooks training the same run at once -----------------------------------------

def test_two_processes_asking_for_one_run_train_it_once(tmp_path):
    procs = [_python(args=["-m", "utils.train", *RUN, "--seed", "9", "--out", str(tmp_path)]) for _ in range(2)]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-1000:] for _, err in outputs]
    summaries = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert summaries[0] == summaries[1]  # same record, train_seconds included: one trained, one reused
    records = list(tmp_path.glob("*.json"))
    assert len(records) == 1 and experiment.check_run_record(records[0])["train_seconds"] == pytest.approx(
        summaries[0]["train_seconds"], abs=0.01)
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_damaged_state_file_is_set_aside_and_training_starts_over(tmp_path, capsys):
    state = tmp_path / "run.state.pt"
    state.write_bytes(b"\x80\x02 half a pickle")
    _write_state(state, resume=True)
    assert "cannot resume from it" in capsys.readouterr().err
    assert (tmp_path / "run.state.pt.invalid").read_bytes() == b"\x80\x02 half a pickle"
    assert torch.load(state, weights_only=False)["epoch"] == 1

"""The fault matrix, round two (issue #25): resume with early stopping, bad arguments, a checkpoint scored on the
wrong data, inputs that crashed instead of explaining, an edited record, a stopped sweep. Each test fails when the
behaviour it names breaks. test_faults.py holds the first round, and the plain rerun that resumes (its killed-run
test counts the epochs a rerun trains)."""
from pathlib import Path

import pytest
import torch

from utils.data import ImageDataset, ImageSplit
from utils.training import TrainConfig, fit
from utils.models import build_model


# --- resume with early stopping ----------------------------------------------------------------------------------

def _noisy_data() -> ImageDataset:
    """Random labels: validation accuracy wanders, so early stopping stops a run part way."""
    generator = torch.Generator().manual_seed(0)
    split = lambda n: ImageSplit(torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8),
                                 torch.randint(0, 2, (n,), generator=generator))
    return ImageDataset("noise", ["a", "b"], {"train": split(96), "val": split(48), "test": split(16)}, "", "")


def _fit(data, cfg, state_path=None, resume=False, stop_after_epochs=None):
    torch.manual_seed(0)
    return fit(build_model("simple_cnn", 2, width=8), data, cfg, state_path=state_path, resume=resume,
               stop_after_epochs=stop_after_epochs)


def _same_run(a, b):
    strip = lambda history: [{k: v for k, v in row.items() if k != "seconds"} for row in history]
    assert strip(a.history) == strip(b.history)
    assert a.best_epoch == b.best_epoch
    assert all(torch.equal(a.best_state[k], b.best_state[k]) for k in a.best_state)


@pytest.mark.parametrize("patience", [2, 0], ids=["early-stopping", "no-early-stopping"])
def test_a_run_interrupted_after_any_epoch_resumes_to_the_uninterrupted_run(tmp_path, patience):
    data = _noisy_data()
    cfg = TrainConfig(epochs=8 if patience else 3, batch_size=32, augment="none", lr=1e-2, warmup_epochs=0,
                      early_stop_patience=patience)
    straight = _fit(data, cfg)
    if patience:
        assert len(straight.history) < cfg.epochs, "the data no longer makes the run stop early: the test tests nothing"
    for k in range(1, len(straight.history) + 1):  # interrupted after epoch k, the last one included
        state = tmp_path / f"k{k}.state.pt"
        _fit(data, cfg, state, stop_after_epochs=k)
        resumed = _fit(data, cfg, state, resume=True)
        _same_run(resumed, straight)
    # A run that had finished (stopped early, or at its last epoch) trains no further when resumed.
    again = _fit(data, cfg, tmp_path / f"k{len(straight.history)}.state.pt", resume=True)
    _same_run(again, straight)


# --- arguments ---------------------------------------------------------------------------------------------------

RUN = ["--model", "simple_cnn", "--profile", "smoke"]


@pytest.mark.parametrize("args, says", [
    (["--epochs", "0"], "--epochs: 0 is not accepted; give a whole number of 1 or more"),
    (["--epochs", "-2"], "--epochs: -2 is not accepted; give a whole number of 1 or more"),
    (["--epochs", "two"], "--epochs: 'two' is not a whole number; give one of 1 or more"),
    (["--train-limit", "-5"], "--train-limit: -5 is not accepted; give a whole number of 1 or more"),
    (["--train-limit", "0"], "--train-limit: 0 is not accepted"),
    (["--pretrained"], "--pretrained: simple_cnn has no ImageNet weights here; only efficientnet_lite0 does"),
    (["--out", "{file}"], "is a file; give a folder"),
    (["--out", "{file}/runs"], "lies under the file"),
], ids=["epochs-0", "epochs-negative", "epochs-word", "train-limit-negative", "train-limit-0", "pretrained",
        "out-file", "out-under-file"])
def test_a_bad_training_argument_gets_one_line_and_nothing_is_trained_or_locked(tmp_path, capsys, args, says):
    from utils.train import main
    file = tmp_path / "a_file"
    file.write_text("not a folder")
    out = tmp_path / "runs"
    argv = [*RUN, "--out", str(out), *(arg.replace("{file}", str(file)) for arg in args)]
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("python -m utils.train: error: ") and says in err, err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"], "something was written"


def test_a_sweep_with_no_workers_is_refused(capsys):
    from utils.sweep import main
    with pytest.raises(SystemExit) as exit_:
        main(["--workers", "0", "--dry-run"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err == ("python -m utils.sweep: error: argument --workers: 0 is not accepted; "
                                             "give a whole number of 1 or more\n")


# --- a checkpoint scored on the wrong data -----------------------------------------------------------------------

def _evaluate(capsys, *args):
    """``python -m utils.evaluate`` in this process: (exit code, stdout, stderr)."""
    from utils.evaluate import main
    try:
        main(list(args))
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model_name, classes, meta, args, says", [
    ("simple_cnn", 8, {"dataset": "pcam"}, [], "the model predicts 8 classes, pcam has 2 (normal, metastasis)"),
    ("simple_cnn", 2, {"dataset": "pcam", "class_names": ["a", "b"]}, [], "trained on the classes a, b, pcam has"),
    ("simple_cnn", 8, {}, [], "names no dataset it was trained on; pass --dataset (bloodmnist or pcam)"),
    ("simple_cnn", 8, {"dataset": "bloodmnist"}, ["--dataset", "pcam"], "trained on bloodmnist, not pcam"),
    ("simple_cnn", 8, {"dataset": "cifar10"}, [], "names the dataset 'cifar10', which this code does not load"),
    ("not_a_model", 8, {"dataset": "bloodmnist"}, [], "saved from a model named 'not_a_model', which this code does "
                                                      "not build"),
], ids=["class-count", "class-names", "no-dataset", "other-dataset", "unknown-dataset", "unknown-model"])
def test_a_checkpoint_for_other_data_is_refused_before_scoring(tmp_path, capsys, monkeypatch, model_name, classes,
                                                               meta, args, says):
    from utils import evaluate
    from utils.models import save_checkpoint
    model = build_model("simple_cnn", classes)
    model.model_name = model_name
    path = tmp_path / "model.pt"
    save_checkpoint(path, model, meta)
    monkeypatch.setattr(evaluate, "load_dataset", lambda *a, **k: pytest.fail("data loaded before the checks"))
    code, out, err = _evaluate(capsys, "--checkpoint", str(path), *args)
    assert code == 1 and out == "" and err.startswith(f"error: {path}: ") and len(err.splitlines()) == 1, err
    assert says in err, err


def test_evaluate_prints_valid_json_where_a_metric_is_undefined(tmp_path, capsys, monkeypatch):
    import json
    from utils import evaluate
    from utils.models import save_checkpoint
    path = tmp_path / "model.pt"
    save_checkpoint(path, build_model("simple_cnn", 8), {"dataset": "bloodmnist", "input_size": 28})
    # Only the first 32 test images, all of one class: no AUC is defined over them.
    monkeypatch.setattr(evaluate, "load_dataset", lambda name, root, device: _one_class_split(name, root, device))
    code, out, err = _evaluate(capsys, "--checkpoint", str(path))
    assert code == 0, err
    result = json.loads(out, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert result["auc"] is None and result["n"] == 32 and result["dataset"] == "bloodmnist"


def _one_class_split(name, root, device):
    from utils.data import load_dataset
    data = load_dataset(name, root, device)
    test = data.splits["test"]
    keep = (test.labels == 0).nonzero().squeeze(1)[:32]
    data.splits["test"] = ImageSplit(test.images[keep], test.labels[keep])
    return data


# --- inputs that crashed instead of explaining ---------------------------------------------------------------------

@pytest.fixture
def no_mirrors(monkeypatch):
    for var in ("MEDMNIST_MIRROR", "PCAM_MIRROR"):
        monkeypatch.delenv(var, raising=False)


def test_a_garbage_h5_file_is_named(tmp_path, no_mirrors):
    from utils.data import DataIntegrityError, _pcam_h5_paths, load_pcam
    folder = tmp_path / "pcam"
    folder.mkdir()
    for pair in _pcam_h5_paths(folder).values():
        for path in pair:
            path.write_bytes(b"\x00not an h5 file" * 64)
    first = _pcam_h5_paths(folder)["train"][0]
    with pytest.raises(DataIntegrityError, match=f"{first}: not a readable HDF5 file") as error:
        load_pcam(tmp_path)
    assert "torchvision.datasets.PCAM" in str(error.value) and first.read_bytes() == b"\x00not an h5 file" * 64


def _tiny_pcam_tar(folder, monkeypatch):
    """A pcam_subset.tar of 12 real JPEG patches, taken as the official one (its MD5 patched in)."""
    import hashlib
    import io
    import tarfile
    from torchvision.io import encode_jpeg
    path = folder / "pcam_subset.tar"
    generator = torch.Generator().manual_seed(0)
    with tarfile.open(path, "w") as tar:
        for split in ("train", "valid", "test"):
            for label in ("0", "1"):
                for i in range(2):
                    image = torch.randint(0, 256, (3, 96, 96), generator=generator, dtype=torch.uint8)
                    payload = encode_jpeg(image).numpy().tobytes()
                    info = tarfile.TarInfo(f"data/{split}/{label}/{split}{label}{i}.jpg")
                    info.size = len(payload)
                    tar.addfile(info, io.BytesIO(payload))
    monkeypatch.setattr("utils.data.PCAM_SUBSET_MD5", hashlib.md5(path.read_bytes()).hexdigest())
    return path


def _empty(cache):
    torch.save({}, cache)


def _relabelled(cache):
    stored = torch.load(cache, weights_only=True)
    stored["splits"]["train"]["labels"] = 1 - stored["splits"]["train"]["labels"]
    torch.save(stored, cache)


def _other_tar(cache):
    stored = torch.load(cache, weights_only=True)
    torch.save(dict(stored, tar_md5="0" * 32), cache)


@pytest.mark.parametrize("spoil, says", [(_empty, "not a decoded-tar cache of this code"),
                                         (_relabelled, "its train split does not match its checksum"),
                                         (_other_tar, "decoded from another tar")],
                         ids=["empty", "labels-altered", "other-tar"])
def test_a_pcam_cache_that_is_not_the_tars_decoding_is_set_aside_and_decoded_again(tmp_path, monkeypatch, capsys,
                                                                                   no_mirrors, spoil, says):
    import utils.data
    _tiny_pcam_tar(tmp_path, monkeypatch)
    fresh = utils.data.load_pcam(tmp_path)
    (cache,) = (tmp_path / "cache").glob(f"pcam_subset-{utils.data.PCAM_SUBSET_MD5[:10]}.pt")
    load_pcam = utils.data.load_pcam
    spoil(cache)
    spoiled = cache.read_bytes()
    loaded = load_pcam(tmp_path)
    err = capsys.readouterr().err
    assert f"{cache}: not the decoded pcam_subset.tar: {says}" in err and "decoding the tar again" in err, err
    assert cache.with_name(cache.name + ".invalid").read_bytes() == spoiled, "the spoiled cache was not kept aside"
    for split in fresh.splits:
        assert torch.equal(loaded.splits[split].labels, fresh.splits[split].labels)
        assert torch.equal(loaded.splits[split].images, fresh.splits[split].images)
    assert load_pcam(tmp_path).splits["train"].labels.tolist() == [0, 0, 1, 1] and capsys.readouterr().err == ""


def test_every_model_states_the_smallest_images_it_takes(capsys):
    from utils.training import predict_proba
    from utils.models import MODEL_NAMES
    smallest = {}
    for name in MODEL_NAMES:
        model = build_model(name, 8)
        size = smallest[name] = model.min_input_size
        assert size > 2, f"{name} claims to take 2x2 images"
        for too_small in sorted({1, 2, size - 1}):
            images = torch.zeros(2, 3, too_small, too_small, dtype=torch.uint8)
            with pytest.raises(ValueError, match=f"{name} takes images of at least {size}x{size} pixels"):
                predict_proba(model, images)
        probs = predict_proba(model, torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
        assert probs.shape == (2, 8) and torch.isfinite(probs).all()
    assert smallest["simple_cnn"] == 4 and smallest["resnet18"] == 8 and smallest["efficientnet_b0"] == 16
    tiny = ImageSplit(torch.zeros(4, 3, 2, 2, dtype=torch.uint8), torch.arange(4) % 2)
    with pytest.raises(ValueError, match="simple_cnn takes images of at least 4x4"):  # training refuses them too
        fit(build_model("simple_cnn", 2), ImageDataset("t", ["a", "b"], dict.fromkeys(("train", "val", "test"), tiny),
                                                       "", ""), TrainConfig(epochs=1))


def test_large_images_are_scored_in_chunks_of_bounded_bytes():
    from utils.training import predict_proba
    from utils.registry import ImageClassifier

    class Recorder(ImageClassifier):
        """Records the chunks it is given; stands for a model too slow to run at 1000x1000 in a test."""

        def __init__(self):
            super().__init__()
            self.chunks = []

        def forward(self, x):
            self.chunks.append(x.element_size() * x.numel())
            return torch.zeros(len(x), 2)

    model = Recorder()
    probs = predict_proba(model, torch.zeros(64, 3, 1000, 1000, dtype=torch.uint8))
    assert probs.shape == (64, 2) and len(model.chunks) == 8 and max(model.chunks) <= 1024 * 3 * 96 * 96 * 4
    model.chunks.clear()
    predict_proba(model, torch.zeros(2048, 3, 96, 96, dtype=torch.uint8))  # PCam patches: 1024 at a time, as before
    assert model.chunks == [1024 * 3 * 96 * 96 * 4] * 2


# --- an edited record --------------------------------------------------------------------------------------------

def _committed_run(folder, name=None):
    """A copy of a committed cpu run (record and predictions) in ``folder``: DeepEfficientNet's, or ``name``."""
    import json
    import shutil
    from tests.conftest import REPO
    runs = REPO / "results" / "runs"
    name = name or json.loads((REPO / "results/deep_efficientnet/summary.json").read_text())["run"]
    folder.mkdir(parents=True, exist_ok=True)
    for suffix in (".json", ".npz"):
        shutil.copy(runs / f"{name}{suffix}", folder / f"{name}{suffix}")
    (folder / f"{name}.pt").touch()  # outside the repository an uncommitted record needs its checkpoint beside it
    return folder / f"{name}.json"


def _edit(path, change):
    import json
    record = json.loads(path.read_text())
    change(record)
    path.write_text(json.dumps(record, indent=1))


EDITS = {  # what is typed into a record -> the field the refusal names
    "test-acc": (lambda r: r["test"].update(acc=0.99), "test.acc is 0.99 but its predictions"),
    "val-auc": (lambda r: r["val"].update(auc=r["val"]["auc"] + 0.001), "val.auc is"),
    "test-per-class": (lambda r: r["test"]["per_class"]["basophil"].update(recall=1.0),
                       "test.per_class.basophil.recall is 1.0"),
    "test-confusion": (lambda r: r["test"]["confusion_matrix"][0].__setitem__(0, 0), "test.confusion_matrix[0][0] is 0"),
    "test-n": (lambda r: r["test"].update(n=10_000), "test.n is 10000"),
    "test-metric-removed": (lambda r: r["test"].pop("macro_f1"), "its test metrics lack macro_f1"),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_a_record_whose_metrics_are_not_its_predictions_is_refused_naming_the_field(tmp_path, capsys, edit):
    from utils.experiment import InvalidRunRecord, check_run_record, load_results
    path = _committed_run(tmp_path / "runs")
    assert check_run_record(path)["run"] == path.stem  # the committed record passes as it is
    change, says = EDITS[edit]
    _edit(path, change)
    with pytest.raises(InvalidRunRecord, match=says.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        check_run_record(path)
    assert load_results(tmp_path / "runs") == [] and f"{path}: " in capsys.readouterr().err


def test_an_edited_interval_is_refused_where_it_is_printed(tmp_path):
    from utils.experiment import InvalidRunRecord, check_run_record, check_run_records
    path = _committed_run(tmp_path / "runs")
    _edit(path, lambda r: r["test"].update(acc_ci95=[0.5, 0.99]))
    check_run_record(path)  # what summaries read does not hold the interval
    with pytest.raises(InvalidRunRecord, match=rf"{path}: test\.acc_ci95\[0\] is 0\.5 but its predictions"):
        check_run_records(tmp_path / "runs", intervals=("test",))


def test_summaries_refuse_an_edited_record_naming_the_file_and_the_field(tmp_path, monkeypatch):
    import json
    import shutil
    from tests.conftest import REPO
    from utils.summaries import main
    shutil.copytree(REPO / "results" / "runs", tmp_path / "results" / "runs")
    shutil.copytree(REPO / "results" / "deep_efficientnet", tmp_path / "results" / "deep_efficientnet")
    for record in (tmp_path / "results" / "runs").glob("*.json"):
        record.with_suffix(".pt").touch()  # outside the repository an uncommitted record needs its checkpoint
    monkeypatch.chdir(tmp_path)
    run = json.loads((tmp_path / "results/deep_efficientnet/summary.json").read_text())["run"]
    path = tmp_path / "results" / "runs" / f"{run}.json"
    _edit(path, lambda r: r["test"].update(acc=0.99))  # would meet the 0.965 target
    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "cpu", "--only", "deep_efficientnet", "--check"])
    message = str(exit_.value.code)
    assert message.startswith(f"summaries: {Path('results/runs') / path.name}: test.acc is 0.99 but its predictions")
    assert message.count("results/runs/") == 1, "only the edited record is refused"


def _broken(kind, path):
    if kind == "truncated":
        path.write_text(path.read_text()[:300])
    elif kind == "edited":
        _edit(path, lambda r: r["test"].update(acc=0.99))
    elif kind == "edited-interval":
        _edit(path, lambda r: r["test"].update(acc_ci95=[0.5, 0.99]))


@pytest.mark.parametrize("kind, says", [("truncated", "not valid JSON"), ("edited", "test.acc is 0.99"),
                                        ("edited-interval", "test.acc_ci95[0] is 0.5")])
def test_the_report_writes_nothing_when_a_record_is_bad(tmp_path, capsys, kind, says):
    from utils.report import END, START, main
    runs = tmp_path / "results" / "runs"
    _committed_run(runs)
    bad = _committed_run(runs, _committed_name("simple_cnn-bloodmnist-cpu-s0-"))
    _broken(kind, bad)
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nthe table as it was\n{END}\n")
    before = readme.read_bytes()
    with pytest.raises(SystemExit) as exit_:
        main(["--readme", str(readme), "--results", str(runs), "--latex", str(tmp_path / "generated")])
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and err.startswith(f"report: {bad}: ") and says in err, err
    assert readme.read_bytes() == before and not (tmp_path / "generated").exists()


def _committed_name(prefix):
    """A committed run whose name starts with ``prefix``; with several (a recipe's earlier run kept as history),
    the first in name order, so the test reads the same record on every machine."""
    from tests.conftest import REPO
    paths = sorted((REPO / "results" / "runs").glob(f"{prefix}*.json"))
    assert paths, f"no committed run starts with {prefix}"
    return paths[0].stem


# --- a sweep stopped with SIGTERM or SIGINT ------------------------------------------------------------------------

def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (Linux /proc)."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # it ended while we looked
        if int(fields[1]) == pid:
            children.add(int(stat.parent.name))
    return children


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _records(runs: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in runs.glob("*.json")}


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads processes from Linux /proc")
@pytest.mark.parametrize("signum, when", [(15, "after-first-run"), (2, "while-training")], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_sweep_stops_its_workers_and_writes_nothing_after_it_has_exited(tmp_path, signum, when):
    import os
    import re
    import signal
    import subprocess
    import sys
    import time
    from tests.conftest import REPO
    env = {**os.environ, "PROFILE": "smoke", "CI": "1", "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    # The issue stopped `--only baselines`; the imbalance study's runs are the same machinery at SimpleCNN's speed.
    command = [sys.executable, "-m", "utils.sweep", "--profile", "smoke", "--only", "imbalance", "--workers", "1"]
    sweep = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs, seen, printed = tmp_path / "build" / "smoke" / "results" / "runs", set(), ""
    try:
        if when == "after-first-run":  # the case: stopped after its first run, while training the second
            for line in sweep.stdout:
                printed += line
                if line.startswith("[1/"):
                    break
        else:  # as soon as the worker holds its first run's lock
            deadline = time.time() + 120
            while not list((runs / ".locks").glob("*.lock")) and time.time() < deadline:
                time.sleep(0.2)
        seen = _children(sweep.pid)
        assert seen, "the sweep has no worker to stop"
        sweep.send_signal(signum)
        out, err = sweep.communicate(timeout=120)
        planned = int(re.search(r"sweep \(smoke\): (\d+) runs? to train", printed + out).group(1))
        written = _records(runs)
        assert written or when != "after-first-run", "the first run's record is missing"
        deadline = time.time() + 5
        while any(_alive(pid) for pid in seen) and time.time() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in seen if _alive(pid)], "a worker outlived its sweep"
        assert sweep.returncode == 128 + signum, err[-2000:]
        assert "sweep: stopped by" in err and "nothing more is written" in err, err[-2000:]
        time.sleep(1)
        assert _records(runs) == written, "a record was written after the sweep had exited"
        assert not list(runs.glob(".*.tmp")), "a stopped worker left a temporary file"
        # Run again, the sweep trains only what is missing.
        dry = subprocess.run([*command, "--dry-run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
        assert f"sweep (smoke): {planned - len(written)} run" in dry.stdout, dry.stdout + dry.stderr[-2000:]
        assert not [name for name in written if name[:-5] in dry.stdout], "a stored run is planned again"
    finally:
        for pid in [sweep.pid, *seen]:  # what the old code left running
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)

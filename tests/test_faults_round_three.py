"""The fault matrix, round three (issue #36): no command overwrites a file it was not asked to create, one bad image
never sinks a batch, inputs a model was never meant to see are flagged, every bad argument gets one line, and the
derived numbers CI compares come out the same bytes on any x86 CPU. Each test fails when the behaviour it names
breaks."""
import json

import numpy as np


# --- derived numbers are written the same on every CPU ------------------------------------------------------------

def test_derived_numbers_differing_in_float_noise_are_written_as_the_same_bytes():
    # The temperature of results/full/deep_efficientnet/summary.json as an Intel Xeon (AMX) and an AMD EPYC (Zen 4)
    # computed it from the same stored predictions: the 16th digit differs.
    from utils.summaries import as_json
    intel, amd = 0.6425162274636739, 0.642516227463674
    assert as_json({"calibration": {"temperature": intel}}) == as_json({"calibration": {"temperature": amd}})
    # NumPy scalars and nested lists are written as plain JSON numbers; integers, flags and text stay as they are.
    text = as_json({"rows": [{"acc": np.float64(0.97), "n": np.int64(3421), "kept": True, "name": "SimpleCNN"}]})
    assert json.loads(text) == {"rows": [{"acc": 0.97, "n": 3421, "kept": True, "name": "SimpleCNN"}]}
    # Rounding keeps what a reader of a summary uses: far more digits than any table prints.
    assert abs(json.loads(as_json({"x": intel}))["x"] - intel) < 1e-9


# --- no command replaces a file it was not asked to create -----------------------------------------------------------

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

# Imported before any test patches what they import by name (`from .experiment import run_training`): a module first
# imported under a monkeypatch would keep the stand-in after the patch is undone, and fail later tests in this worker.
import utils.export  # noqa: E402,F401
import utils.predict  # noqa: E402,F401
import utils.speedrun  # noqa: E402,F401
import utils.sweep  # noqa: E402,F401
import utils.train  # noqa: E402,F401


def _checkpoint(folder: Path, input_size: int = 28, name: str = "run", **meta) -> Path:
    """A tiny SimpleCNN checkpoint (8 classes, trained at ``input_size``) with its run's predictions beside it."""
    from utils.models import build_model, save_checkpoint
    from utils.storage import save_npz
    torch.manual_seed(0)
    meta = {"dataset": "bloodmnist", "class_names": [f"c{i}" for i in range(8)], "input_size": input_size,
            "run": name, **meta}
    path = save_checkpoint(folder / f"{name}.pt", build_model("simple_cnn", 8, width=8).eval(), meta)
    val_probs = np.random.default_rng(0).dirichlet(np.ones(8), 64).astype(np.float32)
    save_npz(path.with_suffix(".npz"), val_probs=val_probs, val_labels=np.arange(64) % 8)
    return path


def _images(folder: Path, sizes=((28, 28),)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i, (w, h) in enumerate(sizes):
        paths.append(folder / f"{i}_{w}x{h}.png")
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(paths[-1])
    return paths


def _files(folder: Path) -> dict:
    """Every file under ``folder`` (hidden and temporary ones too) -> (bytes, mtime): what a refusal must not change."""
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}


def _command(module: str, argv: list[str], capsys) -> tuple[int, str, str]:
    """``python -m utils.<module> ARGV`` in this process: (exit status, stdout, stderr)."""
    import importlib
    try:
        code = importlib.import_module(f"utils.{module}").main(argv) or 0
    except SystemExit as exit_:
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def _refused(code, err, prog: str, says: str):
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"python -m utils.{prog}: error: ") and says in err, err


def _no_export(*args, **kwargs):
    pytest.fail("the export ran before its output was checked")


OUTPUTS = {  # what the user names -> what the refusal says
    "the-checkpoint": ("{ckpt}", "which this command reads"),
    "its-predictions": ("{ckpt_npz}", "which this command reads"),
    "a-link-to-it": ("{link}", "which this command reads"),
    "the-same-via-dotdot": ("{tmp}/sub/../run.pt", "which this command reads"),
    "an-existing-file": ("{notes}", "exists; pass --force to replace it"),
    "a-folder": ("{folder}", "is a folder; give the name of a file"),
    "under-a-file": ("{notes}/x.out", "lies under the file"),
}


@pytest.mark.parametrize("force", [False, True], ids=["", "force"])
@pytest.mark.parametrize("command", ["export", "predict"])
@pytest.mark.parametrize("output", list(OUTPUTS))
def test_no_command_replaces_a_file_it_reads_or_was_not_asked_to_replace(tmp_path, capsys, monkeypatch, command,
                                                                         output, force):
    if force and output == "an-existing-file":
        pytest.skip("with --force an existing output is replaced: the next test")
    ckpt = _checkpoint(tmp_path)
    (tmp_path / "sub").mkdir()
    (tmp_path / "folder").mkdir()
    (tmp_path / "notes").write_text("my notes\n")
    (tmp_path / "link").symlink_to(ckpt)
    image = _images(tmp_path / "images")[0]
    target, says = OUTPUTS[output]
    target = target.format(ckpt=ckpt, ckpt_npz=ckpt.with_suffix(".npz"), link=tmp_path / "link", tmp=tmp_path,
                           notes=tmp_path / "notes", folder=tmp_path / "folder")
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    monkeypatch.setattr("utils.predict.predict_files", _no_export)
    before = _files(tmp_path)
    argv = {"export": ["--checkpoint", str(ckpt), "--onnx", target],
            "predict": ["--checkpoint", str(ckpt), str(image), "--out", target]}[command] + ["--force"] * force
    code, out, err = _command(command, argv, capsys)
    _refused(code, err, command, says)
    assert _files(tmp_path) == before, "a file was replaced, or a temporary one left"


def test_predict_out_is_never_an_image_it_reads_and_force_replaces_another_file(tmp_path, capsys):
    ckpt = _checkpoint(tmp_path)
    images = _images(tmp_path / "images", [(28, 28), (28, 28)])
    before = _files(tmp_path)
    code, _, err = _command("predict", ["--checkpoint", str(ckpt), str(tmp_path / "images"), "--out", str(images[1]),
                                        "--force"], capsys)
    _refused(code, err, "predict", f"{images[1]} is {images[1]}, which this command reads")
    assert _files(tmp_path) == before
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    code, _, err = _command("predict", ["--checkpoint", str(ckpt), str(tmp_path / "images"), "--out", str(out),
                                        "--force"], capsys)
    assert code == 0 and out.read_text().startswith("file,prediction"), err
    assert not [p for p in tmp_path.rglob(".*") if p.is_file()], "a temporary file was left"


@pytest.mark.parametrize("command", ["export", "predict", "train"])
def test_an_output_folder_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, monkeypatch, command):
    # Tests may run as root, whom file permissions do not stop: the folder is made unwritable by os.access's
    # answer, which is what the command consults (a read-only mount gives the same answer to root).
    ckpt = _checkpoint(tmp_path)
    image = _images(tmp_path / "images")[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: False if Path(path) == locked
                        else real_access(path, mode, **kw))
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    monkeypatch.setattr("utils.predict.predict_files", _no_export)
    monkeypatch.setattr("utils.experiment.run_training", _no_export)
    monkeypatch.setattr("utils.train.run_training", _no_export)
    before = _files(tmp_path)
    argv = {"export": ["--checkpoint", str(ckpt), "--onnx", str(locked / "m.onnx")],
            "predict": ["--checkpoint", str(ckpt), str(image), "--out", str(locked / "p.csv")],
            "train": ["--model", "simple_cnn", "--profile", "smoke", "--out", str(locked / "runs")]}[command]
    code, _, err = _command(command, argv, capsys)
    _refused(code, err, command, f"cannot write in {locked}")
    assert _files(tmp_path) == before


def test_a_failed_export_leaves_no_temporary_file(tmp_path, monkeypatch):
    from utils.export import export_onnx

    class Program:
        def save(self, path):
            Path(path).write_bytes(b"half an onnx file")
            raise OSError("the exporter failed part way")

    ckpt = _checkpoint(tmp_path)
    monkeypatch.setattr(torch.onnx, "export", lambda *a, **k: Program())
    before = _files(tmp_path)
    with pytest.raises(OSError, match="part way"):
        export_onnx(ckpt, tmp_path / "m.onnx")
    assert _files(tmp_path) == before


# --- one bad image never sinks the batch --------------------------------------------------------------------------

def _png_claiming(width: int, height: int) -> bytes:
    """A PNG header that claims ``width`` x ``height`` pixels (a few dozen bytes: what a decompression bomb shows
    PIL before it decodes anything)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


def test_an_image_pil_refuses_or_fails_on_gets_its_row_and_the_others_are_predicted(tmp_path, capsys, monkeypatch):
    ckpt = _checkpoint(tmp_path)
    folder = tmp_path / "images"
    good = _images(folder, [(28, 28), (56, 56)])
    (folder / "bomb.png").write_bytes(_png_claiming(30000, 30000))  # over twice PIL's limit: DecompressionBombError
    (folder / "huge.png").write_bytes(_png_claiming(10000, 10000))  # over the limit: PIL only warns, then decodes
    crashing = folder / "crashing.tif"
    Image.new("RGB", (28, 28)).save(crashing)
    real_open = Image.open

    def open_(path, *args, **kwargs):  # a decoder that fails with an error no one listed
        if Path(path) == crashing:
            raise RuntimeError("the TIFF decoder gave up")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", open_)
    out = tmp_path / "p.csv"
    code, _, err = _command("predict", ["--checkpoint", str(ckpt), str(folder), "--out", str(out)], capsys)
    assert code == 1, err
    import csv
    rows = {Path(r["file"]).name: r for r in csv.DictReader(out.read_text().splitlines())}
    assert len(rows) == 5
    for path in good:
        assert rows[path.name]["prediction"] in [f"c{i}" for i in range(8)] and not rows[path.name]["error"]
    for name, says in (("bomb.png", "too large to open safely"), ("huge.png", "too large to open safely"),
                       ("crashing.tif", "damaged image (the TIFF decoder gave up)")):
        assert says in rows[name]["error"] and not rows[name]["prediction"], rows[name]
        assert f"{name}: error: {says}" in err
    assert "Traceback" not in err


# --- inputs the model was never meant to see are flagged ------------------------------------------------------------

def test_images_unlike_the_training_images_are_flagged_by_how_much_and_the_tiny_refused(tmp_path, capsys):
    from utils.predict import predict_files
    pcam = _checkpoint(tmp_path, input_size=96, name="pcam")
    blood = _checkpoint(tmp_path, input_size=28, name="blood")
    folder = tmp_path / "images"
    paths = dict(zip(["28", "1", "5", "8x40", "96", "1000"],
                     _images(folder, [(28, 28), (1, 1), (5, 5), (8, 40), (96, 96), (1000, 1000)])))
    rows = {Path(r["file"]).name: r for r in predict_files(pcam, [folder])["rows"]}
    row = lambda key: rows[paths[key].name]
    assert "enlarged 3.4x from 28x28: the model was trained on 96x96 images" in row("28")["warning"]
    assert row("28")["prediction"] is not None and row("96")["warning"] is None
    assert "enlarged 12.0x from 8x40" in row("8x40")["warning"]
    for key, size in (("1", "1x1"), ("5", "5x5")):
        assert row(key)["error"] == (f"{size} pixels: too small to classify (at least 8x8; the model was trained on "
                                     f"96x96 images)") and row(key)["prediction"] is None
    assert "shrunk 10.4x from 1000x1000" in row("1000")["warning"]
    rows = {Path(r["file"]).name: r for r in predict_files(blood, [paths["28"], paths["96"]])["rows"]}
    assert rows[paths["28"].name]["warning"] is None and rows[paths["96"].name]["warning"] is None  # 3.4x smaller: fine
    code, _, err = _command("predict", ["--checkpoint", str(pcam), str(folder)], capsys)
    assert code == 1 and "1_1x1.png: error: 1x1 pixels: too small" in err and "enlarged 3.4x" in err


@pytest.mark.parametrize("args, says", [
    (["--threshold", "nan"], "argument --threshold: nan is not accepted; give a number from 0 to 1"),
    (["--threshold", "5"], "argument --threshold: 5 is not accepted; give a number from 0 to 1"),
    (["--threshold", "-0.1"], "argument --threshold: -0.1 is not accepted"),
    (["--threshold", "high"], "argument --threshold: 'high' is not a number; give one from 0 to 1"),
    (["{empty}"], "{empty}: no image files in this folder or below (.png, .jpg, .jpeg, .tif, .tiff)"),
    (["{empty}", "{images}"], "{empty}: no image files in this folder or below"),
], ids=["nan", "above-1", "negative", "word", "empty-folder", "one-folder-empty"])
def test_a_threshold_outside_0_to_1_or_a_folder_without_images_gets_one_line(tmp_path, capsys, monkeypatch, args,
                                                                             says):
    ckpt = _checkpoint(tmp_path)
    _images(tmp_path / "images")
    (tmp_path / "empty" / "notes").mkdir(parents=True)
    (tmp_path / "empty" / "notes" / "readme.txt").write_text("no images here\n")
    monkeypatch.setattr("utils.predict.predict_files", _no_export)
    fill = lambda text: text.replace("{empty}", str(tmp_path / "empty")).replace("{images}", str(tmp_path / "images"))
    before = _files(tmp_path)
    argv = ["--checkpoint", str(ckpt), *map(fill, args), "--out", str(tmp_path / "p.csv")]
    if "--threshold" in args:
        argv.append(str(tmp_path / "images"))
    code, out, err = _command("predict", argv, capsys)
    _refused(code, err, "predict", fill(says))
    assert out == "" and _files(tmp_path) == before


# --- a Ray cluster that does not answer ----------------------------------------------------------------------------

@pytest.mark.parametrize("address, says", [
    ("127.0.0.1:1", "--address 127.0.0.1:1: cannot connect (Connection refused)"),
    ("ray://127.0.0.1:1", "--address ray://127.0.0.1:1: cannot connect (Connection refused)"),
    ("localhost:ray", "--address localhost:ray: not HOST:PORT (e.g. 10.0.0.5:6379) or auto"),
], ids=["refused", "client-url", "no-port"])
def test_a_ray_sweep_at_an_address_that_does_not_answer_stops_at_once_in_one_line(monkeypatch, address, says):
    pytest.importorskip("ray")
    import time
    import ray
    from utils.sweep import main
    monkeypatch.setattr(ray, "init", lambda *a, **k: pytest.fail("Ray was started: it retries for minutes"))
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "smoke", "--only", "imbalance", "--backend", "ray", "--address", address])
    message = str(exit_.value.code)
    assert time.monotonic() - started < 30 and len(message.splitlines()) == 1, message
    assert message.startswith(f"python -m utils.sweep: error: {says}; start a cluster there"), message
    assert "or leave --address out to start a local Ray instance" in message



def test_a_ray_sweep_told_auto_with_no_cluster_here_stops_in_one_line(monkeypatch):
    pytest.importorskip("ray")
    import ray
    from utils.sweep import main

    def no_cluster(*args, **kwargs):  # what Ray raises for address="auto" where `ray start` has not run
        raise ConnectionError("Could not find any running Ray instance. Please specify the one to connect to by "
                              "setting `--address` flag or `RAY_ADDRESS` environment variable.")

    monkeypatch.setattr(ray, "init", no_cluster)
    with pytest.raises(SystemExit) as exit_:
        main(["--profile", "smoke", "--only", "imbalance", "--backend", "ray", "--address", "auto"])
    message = str(exit_.value.code)
    assert message.startswith("python -m utils.sweep: error: --address auto: Could not find any running Ray "
                              "instance.") and len(message.splitlines()) == 1, message


# --- every bad argument, setting or file gets one line --------------------------------------------------------------

def _must_not_run(*args, **kwargs):
    pytest.fail("work started before the arguments were checked")


@pytest.mark.parametrize("command, argv", [
    ("train", ["--model", "simple_cnn", "--out", "{tmp}/runs"]),
    ("sweep", ["--dry-run"]),
    ("summaries", ["--check"]),
    ("speedrun", ["--out", "{tmp}/speedrun"]),
])
def test_an_unknown_profile_gets_one_line_before_anything_loads(tmp_path, capsys, monkeypatch, command, argv):
    monkeypatch.setenv("PROFILE", "bogus")
    monkeypatch.chdir(tmp_path)
    for target in ("utils.experiment.run_training", "utils.train.run_training", "utils.sweep.sweep",
                   "utils.summaries.check_run_records", "utils.speedrun.speedrun", "utils.data.load_bloodmnist"):
        monkeypatch.setattr(target, _must_not_run)
    code, out, err = _command(command, [a.replace("{tmp}", str(tmp_path)) for a in argv], capsys)
    _refused(code, err, command, "PROFILE=bogus (the environment variable) is not a profile; PROFILE is one of "
                                 "smoke, cpu, full, or unset (full on CUDA, cpu otherwise)")
    assert out == "" and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command, argv, says", [
    ("train", ["--seed", "-1"], "argument --seed: -1 is not accepted; give a seed from 0 to 4294967295"),
    ("train", ["--seed", str(2**32)], "argument --seed: 4294967296 is not accepted"),
    ("speedrun", ["--threads", "0"], "argument --threads: 0 is not accepted; give a whole number of 1 or more"),
    ("speedrun", ["--threads", "-1"], "argument --threads: -1 is not accepted"),
    ("speedrun", ["--seeds", "0"], "argument --seeds: 0 is not accepted; give a whole number of 1 or more"),
    ("speedrun", ["--out", "{file}"], "argument --out: {file} is a file; give a folder"),
], ids=["seed-negative", "seed-too-large", "threads-0", "threads-negative", "seeds-0", "speedrun-out-file"])
def test_a_number_that_would_be_ignored_or_fail_later_is_refused_at_parse_time(tmp_path, capsys, monkeypatch,
                                                                               command, argv, says):
    monkeypatch.setenv("PROFILE", "smoke")
    file = tmp_path / "a_file"
    file.write_text("not a folder\n")
    for target in ("utils.experiment.run_training", "utils.train.run_training", "utils.speedrun.speedrun",
                   "utils.data.load_bloodmnist"):
        monkeypatch.setattr(target, _must_not_run)
    threads = torch.get_num_threads()
    fill = lambda text: text.replace("{file}", str(file))
    extra = ["--model", "simple_cnn", "--out", str(tmp_path / "runs")] if command == "train" else []
    code, _, err = _command(command, [*extra, *map(fill, argv)], capsys)
    _refused(code, err, command, fill(says))
    assert torch.get_num_threads() == threads and sorted(p.name for p in tmp_path.iterdir()) == ["a_file"]


def test_a_file_where_the_profiles_output_folder_goes_gets_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("utils.train.run_training", _must_not_run)
    (tmp_path / "build/smoke/results").mkdir(parents=True)
    (tmp_path / "build/smoke/results/runs").write_text("a file\n")
    before = _files(tmp_path)
    code, _, err = _command("train", ["--model", "simple_cnn", "--profile", "smoke"], capsys)
    _refused(code, err, "train", "build/smoke/results/runs is a file; give a folder (created if missing), or move the "
                                 "file away (the smoke profile's default --out)")
    assert _files(tmp_path) == before


def _spoil_checkpoint(kind: str, ckpt: Path) -> str:
    """Spoil ``ckpt`` (or the run's file beside it) as ``kind`` says; what the one line must say."""
    if kind == "unknown-setting":
        payload = torch.load(ckpt, weights_only=True)
        payload["model_kwargs"]["width_mult"] = 2.0  # saved by a version whose SimpleCNN took it
        torch.save(payload, ckpt)
        return f"{ckpt}: simple_cnn saved with settings this code does not build"
    if kind == "no-input-size":
        payload = torch.load(ckpt, weights_only=True)
        del payload["meta"]["input_size"]
        torch.save(payload, ckpt)
        return f"{ckpt}: names no input size (meta['input_size'] is None)"
    npz = ckpt.with_suffix(".npz")
    npz.write_bytes(npz.read_bytes()[:100])
    return f"{npz}: the run's predictions beside the checkpoint cannot be read"


@pytest.mark.parametrize("command", ["predict", "export"])
@pytest.mark.parametrize("kind", ["unknown-setting", "no-input-size", "damaged-npz"])
def test_a_checkpoint_this_code_cannot_use_is_named_in_one_line(tmp_path, capsys, monkeypatch, kind, command):
    if command == "export" and kind == "damaged-npz":
        pytest.skip("export does not read the predictions")
    ckpt = _checkpoint(tmp_path)
    says = _spoil_checkpoint(kind, ckpt)
    image = _images(tmp_path / "images")[0]
    monkeypatch.setattr(torch.onnx, "export", _no_export)
    before = _files(tmp_path)
    argv = {"predict": ["--checkpoint", str(ckpt), str(image), "--out", str(tmp_path / "p.csv")],
            "export": ["--checkpoint", str(ckpt), "--onnx", str(tmp_path / "m.onnx")]}[command]
    code, out, err = _command(command, argv, capsys)
    assert code in (1, 2) and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"error: {says}") and ("retrain" in err or "--threshold" in err), err
    assert _files(tmp_path) == before


def test_a_damaged_study_summary_is_named_with_the_fix_before_the_report_writes(tmp_path, capsys):
    from tests.conftest import REPO
    results = tmp_path / "results"
    (results / "runs").mkdir(parents=True)
    summary = results / "attention" / "summary.json"
    summary.parent.mkdir()
    summary.write_text('{"rows": [{"model": "SimpleCNN", "acc": 0.9')  # cut short
    readme = tmp_path / "README.md"
    readme.write_bytes((REPO / "README.md").read_bytes())
    before = _files(tmp_path)
    code, out, err = _command("report", ["--readme", str(readme), "--results", str(results / "runs"),
                                         "--latex", str(tmp_path / "generated")], capsys)
    assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"report: {summary}: a damaged study summary") and "`make summaries`" in err, err
    assert _files(tmp_path) == before


# --- a resume state file is loaded as checkpoints are ------------------------------------------------------------

class _RunsCode:
    """Unpickled, it touches a file: what a state file copied from elsewhere could do with any code."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _tiny_fit(state: Path, resume: bool, cfg=None):
    from utils.data import ImageDataset, ImageSplit
    from utils.models import build_model
    from utils.training import TrainConfig, fit
    generator = torch.Generator().manual_seed(0)
    split = lambda n: ImageSplit(torch.randint(0, 256, (n, 3, 8, 8), generator=generator, dtype=torch.uint8),
                                 torch.arange(n) % 2)
    data = ImageDataset("t", ["a", "b"], {"train": split(64), "val": split(32), "test": split(16)}, "", "")
    cfg = cfg or TrainConfig(epochs=2, batch_size=32, augment="none", warmup_epochs=0)
    torch.manual_seed(0)
    return fit(build_model("simple_cnn", 2, width=8), data, cfg, state_path=state, resume=resume, stop_after_epochs=1)


def test_a_state_file_that_would_run_code_is_refused_unread_and_training_starts_over(tmp_path, capsys):
    state, marker = tmp_path / "run.state.pt", tmp_path / "code-ran"
    genuine = tmp_path / "genuine.state.pt"
    _tiny_fit(genuine, resume=False)
    payload = torch.load(genuine, weights_only=True)
    payload["history"][0]["note"] = _RunsCode(marker)  # a real state, with one object slipped in
    torch.save(payload, state)
    spoiled = state.read_bytes()
    result = _tiny_fit(state, resume=True)
    err = capsys.readouterr().err
    assert not marker.exists(), "the state file ran code when it was loaded"
    assert f"{state}: cannot resume from it (it holds Python objects a training state never holds" in err, err
    assert (tmp_path / "run.state.pt.invalid").read_bytes() == spoiled and [r["epoch"] for r in result.history] == [1]
    assert torch.load(state, weights_only=True)["epoch"] == 1  # the new state is written from epoch 1


@pytest.mark.parametrize("schedule, optimizer, ema", [("cosine", "adamw", 0.0), ("onecycle", "sgd", 0.9),
                                                       ("step", "adamw", 0.9), ("constant", "sgd", 0.0)])
def test_every_state_this_code_writes_resumes_under_weights_only(tmp_path, capsys, schedule, optimizer, ema):
    from utils.training import TrainConfig
    cfg = TrainConfig(epochs=2, batch_size=32, augment="none", warmup_epochs=0, schedule=schedule, optimizer=optimizer,
                      ema_decay=ema)
    state = tmp_path / "run.state.pt"
    _tiny_fit(state, resume=False, cfg=cfg)
    resumed = _tiny_fit(state, resume=True, cfg=cfg)
    err = capsys.readouterr().err
    assert "resuming from" in err and "cannot resume" not in err, err
    assert [r["epoch"] for r in resumed.history] == [1, 2] and not list(tmp_path.glob("*.invalid"))


def test_the_benchmark_refuses_an_existing_out_file_before_it_measures(tmp_path, capsys, monkeypatch):
    # A held-out variant of class 1: `utils.bench --out` replaced an existing file after minutes of timing.
    from utils import bench
    monkeypatch.setattr(bench, "benchmark", _no_export)
    kept = tmp_path / "notes.json"
    kept.write_text("mine")
    with pytest.raises(SystemExit) as exit_:
        bench.main(["--quick", "--out", str(kept)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{kept} exists; pass --force" in err and len(err.strip().splitlines()) == 1, err
    assert kept.read_text() == "mine"

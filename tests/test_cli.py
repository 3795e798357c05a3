import json
from tests.conftest import REPO
from utils.profiles import get_profile


def _run(capsys, module, *args):
    # In this process (a new one costs 8 s of imports): test_faults runs the training CLI in a process of its own.
    import importlib
    importlib.import_module(module).main(list(args))
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_then_evaluate_round_trip(tmp_path, capsys):
    summary = _run(capsys, "utils.train", "--model", "simple_cnn", "--dataset", "bloodmnist", "--profile", "smoke",
                   "--seed", "1", "--out", str(tmp_path), "--force")
    record = json.loads((tmp_path / f"{summary['run']}.json").read_text())
    for key in ("model", "dataset", "profile", "seed", "device", "torch_version", "git_commit", "params",
                "flops", "train_seconds", "peak_memory_bytes", "history", "val", "test", "checkpoint"):
        assert key in record, key
    assert record["profile"] == "smoke" and record["seed"] == 1 and record["flops"] > 0
    # the smoke profile scores a stratified test subset: about its limit, rounded per class
    assert abs(record["test"]["n"] - get_profile("smoke").test_limit) <= 8 < get_profile("smoke").test_limit
    for key in ("acc", "auc", "macro_f1", "ece", "per_class"):
        assert key in record["test"]
    evaluated = _run(capsys, "utils.evaluate", "--checkpoint", record["checkpoint"], "--split", "test")
    assert evaluated["n"] == 3421  # the CLI always scores the whole official split
    # ...and reproduces a direct forward pass of the checkpoint over it.
    import numpy as np
    import torch
    from utils.data import load_bloodmnist
    from utils.models import load_checkpoint
    model, meta = load_checkpoint(record["checkpoint"])
    assert meta["dataset"] == "bloodmnist" and meta["input_size"] == 28
    test = load_bloodmnist(REPO / "data").splits["test"]
    with torch.no_grad():
        pred = model(test.images.float() / 255).argmax(1)
    assert abs(evaluated["acc"] - (pred == test.labels).sum().item() / len(test.labels)) < 1e-12
    # The record's own test metrics are those of its saved predictions, whose index i is image i of data_of.
    from utils.experiment import data_of
    with np.load(record["predictions"]) as saved:
        assert abs(record["test"]["acc"] - (saved["test_probs"].argmax(1) == saved["test_labels"]).mean()) < 1e-12
        assert np.array_equal(data_of(record).splits["test"].labels.numpy(), saved["test_labels"])


def test_second_call_reuses_the_cached_result(tmp_path, monkeypatch):
    from utils import experiment
    first = experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, force=False)

    def no_training(*args, **kwargs):
        raise AssertionError("a stored, valid run was trained again")
    monkeypatch.setattr(experiment, "fit", no_training)
    second = experiment.run_training("simple_cnn", profile="smoke", out=tmp_path, force=False)
    assert second == first

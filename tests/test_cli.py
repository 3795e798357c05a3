import json
import os
import subprocess
import sys

from tests.conftest import REPO


def _run(*args):
    env = {**os.environ, "PROFILE": "smoke", "CI": "1"}
    out = subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_train_then_evaluate_round_trip(tmp_path):
    summary = _run("utils.train", "--model", "simple_cnn", "--dataset", "bloodmnist", "--profile", "smoke",
                   "--seed", "1", "--out", str(tmp_path), "--force")
    record = json.loads((tmp_path / f"{summary['run']}.json").read_text())
    for key in ("model", "dataset", "profile", "seed", "device", "torch_version", "git_commit", "params",
                "flops", "train_seconds", "peak_memory_bytes", "history", "val", "test", "checkpoint"):
        assert key in record, key
    assert record["profile"] == "smoke" and record["seed"] == 1 and record["flops"] > 0
    assert record["test"]["n"] == 3421
    for key in ("acc", "auc", "macro_f1", "ece", "per_class"):
        assert key in record["test"]
    evaluated = _run("utils.evaluate", "--checkpoint", record["checkpoint"], "--split", "test")
    assert evaluated["n"] == 3421
    assert abs(evaluated["acc"] - record["test"]["acc"]) < 1e-9
    assert abs(evaluated["auc"] - record["test"]["auc"]) < 1e-6


def test_second_call_reuses_the_cached_result(tmp_path):
    from utils.experiment import run_training
    first = run_training("simple_cnn", profile="smoke", out=tmp_path, force=False)
    (tmp_path / f"{first['run']}.pt").unlink()  # a cached result must not retrain
    second = run_training("simple_cnn", profile="smoke", out=tmp_path, force=False)
    assert second == first

"""ONNX export of a small model, checked with onnxruntime against PyTorch."""
import json

import numpy as np
import torch

from tests.conftest import REPO
from utils.export import check_onnx, export_onnx, main, onnx_session
from utils.models import build_model, save_checkpoint
from utils.release import DEPLOYMENT_ROOT, released_records


def _smoke_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = build_model("simple_cnn", 8, width=8)
    meta = {"dataset": "bloodmnist", "class_names": [f"c{i}" for i in range(8)], "input_size": 28, "run": "smoke"}
    return save_checkpoint(tmp_path / "smoke.pt", model.eval(), meta)


def test_onnx_export_agrees_with_pytorch_on_every_image(tmp_path, blood, capsys, monkeypatch):
    import utils.export
    monkeypatch.setattr(utils.export, "LATENCY_IMAGES", 12)
    monkeypatch.setattr(utils.export, "WARMUP", 2)
    monkeypatch.setattr(utils.export, "THROUGHPUT_BATCHES", 2)
    checkpoint = _smoke_checkpoint(tmp_path)
    main(["--checkpoint", str(checkpoint), "--onnx", str(tmp_path / "m.onnx")])
    exported = json.loads(capsys.readouterr().out)
    assert exported["bytes"] > 0 and exported["opset"] >= 17
    images = blood.splits["test"].images[:300]  # more than one batch of 256, and a ragged last batch
    check = check_onnx(checkpoint, tmp_path / "m.onnx", images, blood.splits["test"].labels[:300].numpy())
    assert check["n"] == 300 and check["argmax_agree"] == 300 and check["max_abs_prob_diff"] < 1e-4
    assert check["acc"]["pytorch"] == check["acc"]["onnxruntime"]
    for engine in ("pytorch", "onnxruntime"):
        assert check["speed"][engine]["batch1_ms_median"] > 0 and check["speed"][engine]["batch256_images_per_s"] > 0
    # Any batch size: the batch axis is dynamic.
    probs = onnx_session(tmp_path / "m.onnx").run(None, {"images": np.random.rand(3, 3, 28, 28).astype(np.float32)})[0]
    assert probs.shape == (3, 8) and np.allclose(probs.sum(1), 1, atol=1e-5)


def test_stored_onnx_checks_agree_on_the_whole_test_split():
    """The committed checks of the released checkpoints (python -m utils.deployment --only onnx)."""
    for record in released_records(REPO / "results" / "runs"):
        stored = json.loads((REPO / DEPLOYMENT_ROOT / "onnx" / f"{record['run']}.json").read_text())
        assert stored["check"]["n"] == 3421 and stored["check"]["argmax_agree"] == 3421
        assert stored["check"]["max_abs_prob_diff"] < 1e-4

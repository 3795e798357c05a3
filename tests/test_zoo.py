import json

import pytest
import torch

from utils.data import ImageSplit
from utils.experiment import run_training
from utils.models import build_model
from utils.profiles import PROFILES
from utils.studies import IMBALANCE_STRATEGIES, PCAM_MODELS, ZOO
from utils.training import TrainConfig


def test_autoencoder_pretraining_lowers_reconstruction_error(blood):
    torch.manual_seed(0)
    split = blood.splits["train"].subset(256, seed=0)
    model = build_model("autoencoder", 8, pretrain_epochs=3)
    before = torch.nn.functional.mse_loss(model.eval().reconstruct(split.images.float() / 255),
                                          split.images.float() / 255).item()
    history = model.pretrain(ImageSplit(split.images, split.labels), TrainConfig(batch_size=64, lr=2e-3),
                             torch.Generator().manual_seed(0))
    assert len(history) == 3 and history[-1] < history[0] < before


def test_zoo_and_strategies_name_real_options():
    assert set(ZOO.values()) == {"vgg", "inception", "autoencoder", "cnn_attention", "deepcmorph_lite"}
    fields = set(TrainConfig.__dataclass_fields__)
    changes = [change for _, change in IMBALANCE_STRATEGIES.values()]
    assert changes[0] == {} and all(len(c) == 1 and set(c) <= fields for c in changes[1:])
    assert all(set(p.budget("pcam_models") or ()) <= set(PCAM_MODELS) for p in PROFILES.values())
    assert {kw.get("pretrained", False) for _, (m, kw) in PCAM_MODELS.items() if m == "efficientnet_lite0"} == {True, False}


def test_record_carries_its_imbalance_label_and_pretraining_history(tmp_path):
    record = run_training("autoencoder", "bloodmnist", "smoke", 0, out=tmp_path, force=True,
                          model_kwargs={"pretrain_epochs": 1}, labels={"imbalance": "focal"}, loss="focal")
    assert record["imbalance"] == "focal" and record["config"]["loss"] == "focal"
    assert len(record["pretrain_history"]) == 1 and record["pretrain_history"][0] > 0


# Every registered model's checkpoint round trip is test_models'; notebook 08 trains every zoo model under nbval.
# Here the one with a training stage of its own (pre-training) goes through the command line.
def test_a_zoo_model_trains_through_the_cli_and_reloads(tmp_path, capsys):
    from utils.models import load_checkpoint
    from utils.train import main
    name = "autoencoder"
    main(["--model", name, "--dataset", "bloodmnist", "--profile", "smoke", "--train-limit", "128",
          "--out", str(tmp_path), "--force"])
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    record = json.loads((tmp_path / f"{summary['run']}.json").read_text())
    assert summary["run"].startswith(f"{name}-bloodmnist-smoke-") and summary["test_acc"] == record["test"]["acc"]
    model, meta = load_checkpoint(summary["checkpoint"])
    assert model.model_name == name and meta["input_size"] == 28
    assert model(torch.rand(2, 3, 28, 28)).shape == (2, 8)

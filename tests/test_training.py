import pytest
import torch

from utils.data import ImageDataset
from utils.models import build_model
from utils.recipes import train_config
from utils.profiles import get_profile
from utils.training import TrainConfig, fit, make_optimizer, make_scheduler


@pytest.fixture(scope="module")
def tiny(blood):
    splits = {"train": blood.splits["train"].subset(256, 0), "val": blood.splits["val"].subset(128, 0),
              "test": blood.splits["test"].subset(128, 0)}
    return ImageDataset("bloodmnist", blood.class_names, splits, blood.source, blood.md5)


def _cfg(**kw):
    return TrainConfig(epochs=2, batch_size=64, augment="full", ema_decay=0.9, **kw)


def test_resume_reaches_identical_weights(tiny, tmp_path):
    torch.manual_seed(0)
    straight = fit(build_model("deep_efficientnet", 8), tiny, _cfg(), state_path=tmp_path / "a.state.pt")

    torch.manual_seed(0)
    first = build_model("deep_efficientnet", 8)
    fit(first, tiny, _cfg(), state_path=tmp_path / "b.state.pt", stop_after_epochs=1)
    torch.manual_seed(123)  # a new session: nothing carries over but the state file
    second = build_model("deep_efficientnet", 8)
    resumed = fit(second, tiny, _cfg(), state_path=tmp_path / "b.state.pt", resume=True)

    assert len(resumed.history) == 2 and resumed.best_epoch == straight.best_epoch
    for k, v in straight.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k
    straight_final = torch.load(tmp_path / "a.state.pt", weights_only=False)["model"]
    for k, v in straight_final.items():
        assert torch.equal(v, second.state_dict()[k]), k


def test_training_learns_something(tiny):
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=3, batch_size=32, augment="none", lr=3e-3, warmup_epochs=0)
    result = fit(build_model("simple_cnn", 8), tiny, cfg)
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.best_metric > 0.3  # chance is 1/8


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "step", "constant"])
@pytest.mark.parametrize("optimizer", ["adamw", "sgd"])
def test_schedules_and_optimizers_build(schedule, optimizer):
    model = torch.nn.Linear(4, 2)
    cfg = TrainConfig(epochs=3, schedule=schedule, optimizer=optimizer)
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg, steps_per_epoch=10)
    lrs = []
    for _ in range(30):
        opt.step()
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert all(lr >= 0 for lr in lrs)
    if schedule != "constant":
        assert lrs[-1] < max(lrs)


def test_profiles_resolve_in_one_place(monkeypatch):
    monkeypatch.setenv("PROFILE", "cpu")
    assert get_profile().name == "cpu"
    assert train_config("deep_efficientnet", "bloodmnist", get_profile("smoke")).epochs == 1
    full = train_config("deep_efficientnet", "bloodmnist", get_profile("full"))
    assert (full.epochs, full.label_smoothing, full.optimizer, full.schedule) == (50, 0.1, "adamw", "cosine")
    with pytest.raises(ValueError, match="PROFILE"):
        get_profile("laptop")
    with pytest.raises(TypeError, match="unknown"):
        train_config("deep_efficientnet", "bloodmnist", get_profile("smoke"), epoch=3)


def test_a_profile_passed_in_decides_where_results_go(monkeypatch):
    from pathlib import Path
    from utils.experiment import plan_run
    monkeypatch.delenv("PROFILE")  # the CLI's --profile alone, as `python -m utils.sweep --profile smoke` runs
    assert plan_run("simple_cnn", profile="smoke").out == Path("build/smoke/results/runs")
    monkeypatch.setenv("PROFILE", "smoke")
    assert plan_run("simple_cnn", profile="cpu").out == Path("results/runs")


def test_dihedral_tta_averages_the_eight_views():
    from utils.training import dihedral_views, predict_proba
    x = torch.arange(2 * 3 * 4 * 4, dtype=torch.float32).view(2, 3, 4, 4)
    views = dihedral_views(x)
    assert len(views) == 8 and len({tuple(v.flatten().tolist()) for v in views}) == 8

    class Corner(torch.nn.Module):  # looks only at the top-left pixel: every view sees another one
        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], 1) * 10

    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    model = Corner()
    expected = torch.stack([torch.softmax(model(v), 1) for v in dihedral_views(images.float() / 255)]).mean(0)
    torch.testing.assert_close(predict_proba(model, images, batch_size=2, tta=True), expected)
    assert not torch.allclose(predict_proba(model, images), expected)

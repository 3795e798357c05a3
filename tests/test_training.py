import pytest
import torch

from utils.data import ImageDataset
from utils.models import MODEL_NAMES, build_model
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


def _short_deep_efficientnet():
    # One block a stage: every source of randomness of the real model (dropout, stochastic depth, SE) in a
    # fifth of its compute.
    return build_model("deep_efficientnet", 8, repeats=(1, 1, 1, 1))


def test_resume_reaches_identical_weights(tiny, tmp_path):
    torch.manual_seed(0)
    straight = fit(_short_deep_efficientnet(), tiny, _cfg(), state_path=tmp_path / "a.state.pt")

    torch.manual_seed(0)
    first = _short_deep_efficientnet()
    fit(first, tiny, _cfg(), state_path=tmp_path / "b.state.pt", stop_after_epochs=1)
    torch.manual_seed(123)  # a new session: nothing carries over but the state file
    second = _short_deep_efficientnet()
    resumed = fit(second, tiny, _cfg(), state_path=tmp_path / "b.state.pt", resume=True)

    assert len(resumed.history) == 2 and resumed.best_epoch == straight.best_epoch
    for k, v in straight.best_state.items():
        assert torch.equal(v, resumed.best_state[k]), k
    straight_final = torch.load(tmp_path / "a.state.pt", weights_only=False)["model"]
    for k, v in straight_final.items():
        assert torch.equal(v, second.state_dict()[k]), k


def test_engine_learns_something(tiny):
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


def test_tta_with_shifts_averages_the_dihedral_views_of_each_one_pixel_shift():
    from utils.training import predict_proba, shifted_views, tta_views
    x = torch.arange(2 * 3 * 5 * 5, dtype=torch.float32).view(2, 3, 5, 5)
    centre, down, up, right, left = shifted_views(x)
    assert torch.equal(centre, x)
    assert torch.equal(down[..., 1:, :], x[..., :-1, :]) and torch.equal(down[..., 0, :], x[..., 1, :])  # reflected
    assert torch.equal(up[..., :-1, :], x[..., 1:, :]) and torch.equal(right[..., :, 1:], x[..., :, :-1])
    assert torch.equal(left[..., :, :-1], x[..., :, 1:])
    views = tta_views(x, shifts=True)
    assert len(views) == 40 and len({tuple(v.flatten().tolist()) for v in views}) == 40
    assert len(tta_views(x)) == 8

    class Corner(torch.nn.Module):
        def forward(self, x):
            return torch.stack([x[:, 0, 0, 0], -x[:, 0, 0, 0]], 1) * 10

    images = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    expected = torch.stack([torch.softmax(Corner()(v), 1) for v in tta_views(images.float() / 255, shifts=True)]).mean(0)
    torch.testing.assert_close(predict_proba(Corner(), images, batch_size=2, tta=True, tta_shifts=True), expected)
    assert not torch.allclose(predict_proba(Corner(), images, tta=True), expected)


# The graph engine's step (batch from the epoch order and a device step counter, learning rate from the
# schedule's table, in-graph EMA and sums) run uncaptured on the CPU against the eager engine, same seed:
# the data order, augmentation and dropout draw the same numbers in the same order, so only AdamW with a
# tensor learning rate rounds differently. Tolerance: 1e-5 absolute on every weight after 2 epochs of 4 steps.
def test_graph_engine_step_reaches_the_eager_weights(tiny):
    model_name = "simple_cnn"  # dropout 0.3, BatchNorm buffers in the EMA, full augmentation
    results, models = {}, {}
    for engine in ("eager", "graph"):
        torch.manual_seed(0)
        models[engine] = build_model(model_name, 8)
        results[engine] = fit(models[engine], tiny, _cfg(engine=engine), graph_capture=False)
    assert results["graph"].extra == {"engine": "graph", "engine_fallback": None}
    assert results["eager"].extra["engine"] == "eager"
    for a, b in zip(results["eager"].history, results["graph"].history):
        assert a["lr"] == pytest.approx(b["lr"]) and a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-5)
        assert a["train_acc"] == b["train_acc"]
    for k, v in models["eager"].state_dict().items():
        torch.testing.assert_close(models["graph"].state_dict()[k], v, atol=1e-5, rtol=0, msg=k)
    for k, v in results["eager"].best_state.items():  # the EMA weights the best epoch kept
        torch.testing.assert_close(results["graph"].best_state[k], v, atol=1e-5, rtol=0, msg=k)


def test_graph_engine_resumes_to_the_weights_of_a_straight_run(tiny, tmp_path):
    torch.manual_seed(0)
    straight = build_model("simple_cnn", 8)
    fit(straight, tiny, _cfg(engine="graph"), graph_capture=False)
    torch.manual_seed(0)
    first = build_model("simple_cnn", 8)
    fit(first, tiny, _cfg(engine="graph"), state_path=tmp_path / "g.state.pt", stop_after_epochs=1, graph_capture=False)
    assert torch.load(tmp_path / "g.state.pt", weights_only=False)["engine"] == "graph"
    torch.manual_seed(123)
    second = build_model("simple_cnn", 8)
    fit(second, tiny, _cfg(engine="graph"), state_path=tmp_path / "g.state.pt", resume=True, graph_capture=False)
    for k, v in straight.state_dict().items():
        torch.testing.assert_close(second.state_dict()[k], v, atol=1e-6, rtol=0, msg=k)


def test_graph_engine_falls_back_to_eager_out_loud_where_it_cannot_capture(tiny):
    torch.manual_seed(0)
    with pytest.warns(UserWarning, match="falls back to eager: CUDA graphs need a CUDA device"):
        result = fit(build_model("simple_cnn", 8), tiny, TrainConfig(epochs=1, batch_size=64, engine="graph"))
    assert result.extra == {"engine": "eager", "engine_fallback": "CUDA graphs need a CUDA device, this run is on cpu"}
    with pytest.raises(ValueError, match="engine must be one of"):
        fit(build_model("simple_cnn", 8), tiny, TrainConfig(epochs=1, engine="fast"))


def test_the_schedule_table_is_the_eager_schedule():
    from utils.training import schedule_values
    for schedule in ("cosine", "onecycle", "step", "constant"):
        cfg = TrainConfig(epochs=3, schedule=schedule)
        opt = make_optimizer(torch.nn.Linear(4, 2), cfg)
        sched = make_scheduler(opt, cfg, steps_per_epoch=10)
        seen = []
        for _ in range(30):
            seen.append(opt.param_groups[0]["lr"])
            opt.step()
            sched.step()
        seen.append(opt.param_groups[0]["lr"])
        assert schedule_values(cfg, 10).tolist() == pytest.approx(seen, rel=1e-6), schedule


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device: the captured graph itself")
def test_captured_graph_step_reaches_the_eager_weights_on_cuda(blood):
    # Captured on the GPU against eager on the GPU, fp32 without TF32 and no augmentation or dropout, so only
    # kernel choice differs: 2 epochs of 4 steps, tolerance 1e-3 absolute on every weight.
    device = torch.device("cuda")
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    splits = {k: blood.splits[k].subset(n, 0).to(device) for k, n in (("train", 256), ("val", 128), ("test", 128))}
    data = ImageDataset("bloodmnist", blood.class_names, splits, blood.source, blood.md5)
    models = {}
    for engine in ("eager", "graph"):
        torch.manual_seed(0)
        models[engine] = build_model("simple_cnn", 8, dropout=0.0)
        result = fit(models[engine], data, TrainConfig(epochs=2, batch_size=64, augment="none", amp="off",
                                                       engine=engine))
        assert result.extra["engine"] == engine
    for k, v in models["eager"].state_dict().items():
        torch.testing.assert_close(models["graph"].state_dict()[k], v, atol=1e-3, rtol=0, msg=k)


@pytest.mark.parametrize("model_name", MODEL_NAMES)
def test_graph_step_reads_nothing_back_on_the_host(tiny, model_name):
    # A CUDA graph cannot record a host read (.item(), a 0-dim tensor index, a data-dependent branch): every op
    # of the recorded body but the optimizer's (AdamW capturable is PyTorch's; on a CPU it is not capturable)
    # runs here, for every registered model, under a dispatch mode that fails on the op a host read goes through.
    from torch.utils._python_dispatch import TorchDispatchMode
    from utils.data import DeviceLoader
    from utils.training import build_stepper
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    class NoHostReads(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            assert func is not torch.ops.aten._local_scalar_dense.default, "a host read inside the graph step"
            return func(*args, **(kwargs or {}))

    torch.manual_seed(0)
    model = build_model(model_name, 8).to(memory_format=torch.channels_last)
    cfg = TrainConfig(epochs=1, batch_size=32, augment="full", ema_decay=0.9, engine="graph", loss="focal",
                      class_weighted=True)
    loader = DeviceLoader(tiny.splits["train"], 32, shuffle=True, augment="full", drop_last=True, channels_last=True,
                          generator=torch.Generator().manual_seed(0))
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    stepper = build_stepper(model, loader, cfg, "graph", None, torch.ones(8), ema, graph_capture=False)
    stepper.optimizer.step = lambda: None
    stepper.order.copy_(loader.epoch_order())
    with NoHostReads():
        stepper._body()
    assert int(stepper.global_step) == 1 and int(ema.n_averaged) == 1

    with pytest.raises(AssertionError, match="host read"), NoHostReads():
        stepper.lr_values[stepper.global_step]  # what the body must not do


def test_a_larger_batch_scales_the_learning_rate_and_keeps_the_warmup_steps():
    import dataclasses
    from utils.recipes import BASE, batch_scaled, large_batch_holds
    from utils.studies import LARGE_BATCH_LABELS, RECIPE_SEARCH
    from utils.training import schedule_values
    steps = {128: 11959 // 128, 512: 11959 // 512}  # BloodMNIST's training split, last partial batch dropped
    recipe = dataclasses.replace(BASE, epochs=6)
    larger = dataclasses.replace(recipe, **batch_scaled(512))
    assert larger.batch_size == 512 and larger.lr == pytest.approx(2 * BASE.lr)  # sqrt(512 / 128) = 2
    peak_step = {b: int(schedule_values(cfg, steps[b]).argmax()) for b, cfg in ((128, recipe), (512, larger))}
    assert abs(peak_step[512] - peak_step[128]) <= 512 // 128  # the same warmup in steps, up to rounding
    assert peak_step[128] == steps[128]  # the recipe's one epoch
    # The recipe search's larger batches, at the full profile's batch: every one larger, with the rule's learning rate.
    for label in LARGE_BATCH_LABELS:
        change = RECIPE_SEARCH[label](get_profile("full"))
        assert set(change) <= set(TrainConfig.__dataclass_fields__) and change["batch_size"] > BASE.batch_size
        assert change["lr"] == pytest.approx(BASE.lr * (change["batch_size"] / BASE.batch_size) ** 0.5)
    assert large_batch_holds(0.968, 0.972) and not large_batch_holds(0.960, 0.972)


def test_a_change_to_the_smoke_cuts_renames_its_runs_and_leaves_the_cpu_names_alone():
    import dataclasses
    from utils.experiment import plan_run
    smoke = get_profile("smoke")
    assert plan_run("simple_cnn", profile=smoke).identity["profile_limits"] == {
        "train_limit": smoke.train_limit, "val_limit": smoke.val_limit, "test_limit": smoke.test_limit}
    recut = dataclasses.replace(smoke, test_limit=2 * smoke.test_limit)
    assert plan_run("simple_cnn", profile=recut).name != plan_run("simple_cnn", profile=smoke).name
    assert "profile_limits" not in plan_run("simple_cnn", profile="cpu").identity

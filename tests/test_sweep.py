import json

from tests.conftest import store_record
from utils.experiment import plan_run
from utils.profiles import get_profile
from utils.studies import PCAM_MODELS, RUN_ONLY_ARGS, STUDIES
from utils.sweep import plan, sweep


def test_plan_lists_each_missing_run_once_and_waits_for_results_a_stage_needs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # nothing stored here
    smoke_models = get_profile("smoke").budget("pcam_models")
    screen = plan(["pcam"], "smoke")
    assert len(screen) == len(smoke_models)  # the final run waits for the screen's validation AUCs
    # DeepEfficientNet seed 0 is also a baseline: planned once.
    both = plan(["deep_efficientnet", "baselines"], "smoke")
    assert len(both) == 5 and list(both)[0].startswith("deep_efficientnet-bloodmnist-smoke-s0-")

    for (run, kwargs), auc in zip(screen.items(), (0.6, 0.9)):  # the second screen run wins
        planned = plan_run(**{k: v for k, v in kwargs.items() if k not in RUN_ONLY_ARGS})
        stored = store_record(planned.out, run.rsplit("-", 1)[0], accuracy={"val": auc}, **planned.identity,
                              seed=kwargs["seed"])
        assert stored["run"] == run
    (final,) = plan(["pcam"], "smoke").values()
    model, model_kwargs = PCAM_MODELS[smoke_models[1]]
    assert final["model"] == model and final["model_kwargs"] == model_kwargs and "train_limit" not in final


def test_sweep_trains_what_is_missing_then_finds_nothing_to_do(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert sweep(["deep_efficientnet"], "smoke", workers=1) == 0
    (stored,) = (tmp_path / "build/smoke/results/runs").glob("deep_efficientnet-*.json")
    assert json.loads(stored.read_text())["profile"] == "smoke"
    assert plan(["deep_efficientnet"], "smoke") == {}
    out = capsys.readouterr().out
    assert "1 run to train" in out and "[1/1] deep_efficientnet" in out and "0 left" in out


def test_git_commit_of_a_copy_without_git_comes_from_the_environment(tmp_path, monkeypatch):
    import utils.experiment as experiment
    monkeypatch.setattr(experiment, "REPO_ROOT", tmp_path)  # a copy of the code, no .git folder
    monkeypatch.setenv("GIT_COMMIT", "abc123")
    assert experiment.git_commit() == "abc123"
    monkeypatch.delenv("GIT_COMMIT")
    assert experiment.git_commit() == "unknown"


def test_sweep_fills_the_device_and_estimates_time_left_from_its_pace(monkeypatch):
    import torch
    from utils.sweep import RUNS_PER_GPU, cpu_cores, default_workers, time_left, worker_threads
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    # A CPU: one worker per core, one thread each (two one-thread runs outpace one two-thread run, and stall far
    # less when something else takes a core: README, "Training on a CPU").
    assert default_workers() == cpu_cores()
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert worker_threads(2) == 1 and worker_threads(4) == 1 and worker_threads(1) == 2
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert default_workers() == 2 * RUNS_PER_GPU
    assert time_left(300, done=3, left=6) == "10 min"  # 100 s a run so far, 6 to go
    assert time_left(30, done=3, left=2) == "20 s"
    assert time_left(0, done=0, left=5) == "unknown"


def test_the_declared_cpu_studies_are_the_committed_runs(monkeypatch):
    # Every run the cpu profile's studies declare is stored in results/runs under the name it is planned by:
    # the notebooks, the sweep and the report read the same runs.
    from tests.conftest import REPO
    monkeypatch.chdir(REPO)
    assert plan(list(STUDIES), "cpu") == {}


def test_cpu_workers_run_at_low_priority():
    import subprocess
    import sys
    code = "import os; from utils.sweep import _init_worker, CPU_WORKER_NICENESS; before = os.nice(0); " \
           "_init_worker(1, CPU_WORKER_NICENESS); print(before, os.nice(0) - before, CPU_WORKER_NICENESS)"
    before, raised, expected = map(int, subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                                       check=True, cwd=str(__import__("tests.conftest").conftest.REPO)
                                                       ).stdout.split())
    # Niceness stops at 19, so under a parent already niced (nice make test) the worker gains what is left.
    assert expected > 0 and raised == min(expected, 19 - before) and (before == 19 or raised > 0)


def test_a_campaign_trains_the_headline_runs_first(tmp_path, monkeypatch):
    # The order of issue #23: DeepEfficientNet, SimpleCNN and the ImageNet Lite0 over every seed, then one seed of
    # each comparison, then the rest, whatever order the studies list them in.
    from utils.sweep import campaign_order
    monkeypatch.chdir(tmp_path)  # nothing stored
    todo = plan(["attention", "baselines", "deep_efficientnet"], "full")
    names = list(campaign_order(todo))
    assert [n.split("-bloodmnist")[0] for n in names[:9]] == \
        ["deep_efficientnet"] * 3 + ["simple_cnn"] * 3 + ["efficientnet_lite0_pretrained"] * 3
    assert [n.split("-bloodmnist")[0] for n in names[9:15]] == \
        ["attention_none", "attention_se", "attention_cbam", "attention_msff", "resnet18", "efficientnet_lite0"]
    assert all("-s0-" in n for n in names[9:15]) and len(names) == len(todo) == len(set(names))


def test_a_campaign_trains_one_seed_of_each_recipe_ingredient_before_se_off_and_the_other_seeds(tmp_path, monkeypatch):
    # Issue #35: after the first seeds of the slow comparisons, seed 0 of each ingredient the course project credited
    # (the affine + colour row re-measured on this device, tagged), then DeepEfficientNet's SE off, then the rest.
    from utils.sweep import campaign_order
    monkeypatch.chdir(tmp_path)
    names = [n.split("-bloodmnist")[0] + n.split("-bloodmnist-full")[1][:3]
             for n in campaign_order(plan(["ablations", "attention"], "full"))]
    first = names.index("ablation_all_regularisation_off-s0")
    assert names[first:first + 7] == ["ablation_all_regularisation_off-s0", "ablation_step_schedule-s0",
                                      "ablation_no_augmentation-s0", "ablation_affine_colour-s0",
                                      "ablation_se_off-s0", "ablation_se_off-s1", "ablation_se_off-s2"]
    assert names.index("attention_cbam-s0") < first < names.index("attention_cbam-s1")


def test_a_sweep_told_to_stop_after_a_while_stops_its_workers_and_trains_the_rest_next_time(tmp_path, monkeypatch,
                                                                                           capsys):
    from multiprocessing import active_children
    monkeypatch.chdir(tmp_path)
    assert sweep(["deep_efficientnet"], "smoke", workers=1, stop_after=0.01) == 0
    assert "stopped after" in capsys.readouterr().out and not active_children()
    assert list(plan(["deep_efficientnet"], "smoke"))  # nothing was stored: the next sweep trains it


def test_a_run_cut_short_resumes_before_the_campaign_starts_another(tmp_path, monkeypatch):
    # A session that ends mid-run leaves a state file; the next campaign finishes that run first, whatever its rank.
    from utils.experiment import plan_run
    from utils.studies import RUN_ONLY_ARGS
    from utils.sweep import campaign_order
    monkeypatch.chdir(tmp_path)
    todo = plan(["imbalance", "ablations", "attention"], "full")  # imbalance: runs with arguments beyond plan_run's
    last = list(campaign_order(todo))[-1]
    state = plan_run(**{k: v for k, v in todo[last].items() if k not in RUN_ONLY_ARGS}).path(".state.pt")
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_bytes(b"")
    assert list(campaign_order(todo))[0] == last

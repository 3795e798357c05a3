from pathlib import Path

import numpy as np

from utils.models import build_model, count_parameters
from utils.profiles import get_profile
from utils.studies import ABLATIONS, ATTENTION_VARIANTS, format_summary, summarize


def test_each_ablation_changes_only_what_it_names_and_none_repeats_the_recipe():
    import torch
    from utils.experiment import plan_run
    from utils.studies import effective_ablations
    recipe = plan_run("deep_efficientnet", profile="full")
    trained = {}
    for label, change in ABLATIONS.items():
        change = dict(change)
        kwargs = change.pop("model_kwargs", None)
        run = plan_run("deep_efficientnet", profile="full", model_kwargs=kwargs, **change)
        changed = {k for k, v in run.config.to_dict().items() if recipe.config.to_dict()[k] != v}
        assert changed == set(change), label  # the named fields changed, nothing else did
        passed_to_model = {k: change[k] for k in ("dropout", "drop_path") if k in change}
        assert run.model_kwargs == {**recipe.model_kwargs, **(kwargs or {}), **passed_to_model}, label
        trained[label] = run.identity
    assert len({str(i) for i in trained.values()}) == len(ABLATIONS)
    # Explicit AMP settings that equal what "auto" resolves to on the device train the recipe again.
    assert "AMP off (fp32)" not in effective_ablations(None) and "AMP bf16" in effective_ablations(None)
    assert "AMP bf16" not in effective_ablations(torch.bfloat16) and "AMP off (fp32)" in effective_ablations(torch.bfloat16)
    assert len(effective_ablations(torch.float16)) == len(ABLATIONS)


def test_se_off_removes_the_se_blocks():
    with_se = build_model("deep_efficientnet", 8)
    without = build_model("deep_efficientnet", 8, se=False)
    assert count_parameters(without) < count_parameters(with_se)
    assert not any(type(m).__name__ == "SqueezeExcite" for m in without.modules())
    assert set(ATTENTION_VARIANTS.values()) <= {"efficientnet_b0", "efficientnet_b0_se", "efficientnet_b0_cbam",
                                                "efficientnet_b0_msff"}


def test_summary_means_and_standard_deviations():
    def rec(label, acc):
        m = {"acc": acc, "macro_f1": acc, "auc": acc}
        return {"label": label, "params": 10, "flops": 5, "val": m, "test": m, "train_seconds": 2.0,
                "config": {"epochs": 3}}
    rows = summarize([rec("a", 0.90), rec("a", 0.92), rec("b", 0.80)])
    a, b = rows
    assert a["seeds"] == 2 and abs(a["val_acc_mean"] - 0.91) < 1e-12 and abs(a["val_acc_std"] - 0.014142) < 1e-5
    assert b["seeds"] == 1 and b["val_acc_std"] == 0.0
    table = format_summary(rows, baseline="a")
    assert "-11.00" in table
    a_line, b_line = table.splitlines()[1:]
    assert "±1.41" in a_line and "±" not in b_line  # one seed has no spread to print


def test_pcam_study_screens_then_retrains_the_validation_winner_on_all_patches(monkeypatch):
    import utils.studies as studies
    calls = []
    val_auc = {"efficientnet_b0_se": 0.9, "efficientnet_lite0": 0.7}  # every other model 0.8

    def fake_run_training(model, dataset, profile, seed, model_kwargs=None, **budget):
        calls.append((model, model_kwargs, budget))
        auc = val_auc.get(model, 0.8) + (0.05 if budget.get("train_limit") is None else 0)
        return {"model": model, "seed": seed, "val": {"auc": auc}}

    monkeypatch.setattr(studies, "run_training", fake_run_training)
    monkeypatch.setattr(studies, "trains_here", lambda profile: True)  # as on a GPU
    cpu = get_profile("cpu")
    records = studies.run_pcam_study(cpu)
    screen = [r for r in records if r["stage"] == "screen"]
    assert [r["label"] for r in screen] == list(studies.PCAM_MODELS)
    assert all(budget == cpu.budget("pcam_screen") for _, _, budget in calls[:len(screen)])
    (final,) = [r for r in records if r["stage"] == "final"]
    assert final["label"] == "B0 + SE" + studies.FINAL_SUFFIX and calls[-1] == ("efficientnet_b0_se", None, cpu.budget("pcam_final"))

    calls.clear()
    records = studies.run_pcam_study("full")
    assert len(records) == 3 * len(studies.PCAM_MODELS) and {r["stage"] for r in records} == {"screen"}
    assert all(budget == {} for _, _, budget in calls)


def test_binary_table_has_one_row_per_run_with_budget_and_both_thresholds(tmp_path):
    import numpy as np
    from utils.analysis import binary_study, binary_table
    rng = np.random.default_rng(0)
    arrays = {}
    for split in ("val", "test"):
        labels = np.repeat([0, 1], 50)
        p1 = np.clip(0.3 + 0.4 * labels + rng.normal(0, 0.2, 100), 0, 1)
        arrays.update({f"{split}_labels": labels, f"{split}_probs": np.stack([1 - p1, p1], 1)})
    np.savez(tmp_path / "p.npz", **arrays)
    record = {"run": "r", "predictions": str(tmp_path / "p.npz"), "data": {"n": {"train": 1234}},
              "config": {"epochs": 6}, "epochs_run": 4}
    study = binary_study(record)
    assert study["train_n"] == 1234 and study["epochs_run"] == 4 and 0 < study["threshold"] < 1
    assert 0.5 < study["test_at_0.5"]["auc"] <= 1 and study["val_at_0.5"]["auc"] > 0.5
    table = binary_table({"Lite0 (ImageNet) (all patches)": study})
    assert len(table.splitlines()) == 2 and "1234" in table and f"{study['test_at_0.5']['auc']:.4f}" in table


def test_pcam_scaling_trains_one_model_on_growing_subsets(monkeypatch):
    import utils.studies as studies
    calls = []

    def fake_run_training(model, dataset, profile, seed, model_kwargs=None, train_limit=None, **budget):
        calls.append((model, model_kwargs, train_limit, budget, seed))
        return {"model": model, "seed": seed}

    monkeypatch.setattr(studies, "run_training", fake_run_training)
    monkeypatch.setattr(studies, "trains_here", lambda profile: True)  # as on a GPU
    records = studies.run_pcam_scaling("cpu")
    plan = get_profile("cpu").budget("pcam_scaling")
    model, kwargs = studies.PCAM_MODELS[studies.PCAM_SCALING_MODEL]
    assert [c[2] for c in calls] == list(plan["train_limits"]) and plan["train_limits"][-1] is None
    assert all(c[:2] == (model, kwargs) and c[3] == {"epochs": plan["epochs"]} for c in calls)
    assert {r["label"] for r in records} == {studies.PCAM_SCALING_MODEL}
    calls.clear()
    assert len(studies.run_pcam_scaling("full")) == 3 * len(get_profile("full").budget("pcam_scaling")["train_limits"])


def _binary(train_n, auc, acc, test_auc=None):
    return {"train_n": train_n, "val_at_0.5": {"auc": auc, "acc": acc}, "test_at_0.5": {"auc": test_auc or auc, "acc": acc}}


def test_scaling_fit_recovers_a_log_linear_curve_and_where_it_meets_the_target():
    from utils.analysis import scaling_study
    # AUC = 0.80 + 0.05 log10(n / 1000): 0.965 at 10^(0.165/0.05) * 1000 = 1,995,262 patches.
    # Test AUC runs flat at 0.99: the fit follows validation alone.
    studies = {f"{n}": _binary(n, 0.80 + 0.05 * np.log10(n / 1000), 0.7, test_auc=0.99) for n in (1000, 4000, 20000)}
    scaling = scaling_study(studies, {"auc": 0.965, "acc": 0.90})
    fit = scaling["fits"]["auc"]
    assert scaling["train_n"] == [1000, 4000, 20000] and scaling["fitted_on"] == "val"
    assert scaling["test_auc"] == [0.99] * 3
    assert abs(fit["per_tenfold"] - 0.05) < 1e-9 and abs(fit["patches_for_target"] / 1_995_262 - 1) < 1e-4
    assert scaling["fits"]["acc"]["patches_for_target"] == float("inf")  # flat accuracy never gets there


def test_pcam_levers_compare_each_change_with_the_run_it_changes():
    from utils.analysis import levers_table, pcam_levers
    def rec(label, val, test, stage="screen", epochs=3):
        return {"label": label, "stage": stage, "seed": 0, "val": {"auc": val}, "test": {"auc": test},
                "model": "efficientnet_lite0", "pretrained": True, "config": {"epochs": epochs},
                "data": {"n": {"train": 19171}}}
    records = [rec("Lite0 (scratch)", 0.80, 0.79), rec("Lite0 (ImageNet)", 0.90, 0.88),
               rec("Lite0 (ImageNet, 1.5x input)", 0.92, 0.91), rec("Lite0 (ImageNet) (all patches)", 0.95, 0.94, "final")]
    best = records[-1]
    tta = dict(best, val={"auc": 0.955}, test={"auc": 0.944})
    epoch_runs = [rec("x", 0.9484, 0.9461, epochs=12), rec("x", 0.9477, 0.9478, epochs=6)]
    scaling = {"train_n": [100, 100, 1000, 1000], "val_auc": [0.8, 0.82, 0.9, 0.9], "test_auc": [0.7, 0.74, 0.8, 0.9]}
    rows = {r["lever"]: r for r in pcam_levers(records, best, tta, scaling, epoch_runs)}
    assert list(rows) == ["ImageNet weights", "1.5x input", "test-time augmentation", "more epochs", "more training patches"]
    assert np.isclose(rows["ImageNet weights"]["val_auc"], 0.10) and np.isclose(rows["1.5x input"]["test_auc"], 0.03)
    assert np.isclose(rows["test-time augmentation"]["val_auc"], 0.005)
    assert np.isclose(rows["more epochs"]["val_auc"], 0.0007) and np.isclose(rows["more epochs"]["test_auc"], -0.0017)
    assert rows["more epochs"]["from"] == "x, 19,171 patches, 6 epochs" and rows["more epochs"]["to"] == "12 epochs"
    assert np.isclose(rows["more training patches"]["val_auc"], 0.09) and np.isclose(rows["more training patches"]["test_auc"], 0.13)
    assert len(levers_table(list(rows.values())).splitlines()) == 6
    assert "more epochs" not in {r["lever"] for r in pcam_levers(records, best, tta, scaling)}


def test_epoch_variants_are_the_runs_that_differ_only_in_epochs(tmp_path):
    from tests.conftest import store_record
    from utils.analysis import epoch_variants
    def write(name, epochs, **change):
        fields = {"model": "m", "dataset": "pcam", "model_kwargs": {"pretrained": True},
                  "config": {"epochs": epochs, "lr": 1e-3}, **change}
        return store_record(tmp_path, name, **fields)
    six = write("six", 6)
    write("twelve", 12)
    write("subset", 12, train_limit=2000)
    write("other_lr", 12, config={"epochs": 12, "lr": 2e-3})
    write("other_seed", 12, seed=1)
    assert sorted(r["run"].split("-")[0] for r in epoch_variants(six)) == ["six", "twelve"]
    assert {r["label"] for r in epoch_variants(dict(six, label="Lite0"))} == {"Lite0"}


def test_the_recipe_search_screens_one_change_at_a_time_and_confirms_the_validation_winner(monkeypatch):
    import utils.studies as studies
    from utils.recipes import BASE
    calls = []

    def fake_run_training(model, dataset, profile, seed, **arguments):
        calls.append((seed, arguments))
        label = arguments.get("tag", "recipe")
        acc = 0.99 if label == "recipe_4x_batch" else 0.97 if arguments.get("augment") == "color" else 0.95
        return {"model": model, "seed": seed, "val": {"acc": acc}}

    monkeypatch.setattr(studies, "run_training", fake_run_training)
    monkeypatch.setattr(studies, "trains_here", lambda profile: True)  # as on a GPU
    full = get_profile("full")
    records = studies.run_recipe_search(full)
    screen = [r for r in records if r["stage"] == "screen"]
    assert [r["label"] for r in screen] == list(studies.RECIPE_SEARCH) and {r["seed"] for r in screen} == {0}
    changes = {r["label"]: args for r, (_, args) in zip(screen, calls)}
    assert changes["recipe"] == {}  # notebook 03's run, reused
    assert changes["2x epochs"]["epochs"] == 2 * BASE.epochs
    assert changes["4x batch"]["batch_size"] == 4 * BASE.batch_size and changes["4x batch"]["lr"] == 2 * BASE.lr
    # A larger batch that keeps the recipe's accuracy (0.99 against 0.95) is eligible, and here the best.
    assert studies.recipe_search_winner(screen) == "4x batch"
    confirm = [r for r in records if r["stage"] == "confirm"]
    assert [r["seed"] for r in confirm] == [1, 2] and {r["label"] for r in confirm} == {"4x batch"}
    # A larger batch that loses the recipe's accuracy is never chosen, however the others fare.
    losing = [dict(r, val={"acc": 0.90 if r["label"] in studies.LARGE_BATCH_LABELS else r["val"]["acc"]}) for r in screen]
    assert studies.recipe_search_winner(losing) == "colour augmentation"
    calls.clear()
    assert studies.run_recipe_search("cpu") == [] and calls == []  # no search at the cpu budget


def test_the_full_profile_on_a_cpu_trains_nothing_and_names_the_missing_runs(tmp_path, monkeypatch, capsys):
    import utils.studies as studies

    def no_training(*args, **kwargs):
        raise AssertionError("a study in the full profile on a CPU must not train")

    monkeypatch.chdir(tmp_path)  # nothing stored here
    monkeypatch.setattr(studies, "run_training", no_training)
    monkeypatch.setattr(studies, "default_device", lambda: __import__("torch").device("cpu"))
    assert studies.run_deep_efficientnet("full") == []
    said = capsys.readouterr().out
    assert "3 run(s) of the deep_efficientnet study are not stored in the full profile" in said
    assert "python -m utils.sweep --profile full --only deep_efficientnet trains them" in said
    records, missing = studies.stored_runs(studies.BASELINE_STUDY, "full")
    assert records == [] and len(missing) == 3 * len(studies.BASELINES)


def test_the_recipe_augments_with_flips_and_turns_in_every_profile():
    from utils.recipes import train_config
    from utils.studies import ABLATION_STUDY
    assert train_config("deep_efficientnet", "bloodmnist", get_profile("full")).augment == "basic"
    assert train_config("deep_efficientnet", "bloodmnist", get_profile("cpu")).augment == "basic"  # the recipe's
    assert train_config("efficientnet_lite0", "pcam", get_profile("cpu")).augment == "color"  # PCam's own recipe
    # The old augmentation is an ablation row in every profile, and no row repeats the recipe.
    full_rows = {p.label for p in ABLATION_STUDY.runs(get_profile("full"))}
    cpu_rows = {p.label for p in ABLATION_STUDY.runs(get_profile("cpu"))}
    assert "affine + colour augmentation" in full_rows and "affine + colour augmentation" in cpu_rows
    assert "basic augmentation" not in ABLATIONS


def test_relabelled_ablations_keep_their_run_names():
    from utils.studies import ABLATION_STUDY
    tags = {p.label: p.arguments.get("tag") for p in ABLATION_STUDY.runs(get_profile("cpu"))}
    assert tags["SGD (lr 0.05, weight decay 5e-4)"] == "ablation_sgd"
    assert tags["batch 256 (lr 4e-3)"] == "ablation_batch_256"
    assert tags["all regularisation off (label smoothing, dropout, stochastic depth, weight decay)"] == \
        "ablation_all_regularisation_off"


def test_at_the_full_budget_the_affine_colour_row_is_retrained_here_and_the_stored_gpu_runs_stay_a_row_of_their_own():
    # Issue #35: the previous recipe's full-budget runs (H100, bf16, untagged) keep their names as their own row; the
    # ablation row is trained like the others, tagged, so its name cannot be one of theirs.
    from utils.studies import ABLATION_STUDY, PREVIOUS_RECIPE, PREVIOUS_RECIPE_RUNS
    full = ABLATION_STUDY.runs(get_profile("full"))
    retrained = [p for p in full if p.label == PREVIOUS_RECIPE]
    stored = [p for p in full if p.label == PREVIOUS_RECIPE_RUNS]
    assert [p.seed for p in retrained] == [p.seed for p in stored] == [0, 1, 2]
    assert {p.arguments.get("tag") for p in retrained} == {"ablation_affine_colour"}
    assert all("tag" not in p.arguments and p.arguments["augment"] == "full" for p in stored)
    assert (Path("results/runs") / "deep_efficientnet-bloodmnist-full-s0-16269bbb26.json").is_file()
    # At a short budget the row keeps the untagged names of the old recipe's runs, and there is no second row.
    cpu = ABLATION_STUDY.runs(get_profile("cpu"))
    assert not [p for p in cpu if p.label == PREVIOUS_RECIPE_RUNS]
    assert all("tag" not in p.arguments for p in cpu if p.label == PREVIOUS_RECIPE)

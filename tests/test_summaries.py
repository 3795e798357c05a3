"""Every summary of utils.summaries on small synthetic records (schema, chosen on validation, verdicts), and
the committed summaries rebuilt from the committed runs byte for byte."""
import json
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from utils.profiles import get_profile
from utils.studies import STUDIES, missing_message, stored_runs
from utils.summaries import SUMMARIES, outputs, study_summary

SMOKE = get_profile("smoke")
CLASSES = [f"class {i}" for i in range(8)]


def metrics(acc: float, macro_f1: float | None = None, auc: float | None = None, recall: float = 0.5) -> dict:
    return {"acc": acc, "macro_f1": acc if macro_f1 is None else macro_f1, "auc": acc if auc is None else auc,
            "per_class": {c: {"recall": recall} for c in CLASSES}}


def record(label: str, val: dict, test: dict, seed: int = 0, **fields) -> dict:
    return {"run": f"{label}-s{seed}", "label": label, "seed": seed, "model": "simple_cnn", "profile": "smoke",
            "params": 10, "flops": 5, "val": val, "test": test, "train_seconds": 1.0, "config": {"epochs": 2},
            "git_commit": "abc", "device": "cpu", "torch_version": "2.x", "python": "3.11", "class_names": CLASSES,
            **fields}


def build(name: str, records: dict) -> dict:
    return SUMMARIES[name].build(SMOKE, records, False)


def test_a_study_summary_is_chosen_on_validation_never_on_test():
    # "b" wins on test, "a" on validation: the summary names "a".
    runs = [record("a", metrics(0.9), metrics(0.7)), record("b", metrics(0.8), metrics(0.95))]
    summary = build("baselines", {"baselines": runs})
    assert summary["best"] == "a" and summary["chosen_on"] == "val" and summary["chosen_by"] == "val_acc_mean"
    assert [r["name"] for r in summary["rows"]] == ["a", "b"] and summary["runs"] == ["a-s0", "b-s0"]
    assert summary["provenance"] == {"profile": "smoke", "runs": 2, "git_commits": ["abc"], "devices": ["cpu"],
                                     "torch": ["2.x"], "python": ["3.11"]}
    with pytest.raises(ValueError, match="chosen on validation"):
        study_summary(SMOKE, summary["rows"], runs, chosen_by="test_acc_mean")


def test_architectures_compare_designs_without_the_imagenet_baseline():
    baselines = [record("SimpleCNN", metrics(0.8), metrics(0.8)),
                 record("EfficientNet-Lite0 (ImageNet)", metrics(0.99), metrics(0.99))]
    zoo = [record("VGG", metrics(0.85), metrics(0.7))]
    summary = build("architectures", {"baselines": baselines, "zoo": zoo})
    assert [r["name"] for r in summary["rows"]] == ["SimpleCNN", "VGG"] and summary["best"] == "VGG"


def test_the_imbalance_strategy_is_chosen_on_validation_macro_f1():
    runs = [record("Cross-entropy", metrics(0.9, macro_f1=0.6), metrics(0.9, macro_f1=0.9), imbalance="cross_entropy"),
            record("Focal loss", metrics(0.8, macro_f1=0.7), metrics(0.8, macro_f1=0.5, recall=0.25), imbalance="focal")]
    summary = build("imbalance", {"imbalance": runs})
    assert summary["best"] == "Focal loss" and summary["chosen_by"] == "val_macro_f1_mean"
    assert summary["model"] == "simple_cnn" and summary["rows"][1]["recall_mean"] == [0.25] * 8


def _predictions(folder: Path, name: str, classes: int, rng, n: int = 40) -> str:
    labels = np.arange(n) % classes
    probs = rng.dirichlet(np.ones(classes), size=n).astype(np.float32)
    probs[np.arange(n), labels] += 1.0  # mostly right, so a fitted temperature is finite
    probs /= probs.sum(1, keepdims=True)
    path = folder / f"{name}.npz"
    np.savez(path, val_probs=probs, val_labels=labels, test_probs=probs[::-1].copy(), test_labels=labels[::-1].copy())
    return str(path)


@pytest.mark.parametrize("mean, met, aim_met", [(0.981, True, True), (0.975, True, False), (0.969, False, False)])
def test_the_deep_efficientnet_summary_gives_seeds_calibration_tta_and_the_target_verdict(tmp_path, monkeypatch,
                                                                                         mean, met, aim_met):
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    runs = [record("DeepEfficientNet", metrics(0.97), metrics(mean + d), seed=s,
                   predictions=_predictions(tmp_path, f"s{s}", 8, rng)) for s, d in ((0, 0.001), (1, -0.001))]
    # TTA raises seed 0's validation accuracy (kept: its test accuracy counts) and lowers seed 1's (not kept).
    _store_evaluation(runs[0], "tta", val=metrics(0.98), test=metrics(0.99))
    _store_evaluation(runs[1], "tta", val=metrics(0.96), test=metrics(0.999))
    summary = build("deep_efficientnet", {"deep_efficientnet": runs})
    assert summary["run"] == "DeepEfficientNet-s0" and summary["seeds"]["runs"] == ["DeepEfficientNet-s0", "DeepEfficientNet-s1"]
    assert summary["seeds"]["test_acc_mean"] == pytest.approx(mean) and summary["seeds"]["test_acc_std"] > 0
    assert summary["target"] == {"test_acc_mean": 0.97, "met": met, "aim": 0.98, "aim_met": aim_met}
    assert summary["chosen_on"] == "val"
    # The seed mean's bootstrap interval, from the runs' stored predictions, holds their mean accuracy.
    stored = [np.load(r["predictions"]) for r in runs]
    mean_of_predictions = np.mean([(p["test_probs"].argmax(1) == p["test_labels"]).mean() for p in stored])
    low, high = summary["seeds"]["test_acc_mean_bootstrap_ci95"]
    assert 0 <= low <= mean_of_predictions <= high <= 1
    assert summary["calibration"]["temperature"] > 0 and 0 <= summary["calibration"]["ece_after"] <= 1
    assert summary["tta"]["kept"] == [True, False] and summary["tta"]["chosen_on"] == "val"
    assert summary["tta"]["test_acc_mean_where_kept"] == pytest.approx((0.99 + mean - 0.001) / 2)


def _store_evaluation(record: dict, kind: str, **fields) -> dict:
    from utils.profiles import output_dir
    stored = dict(record, **fields, **{f"{kind.split('/')[0]}_scoring": {"device": "cpu", "wall_seconds": 1.0}})
    path = output_dir("results", SMOKE) / kind / f"{record['run']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(stored))
    return stored


@pytest.mark.parametrize("tta_val, kept", [(0.95, True), (0.85, False)])
def test_the_recipe_search_takes_the_validation_winner_and_keeps_tta_only_if_it_raises_validation(
        tmp_path, monkeypatch, tta_val, kept):
    monkeypatch.chdir(tmp_path)
    # "4x batch" is best on test, "basic augmentation" on validation: the winner, confirmed on seed 1.
    screen = [record("recipe", metrics(0.90), metrics(0.90), stage="screen"),
              record("4x batch", metrics(0.89), metrics(0.99), stage="screen"),
              record("basic augmentation", metrics(0.92), metrics(0.91), stage="screen")]
    confirm = [record("basic augmentation", metrics(0.94), metrics(0.93), seed=1, stage="confirm")]
    _store_evaluation(screen[2], "tta", val=metrics(tta_val), test=metrics(0.5))
    summary = build("recipe_search", {"recipe_search": screen + confirm})
    assert summary["best"] == "basic augmentation" and summary["chosen_on"] == "val"
    assert summary["confirmed"]["seeds"] == 2 and summary["confirmed"]["val_acc_mean"] == pytest.approx(0.93)
    assert summary["tta"] == {"run": "basic augmentation-s0", "val_acc": tta_val, "test_acc": 0.5,
                              "val_acc_without": 0.92, "kept": kept}
    assert [r["name"] for r in summary["rows"]] == ["recipe", "4x batch", "basic augmentation"]  # the screen
    assert build("recipe_search", {"recipe_search": []}) is None  # a profile without a search budget


def test_the_gradcam_summary_reads_the_stored_road_scores_or_says_how_to_measure_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = record("DeepEfficientNet", metrics(0.9), metrics(0.9))
    n = SMOKE.budget("gradcam")["road_images"]
    with pytest.raises(FileNotFoundError, match="python -m utils.sweep --profile smoke"):
        build("gradcam", {"deep_efficientnet": [run]})
    _store_evaluation(run, f"road/n{n}", n=n, target_layer="head", mean={"gradcam": 0.2}, std={"gradcam": 0.1})
    summary = build("gradcam", {"deep_efficientnet": [run]})
    assert summary["run"] == run["run"] and summary["n"] == n and summary["mean"] == {"gradcam": 0.2}


def _pcam_record(tmp_path, label: str, val_auc: float, rng, train_n: int = 100, stage: str = "screen", **fields):
    return record(label, metrics(0.8, auc=val_auc), metrics(0.8, auc=val_auc - 0.01), stage=stage, pretrained=False,
                  data={"n": {"train": train_n}}, epochs_run=2, dataset="pcam",
                  predictions=_predictions(tmp_path, f"{label}-{train_n}-{stage}", 2, rng), **fields)


@pytest.mark.parametrize("tta_auc, kept", [(0.95, True), (0.5, False)])
def test_the_pcam_summary_picks_on_validation_auc_keeps_tta_by_validation_and_gives_the_verdicts(
        tmp_path, monkeypatch, tta_auc, kept):
    from utils.analysis import binary_study
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(1)
    runs = [_pcam_record(tmp_path, "Lite0 (scratch)", 0.80, rng), _pcam_record(tmp_path, "Lite0 (ImageNet)", 0.90, rng)]
    scaling = [_pcam_record(tmp_path, "Lite0 (ImageNet)", auc, rng, train_n=n) for n, auc in ((100, 0.85), (1000, 0.9))]
    tta = _store_evaluation(runs[1], "tta", val={"auc": tta_auc}, test={"auc": 0.9},
                            predictions=_predictions(tmp_path, "tta", 2, rng))
    summary = build("pcam", {"pcam": runs, "pcam_scaling": scaling})
    assert summary["best_on_val"] == runs[1]["run"] and summary["chosen_on"] == "val"
    assert summary["final"] == "Lite0 (ImageNet)" + (" + TTA" if kept else "") and summary["tta"]["kept"] is kept
    final = binary_study(tta if kept else runs[1])["test_at_0.5"]
    assert summary["verdict"] == {m: "met" if final[m] >= t else "not met" for m, t in summary["targets"].items()}
    assert summary["scaling"]["fitted_on"] == "val" and summary["scaling"]["train_n"] == [100, 1000]
    assert {r["lever"] for r in summary["levers"]} >= {"ImageNet weights", "test-time augmentation",
                                                         "more training patches"}


def test_stored_runs_name_the_missing_runs_and_the_command_that_trains_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    records, missing = stored_runs(STUDIES["baselines"], SMOKE)
    assert records == [] and len(missing) == 5
    message = missing_message(STUDIES["baselines"], SMOKE, missing)
    assert "python -m utils.sweep --profile smoke --only baselines" in message
    assert all(name in message for name in missing)  # every one named, none left to "..."


def test_make_summaries_reproduces_the_committed_summaries_from_the_committed_runs(monkeypatch):
    monkeypatch.chdir(REPO)
    texts = outputs(get_profile("cpu"), datasets=["bloodmnist"])  # PatchCamelyon's: tests/test_pcam.py
    assert {p.parent.name for p in texts} >= set(SUMMARIES) - {"recipe_search"} | {"eda"}
    differ = [str(p) for p, text in texts.items() if (REPO / p).read_text() != text]
    assert not differ, f"{differ} differ from what the stored runs give: run make summaries"


def test_a_full_budget_summary_from_a_part_of_its_runs_names_the_rest_and_the_command(tmp_path, monkeypatch):
    import utils.summaries as summaries
    from utils.studies import BASELINE_STUDY, PlannedRun
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(summaries, "trains_here", lambda profile: False)  # the full profile on a CPU
    stored = [dict(record("SimpleCNN", metrics(0.98), metrics(0.97), seed=s), run=f"simple_cnn-s{s}") for s in (0, 1)]

    def fake_stored_runs(study, profile):
        return (stored, ["resnet18-s0", "resnet18-s1"]) if study is BASELINE_STUDY else ([], [f"{study.name}-s0"])

    monkeypatch.setattr(summaries, "stored_runs", fake_stored_runs)
    summary = summaries.build_summary("baselines", "full", compute=False)
    assert [r["name"] for r in summary["rows"]] == ["SimpleCNN"] and summary["rows"][0]["seeds"] == 2
    assert summary["missing"] == {"baselines": {"runs": ["resnet18-s0", "resnet18-s1"],
                                                "command": "python -m utils.sweep --profile full --only baselines"}}
    assert "2 run(s) of baselines not stored yet (resnet18-s0, resnet18-s1)" in summaries.missing_note(summary)
    assert summaries.build_summary("attention", "full", compute=False) is None  # nothing stored: nothing to show


def test_the_full_budget_is_shown_where_it_compares_something_else_the_cpu_approximation(tmp_path):
    from utils.summaries import shown_summary, summary_path
    def write(profile, rows):
        path = summary_path("baselines", profile, tmp_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"provenance": {"profile": profile}, "rows": rows}))
    write("cpu", [{"name": "a"}, {"name": "b"}])
    assert shown_summary("baselines", tmp_path)["provenance"]["profile"] == "cpu"
    write("full", [{"name": "a"}])  # one row compares nothing yet
    assert shown_summary("baselines", tmp_path)["provenance"]["profile"] == "cpu"
    write("full", [{"name": "a"}, {"name": "b"}])
    assert shown_summary("baselines", tmp_path)["provenance"]["profile"] == "full"
    assert summary_path("baselines", "full", tmp_path) == tmp_path / "full" / "baselines" / "summary.json"

import dataclasses
import json
import platform
import time

import numpy as np
import pytest

import utils.speedrun as speedrun
from utils.metrics import classification_metrics
from utils.profiles import get_profile
from utils.speedrun import SPEEDRUN, SPEEDRUN_FP32, Candidate, choose, read_candidates, search


def test_the_speedrun_end_to_end_in_the_smoke_profile(tmp_path, capsys):
    speedrun.main(["--seeds", "2", "--precision", "bf16", "--out", str(tmp_path)])
    records = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("speedrun-*.json"))]
    assert [r["seed"] for r in records] == [0, 1]
    for record in records:
        assert record["profile"] == "smoke" and record["recipe"] == dataclasses.asdict(SPEEDRUN) and record["config"]["epochs"] == 1
        assert record["git_commit"] and record["torch_version"] and record["threads"] >= 1 and record["cpu"]
        assert record["freed_memory_kept"] == (platform.libc_ver()[0] == "glibc")  # set before the clock starts
        # The record's metrics are those of the predictions stored beside it (TTA where the recipe uses it).
        with np.load(tmp_path / f"{record['run']}.npz") as saved:
            assert record["test"]["acc"] == classification_metrics(saved["test_labels"], saved["test_probs"])["acc"]
            assert record["test"]["n"] == len(saved["test_labels"]) < 3421  # the smoke profile's stratified cut
    out = capsys.readouterr().out
    assert "mean" in out and "±" in out and "limit 150 s" in out and "the bf16 path (--precision bf16)" in out
    assert "the longest seed took" in out and "the 150 s limit" in out


def test_the_clock_covers_loading_the_data_and_tta_up_to_the_last_test_prediction(tmp_path, monkeypatch):
    load, tta_pass = 0.4, 0.15
    real_prepare, real_predict = speedrun.prepare_data, speedrun.predict_proba

    def slow_prepare(*args, **kwargs):
        time.sleep(load)
        return real_prepare(*args, **kwargs)

    def slow_predict(*args, tta=False, **kwargs):
        time.sleep(tta_pass if tta else 0)
        return real_predict(*args, tta=tta, **kwargs)

    monkeypatch.setattr(speedrun, "prepare_data", slow_prepare)
    monkeypatch.setattr(speedrun, "predict_proba", slow_predict)
    started = time.perf_counter()
    record = speedrun.speedrun(0, get_profile("smoke"), tmp_path, dataclass_tta(True))
    elapsed = time.perf_counter() - started
    seconds = record["seconds"]
    assert seconds["data"] >= load and seconds["score_tta"] >= tta_pass  # the test split's TTA pass
    assert record["wall_seconds"] >= load + tta_pass + seconds["train"]
    # Validation is scored for the record after the last test prediction, off the clock.
    assert seconds["untimed_scoring"] >= tta_pass and record["wall_seconds"] <= elapsed - tta_pass
    assert record["val"]["n"] > 0 and record["test"]["n"] > 0


def dataclass_tta(tta: bool) -> Candidate:
    return Candidate(epochs=1, tta=tta)


def test_a_stored_speedrun_is_never_replaced_without_force(tmp_path):
    profile = get_profile("smoke")
    first = speedrun.speedrun(0, profile, tmp_path, dataclass_tta(False))
    with pytest.raises(FileExistsError, match=f"{first['run']}.json.*--force"):
        speedrun.speedrun(0, profile, tmp_path, dataclass_tta(False))
    assert speedrun.speedrun(0, profile, tmp_path, dataclass_tta(False), force=True)["run"] == first["run"]


def test_the_search_stores_each_candidate_once_and_resumes(tmp_path, monkeypatch):
    profile = get_profile("smoke")
    candidates = (Candidate(epochs=2), Candidate(epochs=2, tta=False), Candidate(epochs=3, precision="fp32"))
    finalists = (Candidate(epochs=2),)
    entries = search(profile, tmp_path, candidates=candidates, finalists=finalists, seeds=(0, 1))
    # The first two train the same way (TTA is only how a training is scored); the finalist once more, on seed 1.
    assert sorted((e["recipe"]["epochs"], e["seed"]) for e in entries) == [(2, 0), (2, 1), (3, 0)]
    for entry in entries:
        assert 0 <= entry["val_acc"] <= 1 and 0 <= entry["val_acc_tta"] <= 1 and entry["machine"]["threads"]
        assert 0 <= entry["val_acc_tta_shifts"] <= 1 and entry["seconds"] < entry["seconds_tta"] < entry["phases"]["wall"]
        phases = entry["phases"]  # each way of scoring is timed as if it were the only one
        assert phases["score_tta"] > 0 and phases["score_tta_shifts"] > phases["score_tta"]
        assert entry["seconds_tta_shifts"] == pytest.approx(phases["wall"] - phases["score_tta"])

    def no_training(*args, **kwargs):
        raise AssertionError("a stored candidate was trained again")
    real_train = speedrun.train_and_score
    monkeypatch.setattr(speedrun, "train_and_score", no_training)
    assert search(profile, tmp_path, candidates=candidates, finalists=finalists, seeds=(0, 1)) == read_candidates(tmp_path)

    # An entry stored before the shifts were scored is trained again only where a candidate asks for them, and keeps
    # its first measurement: the shifts' seconds are its first TTA seconds plus what the shifted views cost over the 8.
    stored = json.loads((tmp_path / "candidates.json").read_text())
    for old in stored["entries"]:
        for key in ("val_acc_tta_shifts", "seconds_tta_shifts"):
            del old[key]
    (tmp_path / "candidates.json").write_text(json.dumps(stored))
    assert search(profile, tmp_path, candidates=candidates, finalists=finalists, seeds=(0, 1)) == stored["entries"]
    monkeypatch.setattr(speedrun, "train_and_score", real_train)
    shifted = (Candidate(epochs=2, tta_shifts=True),)
    entries = {e["name"]: e for e in search(profile, tmp_path, candidates=(), finalists=shifted, seeds=(0,))}
    again = entries[speedrun.run_name(Candidate(epochs=2, tta=False), 0, profile)]
    before = {e["name"]: e for e in stored["entries"]}[again["name"]]
    assert {k: again[k] for k in before} == before and 0 <= again["val_acc_tta_shifts"] <= 1
    second = again["shifts_scored"]
    assert second["val_acc"] == before["val_acc"] and second["val_acc_tta"] == before["val_acc_tta"]  # the same training
    assert again["seconds_tta_shifts"] == pytest.approx(
        before["seconds_tta"] + second["phases"]["score_tta_shifts"] - second["phases"]["score_tta"])
    assert all("shifts_scored" not in e and "val_acc_tta_shifts" not in e for name, e in entries.items() if name != again["name"])


def entry(epochs: int, val_acc: float, val_acc_tta: float, seconds: float, seconds_tta: float, seed: int = 0,
          shifts: tuple[float, float] | None = None) -> dict:
    scored = {"val_acc_tta_shifts": shifts[0], "seconds_tta_shifts": shifts[1]} if shifts else {}
    return {"recipe": dataclasses.asdict(Candidate(epochs=epochs, tta=False)), "val_acc": val_acc, "val_acc_tta": val_acc_tta,
            "seconds": seconds, "seconds_tta": seconds_tta, "seed": seed, **scored,
            "machine": {"threads": 2, "load_average_1min": 0.0}}


def test_choose_takes_the_best_validation_accuracy_within_the_limit():
    entries = [entry(20, 0.960, 0.965, 100, 110), entry(50, 0.980, 0.985, 250, 280), entry(40, 0.975, 0.978, 200, 220)]
    assert choose(entries, limit_seconds=300) == Candidate(epochs=50, tta=True)
    assert choose(entries, limit_seconds=270) == Candidate(epochs=40, tta=True)  # not 50 epochs scored plain, in 250 s
    tie = [entry(20, 0.97, 0.97, 100, 120), entry(30, 0.97, 0.97, 150, 170)]
    assert choose(tie) == Candidate(epochs=20, tta=True)  # the faster of equals
    plain_ahead = [entry(20, 0.99, 0.96, 100, 110)]
    assert choose(plain_ahead) == Candidate(epochs=20, tta=True)  # the speedrun scores with TTA
    with pytest.raises(ValueError, match="within 50"):
        choose(entries, limit_seconds=50)


def test_choose_takes_the_finalists_by_their_mean_over_seeds_and_their_longest_seed():
    lucky = entry(20, 0.990, 0.990, 100, 110)  # one seed only: not a finalist
    finalists = [entry(40, 0.960, 0.975, 200, 210), entry(40, 0.960, 0.971, 190, 240, seed=1),
                 entry(30, 0.960, 0.974, 150, 160), entry(30, 0.960, 0.974, 150, 160, seed=1)]
    rows = {(row["candidate"].epochs, row["candidate"].tta): row for row in speedrun.search_rows([lucky, *finalists])}
    assert rows[40, True]["val_acc"] == pytest.approx(0.973) and rows[40, True]["seeds"] == [0, 1]
    assert rows[40, True]["seconds"] == 240 and rows[20, True]["seeds"] == [0]
    assert choose([lucky, *finalists], limit_seconds=300) == Candidate(epochs=30, tta=True)  # 97.4% against 97.3%
    with pytest.raises(ValueError, match="within 145"):  # a lucky single seed does not stand in for the finalists
        choose([lucky, *finalists], limit_seconds=145)


def test_the_retimed_sentence_compares_each_training_with_itself():
    first = entry(40, 0.97, 0.975, 100, 110)
    again = dict(first, shifts_scored={"val_acc": 0.97, "val_acc_tta": 0.975,
                                       "phases": {"wall": 150.0, "score_tta": 2.0, "score_tta_shifts": 12.0}})
    other = dict(again, shifts_scored=dict(again["shifts_scored"], val_acc=0.96))  # not the same training: left out
    assert speedrun.retimed_sentence([first]) == ""
    sentence = speedrun.retimed_sentence([first, again, other])
    assert "The 1 trainings" in sentence and "110 s then 138 s" in sentence and "+25% to +25%" in sentence


def test_tta_with_shifts_is_a_candidate_only_where_every_seed_was_scored_with_it():
    shifted = [entry(40, 0.970, 0.975, 100, 110, shifts=(0.980, 120)), entry(40, 0.970, 0.975, 100, 110, seed=1, shifts=(0.978, 125))]
    half = [entry(30, 0.970, 0.972, 90, 100, shifts=(0.990, 105)), entry(30, 0.970, 0.972, 90, 100, seed=1)]
    rows = speedrun.search_rows(shifted + half)
    labels = {row["label"]: row for row in rows}
    assert labels["simple_cnn w32, 40 epochs, bf16, TTA with 1-pixel shifts"]["val_acc"] == pytest.approx(0.979)
    assert labels["simple_cnn w32, 40 epochs, bf16, TTA with 1-pixel shifts"]["seconds"] == 125
    assert not any(row["candidate"].epochs == 30 and row["candidate"].tta_shifts for row in rows)
    assert choose(shifted + half) == Candidate(epochs=40, tta_shifts=True)
    assert choose(shifted + half, limit_seconds=122) == Candidate(epochs=40, tta=True)  # shifts cost their seconds


def test_the_recipes_are_what_the_stored_search_chose():
    entries = read_candidates()  # results/speedrun/candidates.json
    assert choose(entries, precision="bf16") == SPEEDRUN and choose(entries, precision="fp32") == SPEEDRUN_FP32
    assert {entry["machine"]["cpu"] for entry in entries} == {entries[0]["machine"]["cpu"]}  # one machine's seconds


def test_the_fields_added_later_leave_the_names_of_earlier_records_as_they_were():
    assert speedrun.run_name(Candidate(epochs=40), 0, get_profile("cpu")) == "speedrun-bloodmnist-cpu-s0-0a9bceab57"
    assert (speedrun.EARLIER / "speedrun-bloodmnist-cpu-s0-0a9bceab57.json").is_file()
    changed = Candidate(epochs=40, lr=4e-3)
    assert speedrun.run_name(changed, 0, get_profile("cpu")) != "speedrun-bloodmnist-cpu-s0-0a9bceab57"
    assert changed.label == "simple_cnn w32, 40 epochs, bf16, lr 0.004, TTA"
    sgd = Candidate(epochs=40, optimizer="sgd", lr=0.1, weight_decay=5e-4)
    cfg = sgd.train_config(0, get_profile("cpu"))
    assert (cfg.optimizer, cfg.lr, cfg.weight_decay) == ("sgd", 0.1, 5e-4)
    assert sgd.label == "simple_cnn w32, 40 epochs, bf16, lr 0.1, sgd, weight decay 0.0005, TTA"
    for stored in (speedrun.STORED / "candidates.json", *speedrun.STORED.glob("speedrun-*.json")):
        # every stored entry still hashes to its name
        records = json.loads(stored.read_text()).get("entries") or [json.loads(stored.read_text())]
        for record in records:
            name = record.get("name") or record["run"]
            profile = get_profile(record["profile"])
            assert speedrun.run_name(Candidate(**record["recipe"]), record["seed"], profile) == name


def test_the_targets_sentence_says_by_how_much_a_target_is_missed():
    def record(acc, seconds):
        return {"test": {"acc": acc}, "wall_seconds": seconds}
    met = speedrun.targets_sentence([record(0.978, 120), record(0.976, 140)])
    assert "97.70%" in met and "meets the 97.5% target" in met and "140 s, within the 150 s limit" in met
    assert "not within the 90 s aim" in met
    missed = speedrun.targets_sentence([record(0.970, 160), record(0.972, 100)])
    assert "misses the 97.5% target by 0.40 points" in missed and "over the 150 s limit by 10 s" in missed


def test_without_bf16_hardware_the_speedrun_trains_the_float32_recipe(tmp_path, monkeypatch):
    monkeypatch.setattr(speedrun, "native_bf16", lambda: False)
    speedrun.main(["--out", str(tmp_path)])
    (record,) = [json.loads(p.read_text()) for p in tmp_path.glob("speedrun-*.json")]
    assert record["recipe"] == dataclasses.asdict(SPEEDRUN_FP32) and record["config"]["amp"] == "off"


def test_versus_standard_times_both_recipes_in_one_process(tmp_path):
    record = speedrun.versus_standard(get_profile("smoke"), tmp_path, recipe=SPEEDRUN_FP32)
    assert record["speedrun"]["recipe"] == dataclasses.asdict(SPEEDRUN_FP32)
    assert record["standard"]["config"]["epochs"] == 1 and record["standard"]["config"]["amp"] == "auto"
    assert record["standard"]["seconds"] > 0 and record["speedrun"]["seconds"] > 0 and record["threads"] >= 1
    assert json.loads((tmp_path / "versus_standard.json").read_text())["speedup"] == record["speedup"]
    assert speedrun.superseded_note(record) == ""  # the current float32 recipe
    earlier = dict(record, speedrun=dict(record["speedrun"], recipe=dataclasses.asdict(dataclasses.replace(SPEEDRUN_FP32, epochs=45))))
    assert "since superseded" in speedrun.superseded_note(earlier)
    with pytest.raises(FileExistsError, match="--force"):
        speedrun.versus_standard(get_profile("smoke"), tmp_path)


def test_the_committed_speedruns_are_what_their_predictions_give_and_the_docs_say_so():
    from utils.experiment import check_record_metrics
    page = (speedrun.REPO_ROOT / "docs" / "speedrun.md").read_text()  # the speedrun's page, linked from the README
    assert speedrun.readme_markdown() in page
    for precision in speedrun.PRECISIONS:
        records = speedrun.read_speedruns(recipe=speedrun.recipe_for(precision))  # results/speedrun
        assert [r["seed"] for r in records] == list(range(5))
        for record in records:
            check_record_metrics(record, speedrun.STORED / f"{record['run']}.npz", intervals=("test",))
            assert record["seconds"]["data"] > 0 and record["seconds"][f"score_{speedrun.tta_scheme(Candidate(**record['recipe']))}"] > 0
            assert record["config"]["amp"] == ("bf16" if precision == "bf16" else "off")
        assert speedrun.targets_sentence(records) in page
    for cpu_folder, recipe, records in speedrun.other_cpu_records():  # results/speedrun/other-cpus/<cpu>/
        for record in records:
            check_record_metrics(record, cpu_folder / f"{record['run']}.npz", intervals=("test",))
        assert speedrun.targets_sentence(records) in page


def test_seeds_timed_on_another_cpu_are_shown_with_their_cpu_named(tmp_path):
    other = tmp_path / "other-cpus" / "some-cpu"
    other.mkdir(parents=True)
    for record in speedrun.read_speedruns(recipe=SPEEDRUN_FP32)[:2]:
        (other / f"{record['run']}.json").write_text(json.dumps(dict(record, cpu="Some CPU", native_bf16=False,
                                                                      wall_seconds=160.0)))
    ((folder, recipe, records),) = speedrun.other_cpu_records(tmp_path)
    assert folder == other and recipe == SPEEDRUN_FP32 and [r["seed"] for r in records] == [0, 1]
    earlier = dataclasses.replace(SPEEDRUN_FP32, epochs=45)
    (other / "speedrun-earlier.json").write_text(json.dumps(dict(records[0], recipe=dataclasses.asdict(earlier),
                                                                 created="2000-01-01T00:00:00Z")))
    (other / "speedrun-smoke.json").write_text(json.dumps(dict(records[0], profile="smoke")))  # a test's, not shown
    (_, first, (only,)), (_, second, _) = speedrun.other_cpu_records(tmp_path)
    assert (first, second) == (earlier, SPEEDRUN_FP32)
    assert "an earlier, no longer current float32 recipe" in speedrun.other_cpu_sentence(first, [only])
    assert " over 1 seed in " in speedrun.other_cpu_sentence(first, [only])
    for path in ("speedrun-earlier.json", "speedrun-smoke.json"):
        (other / path).unlink()
    sentence = speedrun.other_cpu_sentence(recipe, records)
    assert sentence.startswith("On Some CPU (2 threads, bfloat16 in hardware: no;") and "the float32 recipe" in sentence
    assert "its longest seed is over the 150 s limit by 10 s" in sentence
    page = speedrun.readme_markdown(tmp_path)
    assert "Measured on another CPU as well (" in page and " on Some CPU (2 threads" in page
    assert speedrun.targets_sentence(records) in page
    from utils.report import speedrun_finding
    assert speedrun_finding(tmp_path) is None  # no seeds on the search's CPU: no finding
    searched = speedrun.read_speedruns(recipe=SPEEDRUN_FP32)
    for record in searched:
        (tmp_path / f"{record['run']}.json").write_text(json.dumps(record))
    finding = speedrun_finding(tmp_path)
    assert finding.startswith(f"A speedrun on two CPU cores ({searched[0]['cpu']}, {searched[0]['threads']} threads)")
    mean = sum(r["test"]["acc"] for r in records) / 2
    assert finding.endswith(f" Timed on another CPU too: float32 {100 * mean:.2f}% over 2 seeds on Some CPU (2 threads), "
                            "longest seed 160 s, over the limit.")


def test_progressive_resizing_trains_the_first_epochs_small_and_always_ends_at_full_size():
    profile = dataclasses.replace(get_profile("smoke"), epochs=None)  # the smoke subsets, the candidate's epochs
    sizes = []

    def record(module, inputs):
        if module.training:
            sizes.append(inputs[0].shape[-1])

    real_build = speedrun.build_model

    def recording_build(*args, **kwargs):
        model = real_build(*args, **kwargs)
        model.register_forward_pre_hook(record)
        return model

    import unittest.mock
    with unittest.mock.patch.object(speedrun, "build_model", recording_build):
        speedrun.train_and_score(Candidate(epochs=3, low_res=14, low_res_epochs=2, tta=False), 0, profile,
                                 splits=("val",))
        steps = sizes.count(28)  # one epoch's
        assert steps > 0 and sizes == [14] * 2 * steps + [28] * steps
        sizes.clear()
        speedrun.train_and_score(Candidate(epochs=2, low_res=14, low_res_epochs=5, tta=False), 0, profile,
                                 splits=("val",))
        assert sizes == [14] * steps + [28] * steps  # the last epoch sees the full image whatever low_res_epochs says
    assert Candidate(epochs=3, low_res=14, low_res_epochs=2).label.endswith("the first 2 at 14 px, TTA")

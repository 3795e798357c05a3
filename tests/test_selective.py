import json

import numpy as np
import pytest

from utils.selective import (agreement_score, model_study, probability_metrics, risk_coverage, selective_accuracy,
                             threshold_for_coverage, write_selective_studies)
from tests.conftest import store_record


def test_risk_coverage_against_a_hand_computed_case():
    # Scores ranked high to low; errors at ranks 2 and 5: prefix risks 0, 1/2, 1/3, 1/4, 2/5.
    curve = risk_coverage([1, 0, 1, 1, 0], [0.9, 0.8, 0.7, 0.6, 0.5])
    assert curve["coverage"].tolist() == [0.2, 0.4, 0.6, 0.8, 1.0]
    assert curve["risk"] == pytest.approx([0, 1 / 2, 1 / 3, 1 / 4, 2 / 5])
    assert curve["aurc"] == pytest.approx((0 + 1 / 2 + 1 / 3 + 1 / 4 + 2 / 5) / 5)


def test_tied_scores_are_accepted_together():
    curve = risk_coverage([1, 0, 1, 1], [0.9, 0.9, 0.5, 0.5])
    assert curve["coverage"].tolist() == [0.5, 1.0] and curve["risk"].tolist() == [0.5, 0.25]
    assert curve["aurc"] == pytest.approx(0.5 * 0.5 + 0.5 * 0.25)


def test_threshold_is_chosen_on_one_set_and_scored_on_another():
    t = threshold_for_coverage([0.9, 0.8, 0.7, 0.6, 0.5], 0.6)
    assert t == 0.7
    scored = selective_accuracy([1, 1, 0, 0], [0.95, 0.75, 0.65, 0.2], t)
    assert scored == {"coverage": 0.5, "acc": 1.0, "n_accepted": 2}


def test_agreement_counts_votes_then_breaks_ties_by_probability():
    a = np.array([[0.6, 0.4], [0.9, 0.1]])
    b = np.array([[0.4, 0.6], [0.8, 0.2]])
    score = agreement_score([a, b, a])
    assert score[0] == pytest.approx(2 + (0.6 + 0.4 + 0.6) / 3) and score[1] == pytest.approx(3 + (0.9 + 0.8 + 0.9) / 3)


def test_probability_metrics_use_sklearn_log_loss():
    m = probability_metrics(np.array([0, 1]), np.array([[0.8, 0.2], [0.4, 0.6]], dtype=np.float32))
    assert m["acc"] == 1.0 and m["nll"] == pytest.approx(-(np.log(0.8) + np.log(0.6)) / 2, rel=1e-6)


def _stored_seeds(tmp_path, n_seeds=3, n=200, classes=4):
    rng = np.random.default_rng(0)
    labels = {s: rng.integers(0, classes, n) for s in ("val", "test")}
    records = []
    for seed in range(n_seeds):
        record = store_record(tmp_path / "runs", f"m-s{seed}", seed=seed, profile="full", config={"seed": seed})
        arrays = {}
        for s, y in labels.items():
            logits = rng.normal(size=(n, classes)) + 3 * np.eye(classes)[y] * (rng.random(n) < 0.8)[:, None]
            p = np.exp(logits)
            arrays[f"{s}_probs"], arrays[f"{s}_labels"] = (p / p.sum(1, keepdims=True)).astype(np.float32), y
        np.savez(record["predictions"], **arrays)
        records.append(record)
    return records


def test_ensemble_and_selective_study_from_stored_predictions(tmp_path):
    records = _stored_seeds(tmp_path)
    study = model_study(records)
    assert set(study["predictors"]) == {r["run"] for r in records} | {"ensemble"}
    ensemble = study["predictors"]["ensemble"]
    assert set(ensemble["selective"]) == {"max_prob", "max_prob_temperature", "agreement"}
    at95 = ensemble["selective"]["max_prob"]["at_coverage"]["0.95"]
    assert at95["val"]["coverage"] >= 0.95 and 0 < at95["test"]["coverage"] <= 1
    # Averaging seeds of independent noise beats the average seed's NLL.
    singles = [study["predictors"][r["run"]]["metrics"]["test"]["nll"] for r in records]
    assert ensemble["metrics"]["test"]["nll"] < np.mean(singles)
    paths = write_selective_studies(records, root=tmp_path / "deployment")
    stored = json.loads(paths["simple_cnn"].read_text())
    assert stored["scoring"]["git_commit"] and stored["seed_spread_test"]["acc"]["std"] is not None


def test_study_refuses_seeds_scored_on_different_images(tmp_path):
    records = _stored_seeds(tmp_path, n_seeds=2)
    with np.load(records[1]["predictions"]) as npz:
        arrays = dict(npz)
    arrays["test_labels"] = np.roll(arrays["test_labels"], 1)
    np.savez(records[1]["predictions"], **arrays)
    with pytest.raises(ValueError, match="labels differ"):
        model_study(records)


def test_the_released_checkpoints_follow_one_name():
    """RELEASED_PROFILE picks the runs; re-pointed to "cpu" it releases the cpu-profile checkpoints instead."""
    from tests.conftest import REPO
    from utils.release import RELEASED_PROFILE, released_records
    folder = REPO / "results" / "runs"
    for profile in (RELEASED_PROFILE, "cpu"):
        records = released_records(folder, profile=profile)
        assert records and all(r["profile"] == profile and r["dataset"] == "bloodmnist" for r in records)
        assert all((folder / f"{r['run']}.pt").is_file() for r in records)
        assert "deep_efficientnet" in {r["model"] for r in records}

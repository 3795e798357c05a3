"""Seed ensembles and selective prediction ("knows when to abstain") from stored val/test probabilities.

Everything here reads a run's ``.npz`` (no inference): a temperature or a threshold is chosen on validation
and scored once on test. ``python -m utils.selective`` writes ``results/deployment/selective/<model>-<profile>.json``
for each released model (``utils.release``); ``utils.predict`` abstains below the threshold stored there.

Risk-coverage: accept the images whose score is at least t; coverage is the fraction accepted, risk the error
rate among them. Tied scores are accepted together, so the curve has one point per distinct score, and AURC is
the step integral sum_j (coverage_j - coverage_{j-1}) * risk_j (Geifman et al., 2019, where it equals the mean
risk over the n prefixes when no scores tie).
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import accuracy_score, log_loss

from .metrics import apply_temperature, expected_calibration_error, fit_temperature
from .release import DEPLOYMENT_ROOT, RELEASED_PROFILE, by_model, provenance, released_records
from .storage import derived_json, write_text

COVERAGES = (0.90, 0.95)
# The coverage whose validation threshold ``predict`` abstains below.
PREDICT_COVERAGE = 0.95
CURVE_POINTS = 400  # stored points of each risk-coverage curve (thinned evenly; AURC uses all of them)


def risk_coverage(correct, score) -> dict:
    """Coverage, risk and threshold at each distinct score (highest first), and the area under the curve."""
    correct, score = np.asarray(correct, dtype=bool), np.asarray(score, dtype=np.float64)
    order = np.argsort(-score, kind="stable")
    errors = np.cumsum(~correct[order])
    sorted_score = score[order]
    # The last index of each run of tied scores: all of a tie is accepted together.
    last = np.flatnonzero(np.r_[sorted_score[1:] != sorted_score[:-1], True])
    accepted = last + 1
    coverage, risk = accepted / len(score), errors[last] / accepted
    aurc = float(np.sum(np.diff(np.r_[0.0, coverage]) * risk))
    return {"coverage": coverage, "risk": risk, "threshold": sorted_score[last], "aurc": aurc}


def threshold_for_coverage(score, coverage: float) -> float:
    """The highest t that accepts at least ``coverage`` of these (validation) scores."""
    ranked = np.sort(np.asarray(score, dtype=np.float64))[::-1]
    return float(ranked[max(1, math.ceil(coverage * len(ranked) - 1e-9)) - 1])


def selective_accuracy(correct, score, threshold: float) -> dict:
    """Coverage and accuracy of the images with score >= threshold."""
    correct, accept = np.asarray(correct, dtype=bool), np.asarray(score) >= threshold
    return {"coverage": float(accept.mean()), "acc": float(correct[accept].mean()) if accept.any() else float("nan"),
            "n_accepted": int(accept.sum())}


def probability_metrics(labels, probs) -> dict:
    """Accuracy, NLL (scikit-learn's log_loss) and ECE of one set of probabilities."""
    probs = np.asarray(probs, dtype=np.float64)
    probs = probs / probs.sum(1, keepdims=True)  # stored float32 rows sum to 1 only to ~1e-7
    return {"acc": float(accuracy_score(labels, probs.argmax(1))),
            "nll": float(log_loss(labels, probs, labels=np.arange(probs.shape[1]))),
            "ece": expected_calibration_error(labels, probs)}


def agreement_score(member_probs: list[np.ndarray]) -> np.ndarray:
    """How many members vote for the ensemble's class, ties broken by the ensemble's probability of it
    (votes + p: p is at most 1 and reaches 1 only when every member votes for the class)."""
    mean = np.mean(member_probs, 0)
    pred = mean.argmax(1)
    votes = np.sum([p.argmax(1) == pred for p in member_probs], 0)
    return votes + mean.max(1)


def selective_scores(val: dict, test: dict, labels: dict) -> dict:
    """For each named score (``val``/``test``: name -> (probs, score)): the risk-coverage curve and AURC on test
    (AURC on val beside it), and at each of ``COVERAGES`` the threshold chosen on val, scored once on test."""
    out = {}
    for name in val:
        (val_probs, val_score), (test_probs, test_score) = val[name], test[name]
        val_correct, test_correct = val_probs.argmax(1) == labels["val"], test_probs.argmax(1) == labels["test"]
        curve = risk_coverage(test_correct, test_score)
        keep = np.unique(np.linspace(0, len(curve["coverage"]) - 1, min(CURVE_POINTS, len(curve["coverage"]))).astype(int))
        at = {}
        for c in COVERAGES:
            t = threshold_for_coverage(val_score, c)
            at[f"{c:.2f}"] = {"threshold": t, "val": selective_accuracy(val_correct, val_score, t),
                              "test": selective_accuracy(test_correct, test_score, t)}
        out[name] = {"aurc_test": curve["aurc"], "aurc_val": risk_coverage(val_correct, val_score)["aurc"],
                     "acc_test_full_coverage": float(test_correct.mean()), "at_coverage": at,
                     "curve_test": {k: curve[k][keep].tolist() for k in ("coverage", "risk", "threshold")}}
    return out


def load_split_probs(record: dict) -> dict:
    with np.load(record["predictions"]) as npz:
        return {s: (npz[f"{s}_probs"].astype(np.float64), npz[f"{s}_labels"].reshape(-1)) for s in ("val", "test")}


def model_study(records: list[dict]) -> dict:
    """One released model: each seed alone, the mean of the seeds' probabilities (with two or more), each
    before and after temperature scaling (T fitted on val), and the selective-prediction scores."""
    preds = [load_split_probs(r) for r in records]
    labels = {s: preds[0][s][1] for s in ("val", "test")}
    for record, p in zip(records, preds):
        if any(not np.array_equal(p[s][1], labels[s]) for s in labels):
            raise ValueError(f"{record['run']}: its stored labels differ from {records[0]['run']}'s (other data?)")
    probs = {r["run"]: {s: p[s][0] for s in labels} for r, p in zip(records, preds)}
    members = list(probs)
    if len(members) > 1:
        probs["ensemble"] = {s: np.mean([probs[m][s] for m in members], 0) for s in labels}
    out = {"runs": members, "seeds": [r["seed"] for r in records], "n": {s: int(len(v)) for s, v in labels.items()},
           "predictors": {}}
    for name, p in probs.items():
        t = fit_temperature(p["val"], labels["val"])
        scaled = {s: apply_temperature(p[s], t) for s in labels}
        val_scores = {"max_prob": (p["val"], p["val"].max(1)),
                      "max_prob_temperature": (scaled["val"], scaled["val"].max(1))}
        test_scores = {"max_prob": (p["test"], p["test"].max(1)),
                       "max_prob_temperature": (scaled["test"], scaled["test"].max(1))}
        if name == "ensemble":
            val_scores["agreement"] = (p["val"], agreement_score([probs[m]["val"] for m in members]))
            test_scores["agreement"] = (p["test"], agreement_score([probs[m]["test"] for m in members]))
        out["predictors"][name] = {
            "temperature": t,
            "metrics": {s: probability_metrics(labels[s], p[s]) for s in labels},
            "metrics_temperature": {s: probability_metrics(labels[s], scaled[s]) for s in labels},
            "selective": selective_scores(val_scores, test_scores, labels)}
    singles = [out["predictors"][m]["metrics"]["test"] for m in members]
    out["seed_spread_test"] = {k: {"mean": float(np.mean([s[k] for s in singles])),
                                   "std": float(np.std([s[k] for s in singles], ddof=1)) if len(singles) > 1 else None}
                               for k in ("acc", "nll", "ece")}
    return out


def study_path(model: str, profile: str = RELEASED_PROFILE, root: Path = DEPLOYMENT_ROOT) -> Path:
    return Path(root) / "selective" / f"{model}-{profile}.json"


def write_selective_studies(records: list[dict] | None = None, root: Path = DEPLOYMENT_ROOT) -> dict[str, Path]:
    """``model_study`` of each released model, written beside the runs with its provenance."""
    records = released_records() if records is None else records
    written = {}
    for model, group in by_model(records).items():
        started = time.time()
        study = {"model": model, "profile": group[0]["profile"], "dataset": group[0]["dataset"],
                 "coverages": list(COVERAGES), "predict_coverage": PREDICT_COVERAGE, **model_study(group)}
        study["scoring"] = provenance(started)
        # Derived from stored predictions: written rounded, so two CPUs write the same numbers (storage.round_derived).
        written[model] = write_text(study_path(model, group[0]["profile"], root), derived_json(study))
    return written


def predict_threshold(run: str, root: Path = DEPLOYMENT_ROOT) -> float | None:
    """The stored validation threshold of ``run``'s maximum probability at ``PREDICT_COVERAGE``, from whichever
    stored study holds the run (None when none does)."""
    for path in sorted((Path(root) / "selective").glob("*.json")):
        predictor = json.loads(path.read_text())["predictors"].get(run)
        if predictor:
            return predictor["selective"]["max_prob"]["at_coverage"][f"{PREDICT_COVERAGE:.2f}"]["threshold"]
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.selective", description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    for model, path in write_selective_studies().items():
        print(json.dumps({"model": model, "path": str(path)}))


if __name__ == "__main__":
    main()

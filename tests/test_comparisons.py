"""Paired comparisons from stored predictions (utils.comparisons) and their verdict rule (issue #33)."""
import numpy as np
import pytest
from scipy import stats

from utils.comparisons import Pair, compare, mcnemar, verdict

PAIR = Pair("attention", "Tiny", "SE", "none", "Tiny + SE")


def _record(tmp_path, label, seed, correct_test, correct_val):
    """A run record whose stored predictions get exactly ``correct_*`` right (2 classes)."""
    path = tmp_path / f"{label}-s{seed}.npz"
    arrays = {}
    for split, correct in (("test", correct_test), ("val", correct_val)):
        labels = np.zeros(len(correct), dtype=np.int64)
        probs = np.where(np.asarray(correct)[:, None], [[0.9, 0.1]], [[0.1, 0.9]]).astype(np.float32)
        arrays.update({f"{split}_probs": probs, f"{split}_labels": labels})
    np.savez(path, **arrays)
    return {"label": label, "seed": seed, "predictions": str(path), "params": 10, "flops": 2e6,
            "val": {"acc": float(np.mean(correct_val))}, "test": {"acc": float(np.mean(correct_test))}}


def _runs(tmp_path, gains, n=200):
    """Per seed, a base run right on the first 150 images and a variant right on 150 + gain of them."""
    records = []
    for seed, gain in enumerate(gains):
        base = np.arange(n) < 150
        variant = np.arange(n) < 150 + gain
        records += [_record(tmp_path, "none", seed, base, base), _record(tmp_path, "SE", seed, variant, base)]
    return records


@pytest.mark.parametrize("gains, expected", [((4, 6, 5), "helps"), ((-4, -6, -5), "hurts"),
                                             ((4, -3, 1), "no effect detected")])
def test_the_verdict_follows_the_seed_interval_of_the_test_difference(tmp_path, gains, expected):
    row = compare(PAIR, _runs(tmp_path, gains), (0, 1, 2))
    diffs = [100 * g / 200 for g in gains]
    assert [s["test_diff_points"] for s in row["per_seed"]] == pytest.approx(diffs)
    low, high = stats.t.interval(0.95, len(diffs) - 1, np.mean(diffs), stats.sem(diffs))
    assert row["test_diff_interval"] == pytest.approx((low, high))
    assert row["verdict"].startswith(expected)
    if expected == "no effect detected":
        assert f"[{low:+.2f}, {high:+.2f}]" in row["verdict"]


def test_a_comparison_missing_seeds_is_pending_and_says_how_many():
    assert verdict((0.1, 0.5), 2, 3) == "pending (2 of 3 seeds)"
    assert verdict(None, 1, 1).startswith("no verdict")


def test_pending_rows_pair_only_the_seeds_both_sides_have(tmp_path):
    records = [r for r in _runs(tmp_path, (4, 6, 5)) if not (r["label"] == "SE" and r["seed"] == 2)]
    row = compare(PAIR, records, (0, 1, 2))
    assert row["seeds_paired"] == 2 and row["missing_seeds"] == [2] and row["verdict"] == "pending (2 of 3 seeds)"
    assert row["base_test_acc_by_seed"].keys() == {"0", "1", "2"}


def test_mcnemar_is_the_exact_binomial_test_on_the_discordant_images():
    variant = np.array([True] * 10 + [False] * 2 + [True] * 50)
    base = np.array([False] * 10 + [True] * 2 + [True] * 50)
    result = mcnemar(variant, base)
    assert (result["variant_only_right"], result["base_only_right"]) == (10, 2)
    assert result["p"] == pytest.approx(stats.binomtest(10, 12, 0.5).pvalue)


def test_the_stored_simplecnn_against_deepefficientnet_pair_is_the_one_the_issue_recomputed(monkeypatch):
    # Issue #33 recomputed it by hand from results/runs: +0.47/+0.50/+0.23 points, 131 against 90 images, p = 0.007.
    from tests.conftest import REPO
    from utils.summaries import build_summary
    monkeypatch.chdir(REPO)
    row = next(r for r in build_summary("paired", "full", compute=False)["rows"]
               if r["name"] == "SimpleCNN vs DeepEfficientNet")
    assert [round(s["test_diff_points"], 2) for s in row["per_seed"]] == [0.47, 0.5, 0.23]
    mc = row["mcnemar_test_pooled"]
    assert (mc["variant_only_right"], mc["base_only_right"], round(mc["p"], 3)) == (131, 90, 0.007)
    assert row["verdict"] == "ahead"

"""Paired comparisons of two models from their stored predictions, and the one verdict rule every comparison gets.

Two rows of a study are compared seed by seed (the runs that share a seed share the data order and the
initialisation stream, so their difference is paired): per seed, the difference in validation and in official test
accuracy; over seeds, the mean difference with a Student t interval (``scipy.stats.ttest_1samp``); and on the
pooled test predictions of every paired seed, an exact McNemar test (``scipy.stats.binomtest`` on the images that
exactly one of the two models gets right).

The verdict rule was fixed before any test number was read (issue #33), the same for every row:
"helps" where the 95% seed interval of the test difference lies above 0, "hurts" where it lies below, else
"no effect detected, interval [a, b] points"; and "pending (k of n seeds)" while fewer than the planned seeds
are paired ("no verdict" where a profile plans one seed). Validation differences are reported beside it; they choose nothing here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Pair:
    """One comparison: ``variant`` minus ``base``, both rows (labels) of stored records."""
    group: str      # "attention", "recipe" (an ingredient of DeepEfficientNet's recipe) or "headline"
    backbone: str   # what the two share ("SimpleCNN", "EfficientNet-B0", ...), or "" for headline pairs
    variant: str    # the record label whose accuracy comes first in the difference
    base: str       # the record label it is compared with
    name: str       # how tables name the comparison
    shown: str = ""  # how a figure labels the variant, where its record label says something else ("recipe")


def _correct(record: dict, split: str) -> np.ndarray:
    with np.load(record["predictions"]) as npz:
        return npz[f"{split}_probs"].argmax(1) == npz[f"{split}_labels"]


def seed_interval(differences: list[float]) -> tuple[float, float] | None:
    """The t interval of the mean over seeds (None with fewer than two seeds, where there is no spread)."""
    if len(differences) < 2:
        return None
    if np.ptp(differences) == 0:  # no spread: the interval is the point (scipy would return nan)
        return float(differences[0]), float(differences[0])
    low, high = stats.ttest_1samp(differences, 0.0).confidence_interval(CONFIDENCE)
    return float(low), float(high)


def mcnemar(variant_correct: np.ndarray, base_correct: np.ndarray) -> dict:
    """Exact McNemar test: of the images exactly one model gets right, is the split 50/50?"""
    variant_only = int(np.sum(variant_correct & ~base_correct))
    base_only = int(np.sum(base_correct & ~variant_correct))
    discordant = variant_only + base_only
    p = stats.binomtest(variant_only, discordant, 0.5).pvalue if discordant else 1.0
    return {"variant_only_right": variant_only, "base_only_right": base_only, "p": float(p)}


# What the two ends of the rule are called: attention "helps" or "hurts" its backbone; of two different models (the
# headline pairs) the first is "ahead" or "behind".
VERDICT_WORDS = {"attention": ("helps", "hurts"), "recipe": ("helps", "hurts"), "headline": ("ahead", "behind")}


def verdict(test_interval_points: tuple[float, float] | None, paired: int, planned: int,
            words: tuple[str, str] = VERDICT_WORDS["attention"]) -> str:
    """The rule of the module's docstring, on the test difference's seed interval in points."""
    if planned < 2:
        return "no verdict: one seed planned, no interval"
    if paired < planned or test_interval_points is None:
        return f"pending ({paired} of {planned} seeds)"
    low, high = test_interval_points
    if low > 0:
        return words[0]
    if high < 0:
        return words[1]
    return f"no effect detected, interval [{low:+.2f}, {high:+.2f}] points"


def compare(pair: Pair, records: list[dict], planned_seeds: tuple[int, ...]) -> dict:
    """``pair``'s variant minus base over the seeds both have stored (in points: accuracy x 100), with the verdict."""
    by_label: dict[str, dict[int, dict]] = {}
    for record in records:
        by_label.setdefault(record["label"], {})[record["seed"]] = record
    variant, base = by_label.get(pair.variant, {}), by_label.get(pair.base, {})
    seeds = [s for s in planned_seeds if s in variant and s in base]
    per_seed, pooled = [], {"variant": [], "base": []}
    for seed in seeds:
        v, b = variant[seed], base[seed]
        per_seed.append({"seed": seed, "variant_val_acc": v["val"]["acc"], "base_val_acc": b["val"]["acc"],
                         "variant_test_acc": v["test"]["acc"], "base_test_acc": b["test"]["acc"],
                         "val_diff_points": 100 * (v["val"]["acc"] - b["val"]["acc"]),
                         "test_diff_points": 100 * (v["test"]["acc"] - b["test"]["acc"])})
        pooled["variant"].append(_correct(v, "test"))
        pooled["base"].append(_correct(b, "test"))
    row = {"group": pair.group, "backbone": pair.backbone, "name": pair.name, "variant": pair.variant,
           "base": pair.base, "variant_shown": pair.shown or pair.variant,
           "seeds_planned": len(planned_seeds), "seeds_paired": len(seeds), "per_seed": per_seed,
           # Every stored run of each side, paired or not (the figure shows them all).
           "variant_test_acc_by_seed": {str(s): r["test"]["acc"] for s, r in sorted(variant.items())},
           "base_test_acc_by_seed": {str(s): r["test"]["acc"] for s, r in sorted(base.items())}}
    some = next(iter(variant.values()), None), next(iter(base.values()), None)
    for key, record in zip(("variant", "base"), some):
        if record is not None:
            row[f"{key}_params"], row[f"{key}_mflops"] = record["params"], record["flops"] / 1e6
    for split in ("val", "test"):
        diffs = [s[f"{split}_diff_points"] for s in per_seed]
        row[f"{split}_diff_mean"] = float(np.mean(diffs)) if diffs else None
        row[f"{split}_diff_interval"] = seed_interval(diffs)
    row["mcnemar_test_pooled"] = (mcnemar(np.concatenate(pooled["variant"]), np.concatenate(pooled["base"]))
                                  if seeds else None)
    row["verdict"] = verdict(row["test_diff_interval"], len(seeds), len(planned_seeds), VERDICT_WORDS[pair.group])
    row["missing_seeds"] = [s for s in planned_seeds if s not in seeds]
    return row


def format_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def p_clause(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def format_comparisons(rows: list[dict]) -> str:
    """One line per comparison: seeds, mean test difference with its interval, pooled McNemar, verdict."""
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{'':<{width}}{'seeds':>7}{'d val':>8}{'d test':>8}{'95% seed interval':>20}{'McNemar b/c':>13}"
             f"{'p':>8}  verdict (rule fixed before test)"]
    for r in rows:
        interval = r["test_diff_interval"]
        mc = r["mcnemar_test_pooled"]
        lines.append(
            f"{r['name']:<{width}}{r['seeds_paired']:>3} of {r['seeds_planned']}"
            + (f"{r['val_diff_mean']:>+8.2f}{r['test_diff_mean']:>+8.2f}" if r["seeds_paired"] else f"{'':>16}")
            + (f"{f'[{interval[0]:+.2f}, {interval[1]:+.2f}]':>20}" if interval else f"{'':>20}")
            + (f"{mc['variant_only_right']:>7}/{mc['base_only_right']:<5}{format_p(mc['p']):>8}" if mc else f"{'':>21}")
            + f"  {r['verdict']}")
    return "\n".join(lines) + "\n(differences in accuracy points, variant minus base; b/c: test images only the " \
                              "variant / only the base gets right, pooled over the paired seeds)"


def describe_evidence(rows: list[dict]) -> list[str]:
    """What the comparisons do and do not show, one sentence per row, from the rows alone (notebook 04 and the
    report print these, so no number in them is typed by hand)."""
    sentences = []
    for r in rows:
        if r["verdict"].startswith(("pending", "no verdict")):
            have = (f"{r['seeds_paired']} paired seed{'s' if r['seeds_paired'] != 1 else ''} "
                    f"(mean test difference {r['test_diff_mean']:+.2f} points)" if r["seeds_paired"] else "no paired seed")
            wait = (f"the rule waits for all {r['seeds_planned']}" if r["seeds_planned"] > 1 else
                    "this profile plans one seed; the full profile's seeds decide")
            sentences.append(f"{r['name']}: {r['verdict']}; with {have} it shows nothing yet ({wait}).")
            continue
        low, high = r["test_diff_interval"]
        mc = r["mcnemar_test_pooled"]
        pooled = (f"pooled over seeds, {mc['variant_only_right']} test images only the first gets right against "
                  f"{mc['base_only_right']} only the second (exact McNemar {p_clause(mc['p'])})")
        if r["verdict"] in {w for words in VERDICT_WORDS.values() for w in words}:
            sentences.append(f"{r['name']}: {r['verdict']}, {r['test_diff_mean']:+.2f} test points over "
                             f"{r['seeds_paired']} seeds, interval [{low:+.2f}, {high:+.2f}]; {pooled}.")
        else:
            sentences.append(f"{r['name']}: no effect detected over {r['seeds_paired']} seeds (mean "
                             f"{r['test_diff_mean']:+.2f}, interval [{low:+.2f}, {high:+.2f}] points): an effect inside "
                             f"that interval cannot be told from seed noise; {pooled}.")
    return sentences

"""`python -m utils.summaries [--profile P] [--check]`: every ``results/<study>/summary.json`` from the stored
records alone (``results/runs/``, and the stored evaluations beside them in ``results/tta/`` and
``results/road/``), and the datasets' descriptions (``results/eda/``) from the data files.

A summary is the one place that owns its study's schema, the validation-chosen winner (``"chosen_on": "val"``),
its targets and verdicts; notebooks show it and the report prints it. Rebuilt from the same records, a summary
is byte-identical, so ``make summaries`` on a clone reproduces the committed files. Nothing here trains or
measures time: a run or evaluation that is missing is named with the command that makes it
(``python -m utils.sweep``, which plans, trains what is missing, then writes these).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .cli import OneLineParser
from .experiment import InvalidRunRecord, check_run_records
from .profiles import PROFILE_NAMES, Profile, as_profile, get_profile, output_dir
from .storage import derived_json, write_text
from .studies import (DEEP_EFFICIENTNET_AIM, DEEP_EFFICIENTNET_TARGET, LARGE_BATCH_LABELS, PCAM_TARGETS, STUDIES,
                      imbalance_summary, recipe_search_winner, run_study, stored_runs, summarize, sweep_command,
                      trains_here)


def provenance(profile: Profile, records: list[dict]) -> dict:
    """What produced a summary's numbers, read from its records (never from the machine that summarises)."""
    def distinct(key: str) -> list:
        return sorted({str(r.get(key)) for r in records})
    return {"profile": profile.name, "runs": len(records), "git_commits": distinct("git_commit"),
            "devices": distinct("device"), "torch": distinct("torch_version"), "python": distinct("python")}


def study_summary(profile: Profile, rows: list[dict], records: list[dict], chosen_by: str = "val_acc_mean",
                  best: str | None = None, **extra) -> dict:
    """A study's rows (``studies.summarize``) and runs, and the row with the highest ``chosen_by`` (a validation
    metric: the test split never chooses), or ``best`` where the study's own rule chose it."""
    if not chosen_by.startswith("val_"):
        raise ValueError(f"a study's winner is chosen on validation, not on {chosen_by!r}")
    best = best or max(rows, key=lambda r: r[chosen_by])["name"]
    return {"provenance": provenance(profile, records), **extra, "rows": rows, "runs": [r["run"] for r in records],
            "chosen_on": "val", "chosen_by": chosen_by, "best": best}


Records = dict[str, list[dict]]  # study name -> its records


def _plain(profile: Profile, records: Records, compute: bool, study: str) -> dict:
    return study_summary(profile, summarize(records[study]), records[study])


def tta_over_seeds(runs: list[dict], compute: bool) -> dict:
    """Each run's checkpoint scored with its 8 flips and 90-degree turns (a stored evaluation), kept for a run only
    where it raises that run's validation accuracy; the test accuracy over seeds with TTA where kept."""
    from .experiment import score_with_tta
    scored = [score_with_tta(r, compute=compute) for r in runs]
    kept = [t["val"]["acc"] > r["val"]["acc"] for r, t in zip(runs, scored)]
    chosen = [t["test"]["acc"] if k else r["test"]["acc"] for r, t, k in zip(runs, scored, kept)]
    return {"runs": [r["run"] for r in runs], "val_acc": [t["val"]["acc"] for t in scored],
            "test_acc": [t["test"]["acc"] for t in scored], "kept": kept, "chosen_on": "val",
            "test_acc_mean_where_kept": sum(chosen) / len(chosen)}


def _deep_efficientnet(profile: Profile, records: Records, compute: bool) -> dict:
    from .analysis import calibration_study, load_predictions
    from .metrics import bootstrap_accuracy_ci
    runs = records["deep_efficientnet"]
    (over_seeds,) = summarize(runs)
    predictions = [load_predictions(r) for r in runs]
    assert all(np.array_equal(p["test_labels"], predictions[0]["test_labels"]) for p in predictions), "test splits differ"
    mean_ci95 = bootstrap_accuracy_ci(predictions[0]["test_labels"],
                                      np.stack([p["test_probs"].argmax(1) for p in predictions]))
    calibration = calibration_study(runs[0])
    return {"provenance": provenance(profile, runs), "run": runs[0]["run"],
            "seeds": {"runs": [r["run"] for r in runs], "val_acc": [r["val"]["acc"] for r in runs],
                      "test_acc": [r["test"]["acc"] for r in runs], "test_acc_mean": over_seeds["test_acc_mean"],
                      "test_acc_std": over_seeds["test_acc_std"],
                      # over test images, each resample scoring every seed on the same images
                      "test_acc_mean_bootstrap_ci95": list(mean_ci95)},
            "chosen_on": "val",  # each run's checkpoint is its best epoch on validation accuracy
            "tta": tta_over_seeds(runs, compute),
            "calibration": {k: calibration[k] for k in ("temperature", "ece_before", "ece_after")},
            "target": {"test_acc_mean": DEEP_EFFICIENTNET_TARGET,
                       "met": over_seeds["test_acc_mean"] >= DEEP_EFFICIENTNET_TARGET,
                       "aim": DEEP_EFFICIENTNET_AIM, "aim_met": over_seeds["test_acc_mean"] >= DEEP_EFFICIENTNET_AIM}}


def _architectures(profile: Profile, records: Records, compute: bool) -> dict:
    # The zoo beside the baselines trained from scratch: ImageNet weights would compare pre-training, not design.
    runs = [r for r in records["baselines"] if r["label"] != "EfficientNet-Lite0 (ImageNet)"] + records["zoo"]
    return study_summary(profile, summarize(runs), runs)


def _imbalance(profile: Profile, records: Records, compute: bool) -> dict:
    runs = records["imbalance"]
    # Chosen on validation macro-F1: the classes are imbalanced, and the test split never chooses.
    return study_summary(profile, imbalance_summary(runs, runs[0]["class_names"]), runs,
                         chosen_by="val_macro_f1_mean", model=runs[0]["model"])


def _recipe_search(profile: Profile, records: Records, compute: bool) -> dict | None:
    from .experiment import score_with_tta
    runs = records["recipe_search"]
    if not runs:
        return None  # the profile has no search budget
    screen = [r for r in runs if r["stage"] == "screen"]
    winner = recipe_search_winner(screen)
    chosen = [r for r in runs if r["label"] == winner]
    (confirmed,) = summarize(chosen)
    # Test-time augmentation is kept only where it raises the winner's validation accuracy.
    tta = score_with_tta(chosen[0], compute=compute)
    return study_summary(profile, summarize(screen), runs, best=winner, confirmed=confirmed,
                         large_batch_labels=list(LARGE_BATCH_LABELS),
                         tta={"run": chosen[0]["run"], "val_acc": tta["val"]["acc"], "test_acc": tta["test"]["acc"],
                              "val_acc_without": chosen[0]["val"]["acc"],
                              "kept": tta["val"]["acc"] > chosen[0]["val"]["acc"]})


def _gradcam(profile: Profile, records: Records, compute: bool) -> dict:
    from .analysis import score_road
    record = next(r for r in records["deep_efficientnet"] if r["seed"] == profile.seeds[0])
    road = score_road(record, profile.budget("gradcam")["road_images"], compute=compute)
    return {"provenance": provenance(profile, [record]), **road}


def _pcam(profile: Profile, records: Records, compute: bool) -> dict:
    from .analysis import binary_study, epoch_variants, pcam_levers, scaling_study
    from .data import PCAM_TRAIN_PATCHES
    from .experiment import score_with_tta
    runs, scaling_runs = records["pcam"], records["pcam_scaling"]
    studies = {r["label"] + (f" s{r['seed']}" if r["seed"] else ""): binary_study(r) for r in runs}
    best = max(runs, key=lambda r: r["val"]["auc"])
    best_key = next(k for k, r in zip(studies, runs) if r is best)
    best_tta = score_with_tta(best, compute=compute)
    tta_study = binary_study(best_tta)
    use_tta = best_tta["val"]["auc"] > best["val"]["auc"]  # kept only where it raises validation AUC
    final_key = best_key + " + TTA" if use_tta else best_key
    final = tta_study if use_tta else studies[best_key]
    scaling_studies = {f"{r['data']['n']['train']:,} patches" + (f" s{r['seed']}" if r["seed"] else ""): binary_study(r)
                       for r in scaling_runs}
    scaling = scaling_study(scaling_studies, PCAM_TARGETS)
    needed = [fit["patches_for_target"] for fit in scaling["fits"].values()]
    scaling["targets_reached"] = ("within the patches used" if min(needed) <= max(scaling["train_n"]) else
                                  "within all of PCam's training patches" if max(needed) <= PCAM_TRAIN_PATCHES else
                                  "beyond all of PCam's training patches")
    # More epochs: the learning curve's all-patch run against its stored twins that differ only in epochs.
    all_patches = max(scaling_runs, key=lambda r: (r["data"]["n"]["train"], -r["seed"]))
    return {"provenance": provenance(profile, runs + scaling_runs), "best_on_val": best["run"], "chosen_on": "val",
            "runs": studies, "labels": {k: r["label"] for k, r in zip(studies, runs)},
            "pretrained": {k: r["pretrained"] for k, r in zip(studies, runs)},
            "stages": {k: r["stage"] for k, r in zip(studies, runs)},
            "tta": {"study": tta_study, "kept": use_tta, "scoring": best_tta["tta_scoring"]},
            "final": final_key, "targets": PCAM_TARGETS,
            "verdict": {m: "met" if final["test_at_0.5"][m] >= t else "not met" for m, t in PCAM_TARGETS.items()},
            "scaling": scaling, "scaling_runs": scaling_studies,
            "levers": pcam_levers(runs, best, best_tta, scaling, epoch_variants(all_patches))}


def _paired(profile: Profile, records: Records, compute: bool) -> dict:
    """Every ``studies.PAIRED_COMPARISONS`` row from the stored predictions, with its verdict (utils.comparisons)."""
    from .comparisons import compare
    from .studies import PAIRED_COMPARISONS, planned_seeds
    rows = [compare(pair, records[study], planned_seeds(study, profile)) for study, pair in PAIRED_COMPARISONS]
    used = [r for study in dict.fromkeys(s for s, _ in PAIRED_COMPARISONS) for r in records[study]
            if any(r["label"] in (p.variant, p.base) for s, p in PAIRED_COMPARISONS if s == study)]
    return {"provenance": provenance(profile, used), "rule": "helps where the 95% seed interval of the test "
            "difference lies above 0, hurts where below, else no effect detected; pending until every planned seed "
            "is paired (fixed before the test split was read)", "rows": rows}


@dataclass(frozen=True)
class Summary:
    studies: tuple[str, ...]  # whose records it reads (utils.studies.STUDIES)
    build: Callable[[Profile, Records, bool], dict | None]


# results/<name>/summary.json, in the order the notebooks show them.
SUMMARIES = {
    "deep_efficientnet": Summary(("deep_efficientnet",), _deep_efficientnet),
    "baselines": Summary(("baselines",), lambda p, r, c: _plain(p, r, c, "baselines")),
    "attention": Summary(("attention",), lambda p, r, c: _plain(p, r, c, "attention")),
    "ablations": Summary(("ablations",), lambda p, r, c: _plain(p, r, c, "ablations")),
    "recipe_search": Summary(("recipe_search",), _recipe_search),
    "gradcam": Summary(("deep_efficientnet",), _gradcam),
    "pcam": Summary(("pcam", "pcam_scaling"), _pcam),
    "architectures": Summary(("baselines", "zoo"), _architectures),
    "imbalance": Summary(("imbalance",), _imbalance),
    "paired": Summary(("attention_simple_cnn", "attention", "ablations", "baselines"), _paired),
}


def build_summary(name: str, profile: Profile | str, compute: bool = True) -> dict | None:
    """The summary ``name`` under ``profile``. ``compute``: train the runs and measure the evaluations (TTA,
    ROAD) that are not stored yet; without it, or where the profile does not train here (``studies.trains_here``:
    the full profile on a CPU), the stored runs only, with the missing ones under ``"missing"`` and the command that
    trains them. A missing evaluation is a ``FileNotFoundError`` that names the command that measures it. None where
    the profile has nothing to summarise (a study with no stored run)."""
    profile = as_profile(profile)
    summary = SUMMARIES[name]
    records, missing = {}, {}
    for study in summary.studies:
        if compute and trains_here(profile):
            records[study] = run_study(STUDIES[study], profile)
        else:
            records[study], missing[study] = stored_runs(STUDIES[study], profile)
            if not records[study] and missing[study]:
                return None
    built = summary.build(profile, records, compute)
    gaps = {study: {"runs": names, "command": sweep_command(STUDIES[study], profile)}
            for study, names in missing.items() if names}
    return dict(built, missing=gaps) if built is not None and gaps else built


def summary_path(name: str, profile: Profile | str, results: Path | None = None) -> Path:
    """``results/<name>/summary.json``; the full profile's under ``results/full/``, beside the cpu profile's shorter
    budgets, which stay where the studies that have no full-budget runs yet are read from."""
    profile = as_profile(profile)
    root = output_dir("results", profile) if results is None else Path(results)
    return (root / "full" if profile.name == "full" else root) / name / "summary.json"


def read_summary(name: str, profile: Profile | str, results: Path | None = None) -> dict | None:
    path = summary_path(name, profile, results)
    return json.loads(path.read_text()) if path.is_file() else None


def shown_summary(name: str, results: Path | None = None) -> dict | None:
    """The summary README, report and notebooks lead with: the full budget's where it is stored and compares
    something (at least two rows stored, or a study of one model), else the cpu profile's approximation. Its
    ``provenance["profile"]`` says which."""
    full = read_summary(name, "full", results)
    if full is not None and len(full.get("rows", [None, None])) >= 2:
        return full
    return read_summary(name, "cpu", results)


def as_json(payload: dict) -> str:
    return derived_json(payload)


# --- The datasets, described from their files (notebooks 01 and 07 show the same numbers) --------------------------
def describe_dataset(data, path: Path) -> dict:
    """Splits, classes and their counts of a loaded dataset, with its file's MD5; BloodMNIST adds the
    channel statistics, PatchCamelyon the identical files dropped (``load_pcam``)."""
    from .analysis import channel_statistics
    from .data import md5sum
    counts = {s: data.class_counts(s) for s in data.splits}
    out = {"data": {"file": path.name, "md5": md5sum(path) if path.is_file() else "(full release, size-checked)"},
           "splits": {s: len(v) for s, v in data.splits.items()}, "class_names": data.class_names,
           "class_counts": counts, "imbalance_ratio": max(counts["train"]) / min(counts["train"])}
    if "duplicates" in data.extra:
        out.update(duplicates=data.extra["duplicates"], cross_split_duplicates=data.extra["cross_split_duplicates"])
    else:
        out["channel_statistics"] = channel_statistics(data)
    return out


def _load(dataset: str):
    from .data import DEFAULT_DATA_ROOT, find_bloodmnist, find_pcam, load_bloodmnist, load_pcam
    if dataset == "bloodmnist":
        return load_bloodmnist(DEFAULT_DATA_ROOT), find_bloodmnist(DEFAULT_DATA_ROOT)
    return load_pcam(DEFAULT_DATA_ROOT), find_pcam(DEFAULT_DATA_ROOT)[1]


DATASETS = ("bloodmnist", "pcam")


def outputs(profile: Profile | str, names=None, datasets=None, compute: bool = False) -> dict[Path, str]:
    """Path -> text of every summary (``names``, default all) and dataset description (``datasets``, default
    all) under ``profile``'s results folder."""
    profile = as_profile(profile)
    results = output_dir("results", profile)
    texts = {}
    for name in SUMMARIES if names is None else names:
        try:
            summary = build_summary(name, profile, compute)
        except FileNotFoundError as error:  # an evaluation not measured yet: leave the summary out, say which
            if trains_here(profile):
                raise
            print(f"summaries ({profile.name}): {name} left out: {error}", file=sys.stderr)
            continue
        if summary is not None:
            texts[summary_path(name, profile)] = as_json(summary)
    for dataset in DATASETS if datasets is None else datasets:
        texts[results / "eda" / f"{dataset}.json"] = as_json(describe_dataset(*_load(dataset)))
    return texts


def stale(texts: dict[Path, str]) -> list[Path]:
    """The paths of ``texts`` whose stored file is missing or differs."""
    return [path for path, text in texts.items() if not path.is_file() or path.read_text() != text]


def write_stale(texts: dict[Path, str]) -> list[Path]:
    """Write the ``stale`` ones of ``texts`` and return them; an unchanged file is left as it is."""
    written = stale(texts)
    for path in written:
        write_text(path, texts[path])
    return written


def write_summaries(profile: Profile | str, names=None, datasets=None, compute: bool = False) -> list[Path]:
    return write_stale(outputs(profile, names, datasets, compute))


def ranking_sentence(summary: dict, name: str = "DeepEfficientNet") -> str:
    """Where ``name`` ranks in a study on validation accuracy, and which rows beat it, with their cost."""
    rows = sorted(summary["rows"], key=lambda r: -r["val_acc_mean"])
    place = next((i for i, r in enumerate(rows) if r["name"] == name), None)
    if place is None:
        return f"{name} has no stored run in this study ({summary['provenance']['profile']} profile)."
    ahead = ", ".join(f"{r['name']} (val {100 * r['val_acc_mean']:.2f}%, test {100 * r['test_acc_mean']:.2f}%, "
                      f"{r['params'] / 1e6:.2f}M parameters)" for r in rows[:place])
    ours = rows[place]
    return (f"{name} ranks {place + 1} of {len(rows)} on validation ({100 * ours['val_acc_mean']:.2f}%, test "
            f"{100 * ours['test_acc_mean']:.2f}%, {ours['params'] / 1e6:.2f}M parameters)"
            + (f"; ahead of it: {ahead}." if ahead else ": no model of this study is ahead of it."))


def missing_note(summary: dict) -> str:
    """The runs a summary lacks and the command that trains them, or that none is missing."""
    gaps = summary.get("missing", {})
    if not gaps:
        return f"every run of this study is stored ({summary['provenance']['profile']} profile)"
    return "; ".join(f"{len(g['runs'])} run(s) of {study} not stored yet ({', '.join(g['runs'])}): {g['command']}"
                     for study, g in gaps.items())


# The profiles whose results are committed: ``make summaries`` rebuilds both unless told one.
COMMITTED_PROFILES = ("cpu", "full")


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.summaries", description=__doc__,  # checks $PROFILE in one line
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", choices=PROFILE_NAMES,
                        help=f"default: $PROFILE, else the committed ones ({', '.join(COMMITTED_PROFILES)})")
    parser.add_argument("--only", nargs="+", choices=list(SUMMARIES), metavar="SUMMARY",
                        help=f"summaries to build, of: {', '.join(SUMMARIES)} (default: all, and the datasets)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a stored file differs")
    args = parser.parse_args(argv)
    named = args.profile or os.environ.get("PROFILE")
    profiles = [get_profile(named)] if named else [get_profile(name) for name in COMMITTED_PROFILES]
    texts = {}
    try:
        for runs in {output_dir("results", profile) / "runs" for profile in profiles}:
            check_run_records(runs)  # an edited record stops us, named
        for i, profile in enumerate(profiles):
            texts.update(outputs(profile, args.only, [] if args.only or i else None))
    except (FileNotFoundError, InvalidRunRecord) as error:
        sys.exit(f"summaries: {error}")
    if args.check:
        differ = stale(texts)
        print("\n".join(f"differs: {p}" for p in differ) or f"summaries: all {len(texts)} as stored")
        sys.exit(1 if differ else 0)
    written = write_stale(texts)
    print(f"summaries ({', '.join(p.name for p in profiles)}): {len(texts)} files, {len(written)} rewritten"
          + "".join(f"\n  {p}" for p in written))


if __name__ == "__main__":
    main()

r"""`python -m utils.report`: turn results/ into generated text; nothing here is typed by hand.

It rewrites the README's results table (between the `results:start` / `results:end` markers) from the
run records in results/runs/, and writes the LaTeX report's numbers: ``report/generated/macros.tex``
(one letter-only macro per number, e.g. ``\DeepEffTestAcc``) and one booktabs table body per study,
all read from results/*.json. A study whose results do not exist yet gives a table that says so.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import sys
from collections import Counter
from pathlib import Path

from .data import PCAM_TRAIN_PATCHES
from .gpu_check import HEADLINE_STUDIES  # the studies a lent GPU trains first
from .experiment import InvalidRunRecord, check_run_records, load_results
from .plots import ABBREVIATIONS, short_names, typeset
from .speedrun import readme_markdown as speedrun_markdown
from .storage import write_text
from .studies import BASELINES, PREVIOUS_RECIPE, PREVIOUS_RECIPE_RUNS, RECIPE_INGREDIENTS
from .summaries import read_summary, shown_summary

README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"
CLAIMS_START, CLAIMS_END = "<!-- claims:start -->", "<!-- claims:end -->"


# The order the results are shown in: the full budget first, the cpu profile's short-budget approximations after.
PROFILE_ORDER = {"full": 0, "cpu": 1, "smoke": 2}


def study_rows(records: list[dict]) -> dict[str, list[str]]:
    """Run name -> "study: row label" of each study that plans the run in the profile it was trained under, as
    ``utils.sweep`` plans it (a next stage once its first stage is among ``records``). A stored run no study plans
    is history: a recipe or setting the studies have since changed."""
    from .profiles import PROFILES
    from .studies import STUDIES, planned_name, walk_stages
    by_name = {r["run"]: r for r in records}
    rows: dict[str, list[str]] = {}
    for profile_name in sorted({r["profile"] for r in records}):
        profile = PROFILES.get(profile_name)
        if profile is None:
            continue
        for study in STUDIES.values():
            def read(runs, study=study):
                found = []
                for planned in runs:
                    name = planned_name(planned, profile)
                    record = by_name.get(name)
                    if record is not None:
                        row = f"{study.name}: {planned.label}"
                        if row not in rows.setdefault(name, []):
                            rows[name].append(row)
                        record = dict(record, label=planned.label, **planned.fields)
                    found.append(record)
                return found
            walk_stages(study, profile, read)
    return rows


def _markdown_rows(records: list[dict], rows: dict[str, list[str]] | None) -> list[str]:
    """Markdown rows of ``records``; with ``rows``, a last column naming the study rows each run is."""
    header = "| dataset | run | profile | device | train n | epochs | params | test acc (95% bootstrap CI) | test AUC | macro-F1 | train s |"
    lines = [header + (" study: row |" if rows is not None else ""), "|---" * (header.count("|") - 1 + (rows is not None)) + "|"]
    for r in records:
        low, high = r["test"].get("acc_ci95", (float("nan"), float("nan")))
        train_n = r.get("data", {}).get("n", {}).get("train")
        scale = (r.get("model_kwargs") or {}).get("input_scale") or 1
        name = (r.get("tag") or r["model"]) + (f" (input x{scale:g})" if scale != 1 else "")
        lines.append(f"| {r.get('dataset', '')} | {name} | {r['profile']} | {device_label(r['device'])} | "
                     f"{'' if train_n is None else f'{train_n:,}'} | {r['epochs_run']} | "
                     f"{r['params'] / 1e6:.2f}M | {100 * r['test']['acc']:.2f}% ({100 * low:.1f}-{100 * high:.1f}) | "
                     f"{r['test']['auc']:.4f} | {r['test']['macro_f1']:.4f} | {r['train_seconds']:.0f} |"
                     + (f" {'; '.join(rows[r['run']])} |" if rows is not None else ""))
    return lines




def missing_full_budget(runs_folder: Path, studies: tuple[str, ...] = HEADLINE_STUDIES) -> dict[str, list[int]]:
    """Model label -> seeds of the headline studies' full-budget runs with no record in ``runs_folder`` yet."""
    from .profiles import get_profile
    from .studies import STUDIES, planned_name
    profile = get_profile("full")
    missing: dict[str, list[int]] = {}
    for study in studies:
        for planned in STUDIES[study].runs(profile):
            label = attention_model_label(planned.label) if study == "attention" else planned.label
            if not (runs_folder / f"{planned_name(planned, profile)}.json").is_file():
                missing.setdefault(label, []).append(planned.seed)
    return missing


def attention_model_label(row: str) -> str:
    """An attention study row ("none", "SE", ...) as the model it is, where it stands beside other models."""
    return "EfficientNet-B0 (no attention)" if row == "none" else f"EfficientNet-B0 + {row}"


MISSING_FULL_COMMAND = f"python -m utils.sweep --profile full --only {' '.join(HEADLINE_STUDIES)}"


def missing_full_sentence(runs_folder: Path, command: str | None = f"`{MISSING_FULL_COMMAND}`") -> str:
    """Which headline full-budget runs are not stored yet, and that ``command`` trains them (plain text; without
    ``command``, "the command below")."""
    missing = missing_full_budget(runs_folder)
    if not missing:
        return "Every full-budget run of the headline studies is stored."
    runs = sum(map(len, missing.values()))
    return (f"Of the headline studies ({', '.join(HEADLINE_STUDIES)}), not stored at "
            f"the full budget yet ({runs} runs): "
            + "; ".join(f"{label} (seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))})"
                        for label, seeds in missing.items())
            + f". {command or 'The command below'} trains them, one run per core on a CPU; until then their studies "
              "show the cpu profile's approximations. The other studies' full-budget runs are what "
              "python -m utils.sweep --profile full --dry-run lists.")


def results_table(folder: str | Path = "results/runs") -> str:
    """Markdown tables of the stored runs, best test accuracy first within each: the full budget's; the other
    profiles' runs of study rows with no full-budget run yet (their approximations); the other profiles' runs whose
    study rows all have full-budget runs (what those profiles' notebooks re-execute from); then the stored runs no
    study plans any more (earlier recipes). Each planned run names the study rows it is. ``train n`` is the number of
    training images, so a study run on a subset (cpu-profile ablations) reads as one."""
    records = sorted(load_results(folder), key=lambda r: (PROFILE_ORDER.get(r["profile"], 3), r.get("dataset", ""),
                                                           -r["test"]["acc"]))
    rows = study_rows(records)
    full = [r for r in records if r["run"] in rows and r["profile"] == "full"]
    covered = {row for r in full for row in rows[r["run"]]}
    shorter = [r for r in records if r["run"] in rows and r["profile"] != "full"]
    open_rows = {r["run"]: [row for row in rows[r["run"]] if row not in covered] for r in shorter}
    approximations = [r for r in shorter if open_rows[r["run"]]]
    superseded = [r for r in shorter if not open_rows[r["run"]]]
    history = [r for r in records if r["run"] not in rows]
    lines = [missing_full_sentence(Path(folder)), "", f"**Full budget** ({len(full)} runs):", ""]
    lines += _markdown_rows(full, rows) if full else ["(no full-budget run stored yet)"]
    groups = ((approximations, open_rows, "Shorter budgets, for the study rows that have no full-budget run yet "
               "(approximations: few epochs, differing by model; the last column names only those rows)"),
              (superseded, rows, "Shorter budgets, runs whose study rows all have full-budget runs above (kept for "
               "`make all` in those profiles, which re-executes the notebooks from them)"),
              (history, None, "Stored runs that no study plans any more (trained with an earlier recipe or setting, "
               "kept as the record of what was measured; no table or figure reads them)"))
    for group, named, heading in groups:
        if group:
            lines += ["", f"{heading}, {len(group)} runs:", ""] + _markdown_rows(group, named)
    return "\n".join(lines)


CPU_THREADS_FILE = "bench/cpu_threads.json"
MALLOC_FILE = "bench/malloc_cpu.json"


def cpu_threads_markdown(results: Path = Path("results")) -> str:
    """The CPU sweep's measured reason for one single-thread worker per core (``python -m utils.bench
    --cpu-threads``), as a README table."""
    path = results / CPU_THREADS_FILE
    if not path.is_file():
        return f"(not measured yet: `python -m utils.bench --cpu-threads --out results/{CPU_THREADS_FILE}`)"
    bench = json.loads(path.read_text())
    alone, busy = bench["ms_per_step_alone"], bench["ms_per_step_beside_a_busy_core"]
    first = next(iter(alone))
    load = bench.get("load_average_1min")
    beside = (f"1-minute load average {load['before']:.1f} before and {load['after']:.1f} after" if load else
              "the machine's load was not recorded (it ran beside other work, which the two-thread numbers suffer from "
              "most)")
    lines = [f"Measured by `python -m utils.bench --cpu-threads` on {bench['device']} at {bench['git_commit'][:7]} "
             f"(torch {bench['torch_version']}), batch {bench['batch_size']}, {bench['timed_steps']} timed steps each, "
             f"every setting in the same run; {beside}:", "",
             "| model | ms/step, 1 thread, alone | ms/step, 2 threads, alone | ms/step beside a busy core, 1 thread "
             "| ms/step beside a busy core, 2 threads |", "|---|---|---|---|---|"]
    for model, times in alone.items():
        beside = [f"{busy[t]:,.0f} ({bench['slowdown_beside_a_busy_core'][t]:.1f}x)" if model == first else ""
                  for t in ("1", "2")]
        lines.append(f"| {model} | {times['1']:,.0f} | {times['2']:,.0f} | " if "2" in times else
                     f"| {model} | {times['1']:,.0f} | | ")
        lines[-1] += " | ".join(beside) + " |"
    ips = bench["images_per_second"]
    lines += ["", f"Images per second, {first}: " + "; ".join(f"{k}: {v:,.0f}" for k, v in ips.items()) + "."]
    return "\n".join(lines)


def readme_blocks(folder: str | Path = "results/runs") -> dict[str, str]:
    """Every generated block of the README and docs/, by marker name: the findings and headline table, every run's
    row, the earlier projects' claims, the CPU sweep's thread measurements and the speedrun's seeds."""
    results = Path(folder).parent
    return {"findings": findings_markdown(results), "headline": headline_markdown(results),
            "results": results_table(folder), "claims": claims_markdown(results),
            "ingredients": ingredients_markdown(results),
            "cpu-threads": cpu_threads_markdown(results), "speedrun": speedrun_markdown(results / "speedrun")}


# Which generated blocks each document holds (paths relative to the README's folder).
DOCUMENT_BLOCKS = {"README.md": ("findings", "headline"), "docs/results.md": ("results", "claims", "ingredients"),
                   "docs/reproducing.md": ("cpu-threads",), "docs/speedrun.md": ("speedrun",)}


def update_readme(readme: Path = README, folder: str | Path = "results/runs", blocks: dict[str, str] | None = None,
                  required: tuple[str, ...] = ()) -> bool:
    """Rewrite the generated blocks a document holds (between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``),
    all computed before anything is written; ``required`` blocks must have their markers there."""
    blocks = readme_blocks(folder) if blocks is None else blocks
    text = readme.read_text()
    new = text
    found = 0
    for name, body in blocks.items():
        start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
        if start not in new or end not in new:
            if name in required:
                raise ValueError(f"{readme}: add the markers {start} and {end} where the {name} block goes")
            continue
        found += 1
        new = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: f"{start}\n{body}\n{end}", new, flags=re.S)
    if not found:
        raise ValueError(f"{readme}: no generated block; add the markers of one of {', '.join(blocks)} "
                         f"(<!-- NAME:start --> and <!-- NAME:end -->)")
    if new != text:
        write_text(readme, new)
    return new != text


def update_documents(readme: Path = README, folder: str | Path = "results/runs") -> list[Path]:
    """The README's and docs/'s generated blocks (``DOCUMENT_BLOCKS``), all computed first; the documents changed."""
    blocks = readme_blocks(folder)
    changed = []
    for relative, names in DOCUMENT_BLOCKS.items():
        path = readme if relative == "README.md" else readme.parent / relative
        if not path.is_file():
            print(f"{path}: not found, so its generated blocks ({', '.join(names)}) were not written", file=sys.stderr)
            continue
        if update_readme(path, folder, blocks, required=names):
            changed.append(path)
    return changed


# ---------------------------------------------------------------------------------------------
# LaTeX: macros and tables from results/

GENERATED = Path("report/generated")
MISSING = r"\textit{n/a}"


def tex_escape(text: str) -> str:
    """Text for a table cell, as print sets it: '1.5x input' with a times sign, '-0.19' with a true minus sign."""
    text = (typeset(str(text)).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
            .replace("_", r"\_").replace("#", r"\#").replace("±", r"$\pm$").replace("\u00d7", r"$\times$"))
    return re.sub(r"(?<![\w.$])-(?=\d)", r"$-$", text)  # a sign, not a range (97.1-97.8) or a name (c7ba0c9-dirty)


def signed(x: float, digits: int = 2) -> str:
    """A signed number with a true minus sign in print ($-$1.40, $+$0.70)."""
    return f"${'-' if x < 0 else '+'}${abs(x):.{digits}f}"


def pct(x: float, digits: int = 2) -> str:
    return f"{100 * x:.{digits}f}"


def pm(mean: float, std: float, seeds: int, digits: int = 2) -> str:
    """Mean in percent, with the seed standard deviation when there is more than one seed."""
    return f"{100 * mean:.{digits}f}" + (f" $\\pm$ {100 * std:.{digits}f}" if seeds > 1 else "")


def _read(results: Path, relative: str) -> dict | None:
    path = results / relative
    return json.loads(path.read_text()) if path.is_file() else None


def _run(results: Path, name: str) -> dict | None:
    return _read(results, f"runs/{name}.json")


def _table(header: list[str], rows: list[list[str]], empty: str, align: str | None = None) -> str:
    """A booktabs tabular (first column left-aligned, the rest right-aligned unless ``align`` says)."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = [rf"\begin{{tabular}}{{{align}}}", r"\toprule", " & ".join(header) + r" \\", r"\midrule"]
    if rows:
        lines += [" & ".join(row) + r" \\" for row in rows]
    else:
        lines.append(rf"\multicolumn{{{len(header)}}}{{c}}{{\textit{{{empty}}}}} \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def _study_rows(summary: dict | None, baseline: str | None = None) -> list[list[str]]:
    if not summary:
        return []
    rows = summary["rows"]
    base = next((r for r in rows if r["name"] == baseline), None)
    out = []
    for r in rows:
        row = [tex_escape(r["name"]), f"{r['params'] / 1e6:.2f}", f"{r['flops'] / 1e6:.0f}", str(r.get("epochs", "")),
               pm(r["val_acc_mean"], r["val_acc_std"], r["seeds"]), pm(r["test_acc_mean"], r["test_acc_std"], r["seeds"]),
               f"{r['test_macro_f1_mean']:.3f}", f"{r['train_seconds_mean']:.0f}"]
        if baseline:
            row.append(signed(100 * (r['val_acc_mean'] - base['val_acc_mean']), 2) if base else MISSING)
        out.append(row)
    return out


STUDY_HEADER = ["Model", "Params (M)", "MFLOPs", "Epochs", "Val acc (\\%)", "Test acc (\\%)", "Macro-F1", "Train (s)"]


# Every macro the report may use: one whose result does not exist yet is written as n/a, so the
# report always builds and says plainly what is missing.
MACROS = (
    "AblationBest", "AblationBestDelta", "AblationEpochs", "AblationRecipeVal", "AblationRuns",
    "AblationSeeds", "AblationTrainImages", "AblationWorst", "AblationWorstDelta", "AttentionBest",
    "AttentionBestDelta", "AttentionEpochs", "AttentionSeeds", "BaselineBest", "BaselineBestTestAcc",
    "BenchDevice", "BenchFiftyEpochs", "BenchImagesPerSecond", "BenchLatency", "BenchLoaderEpoch",
    "BenchProjectEpoch", "BenchSpeedup", "BenchSteps", "GpuBenchSteps", "BloodImbalance", "BloodLargestTrain", "BloodSmallestTrain",
    "BloodTest", "BloodTrain", "BloodVal", "CamLayer", "DeepEffBestEpoch", "DeepEffECEAfter",
    "DeepEffECEBefore", "DeepEffEpochs", "DeepEffMFlops", "DeepEffRank", "DeepEffSeedsSentence", "ZooRows",
    "AblationChanges", "AblationSEOffDelta", "AttentionSEDelta", "AttentionSeedNote", "BaselineTrainMin",
    "BaselineTrainMax", "BenchModeSentence", "PcamDegenerateSentence", "PcamTrainPercent", "TorchVersions",
    "DeepEffParams", "DeepEffRun", "DeepEffTemperature", "DeepEffTestAUC", "DeepEffTestAcc",
    "DeepEffTestAccHigh", "DeepEffTestAccLow", "DeepEffTestMacroF", "DeepEffTestN", "DeepEffTrainSeconds",
    "DeepEffValAcc", "DeepEffSeeds", "DeepEffSeedsTestAccMean", "DeepEffSeedsTestAccStd", "DeepEffTarget", "GpuBenchDevice", "GpuBenchFiftyEpochs", "GpuBenchImagesPerSecond", "GpuBenchLatency",
    "GpuBenchLoaderEpoch", "GpuBenchCommit", "GpuBenchProjectEpoch", "GpuBenchSpeedup", "HasGpuBench", "ImbalanceBest",
    "ImbalanceModel", "ImbalanceSeeds", "ImbalanceEpochs", "RoadSE", "PublishedVerdict",
    "PcamBest", "PcamBestAUC", "PcamBestAcc", "PcamBestAccTval", "PcamBestTval", "PcamDropped", "PcamEpochs",
    "PcamAccTarget", "PcamAUCTarget", "PcamTargetAcc", "PcamTargetAUC", "PcamScreenEpochs", "PcamScreenTrain",
    "PcamGroups", "PcamLiteImageNetAUC", "PcamLiteScratchAUC", "PcamLiteImageNetValAUC", "PcamLiteScratchValAUC", "PcamFullTrain", "DeployTrainedOn", "HeadlineMissingCommand", "PcamProfile", "PcamTest", "PcamTrain",
    "PcamTTAKept", "PcamTTAValDelta", "PcamInputValDelta", "PcamScalingTrainMin", "PcamScalingAUCPerTenfold",
    "PcamScalingAUCPatches", "PcamScalingAUCTimesPcam", "PcamScalingAccPatches", "PcamScalingAccTimesPcam",
    "PcamScalingEpochs", "PcamScalingVerdict",
    "PcamTrainUsed", "PcamVal", "ResultsDevice", "ResultsProfile", "DeepEffBudget", "DeepEffTTAKept",
    "DeepEffTTATestAccMean", "DeepEffTTAValAcc", "DeepEffTTATestAcc", "RoadProfile", "BenchFloorFraction",
    "GpuBenchFloorFraction", "BaselineBudget", "AttentionBudget", "AblationBudget", "ZooBudget", "ImbalanceBudget",
    "AblationFullBudget", "AblationFullRows", "AblationFullAffineSentence", "AblationFullAugmentDelta", "AblationFullAugmentSeeds",
    "AblationFullRecipeSeeds", "SpeedrunVersusThreads", "SpeedrunStandardStored", "HeadlineMissing", "HeadlineIncomplete", "HeadlineOpen", "BaselinePairsSentence", "ProbeResNetSentence", "PublishedResNetAcc", "PublishedBestAcc", "PublishedBestName", "DeepEffTargetPct", "DeepEffAimPct", "DeepEffAim", "DeepEffSeedsBootLow",
    "DeepEffSeedsBootHigh", "DeepEffTestAccBootLow", "DeepEffTestAccBootHigh",
    "ProbeBasicVal", "PreviousRecipeVal", "ProbeValImages", "ProbeValN", "PreviousRecipeValLow",
    "PreviousRecipeValHigh", "ProbeDelta", "HeadlineTestSentence",
    "DeployRuns", "DeployOnnxAgree", "DeployOnnxMaxDiff", "DeployThreads", "DeployLoad", "DeployRobustDropLow",
    "DeployRobustDropHigh", "DeployWorstCorruptions", "DeployEnsembleModel", "DeployEnsembleSeeds", "DeployEnsembleAcc", "DeployEnsembleECE",
    "DeployEnsembleECET", "DeployEnsembleAtNinety", "DeployEnsembleCoverage",
    "HeadlineModels", "HeadlineRuns", "HeadlineDevices", "HeadlineBest", "HeadlineBestTestAcc", "HeadlineAheadSentence", "RoadGradCAM", "RoadGradCAMpp", "RoadN",
    "RoadRandom", "RoadVerdict", "PcamBudget", "TopConfusions", "DeepEffSeedsPhrase", "GradcamRun", "GradcamBudget", "ZooBest", "ZooBestTestAcc",
    "SpeedrunCandidates", "SpeedrunRetimed", "SpeedrunTrainings", "SpeedrunFinalists", "SpeedrunFinalistSeeds", "SpeedrunSuperseded", "SpeedrunLimit", "SpeedrunTimeLimit", "SpeedrunAim", "SpeedrunTarget",
    "SpeedrunOtherCpus", "ProvenanceSlowEpochs", "SpeedrunSearchMachine", "SpeedrunSpeedup", "SpeedrunStandardSeconds", "SpeedrunVersusSeconds", "SpeedrunVersusRecipe",
    "SpeedrunVersusTestAcc", "SpeedrunStandardTestAcc", "SpeedrunVersusThreads", "SpeedrunMalloc", "SpeedrunTtaWins", "SpeedrunTtaGain", "SpeedrunPlainLead",
    *(f"{prefix}{name}" for prefix in ("SpeedrunBf", "SpeedrunFp") for name in (
        "Recipe", "Seeds", "TestAcc", "TestAccMean", "ValAccMean", "Seconds", "SecondsMax", "Machine", "Targets", "Commit")),
    "AttentionFindings", "PairedEvidence", "PairedRule", "PairSimpleSentence", "PairLiteSentence", "RecipeFindings",
    "PairSimpleShort", "RecipeShort", "AttentionShort", "IngredientScreenEpochs", "IngredientScreenImages",
    "SpeedrunEarlierTestAcc", "SpeedrunEarlierSeconds", "SpeedrunEarlierMachine", "SpeedrunEarlierRecipe", "SpeedrunShort",
)


def device_label(device: str) -> str:
    """A record's device as prose reads it: "cpu (1 thread)", not "cpu (x86_64, 1 threads)" (the architecture is in
    every record and the budgets table)."""
    return re.sub(r"\b1 threads\b", "1 thread", device.replace("x86_64, ", ""))


def budget_note(summary: dict) -> str:
    """Where a study's numbers come from: its profile (the budget), its devices, and the runs it still lacks."""
    provenance = summary["provenance"]
    budget = "full budget" if provenance["profile"] == "full" else "short budget"
    missing = sum(len(gap["runs"]) for gap in summary.get("missing", {}).values())
    return tex_escape(budget + (f"; {missing} run{'s' if missing != 1 else ''} of this study not trained yet"
                                if missing else ""))


Section = tuple[dict[str, str], dict[str, str]]  # (macros, tables) of one part of the report


def data_section(results: Path) -> Section:
    eda = _read(results, "eda/bloodmnist.json")
    if not eda:
        return {}, {}
    counts = eda["class_counts"]["train"]
    return {"BloodTrain": f"{eda['splits']['train']:,}", "BloodVal": f"{eda['splits']['val']:,}",
            "BloodTest": f"{eda['splits']['test']:,}", "BloodImbalance": f"{eda['imbalance_ratio']:.2f}",
            "BloodSmallestTrain": f"{min(counts):,}", "BloodLargestTrain": f"{max(counts):,}"}, {}


def deep_efficientnet_section(results: Path) -> Section:
    """The main result: the shown DeepEfficientNet summary's seed-0 run, its seeds, TTA and per-class table."""
    import numpy as np
    main = shown_summary("deep_efficientnet", results)
    record = _run(results, main["run"]) if main else None
    if not record:
        return {}, {}
    test, val = record["test"], record["val"]
    m = dict(ResultsProfile=record["profile"], ResultsDevice=tex_escape(record["device"]),
             DeepEffBudget=budget_note(main), DeepEffRun=tex_escape(record["run"]),
             DeepEffParams=f"{record['params'] / 1e6:.2f}", DeepEffMFlops=f"{record['flops'] / 1e6:.1f}",
             DeepEffEpochs=str(record["config"]["epochs"]), DeepEffBestEpoch=str(record["best_epoch"]),
             DeepEffTrainSeconds=f"{record['train_seconds']:.0f}", DeepEffValAcc=pct(val["acc"]),
             DeepEffTestAcc=pct(test["acc"]), DeepEffTestAccLow=pct(wilson_interval(test["acc"], test["n"])[0]),
             DeepEffTestAccHigh=pct(wilson_interval(test["acc"], test["n"])[1]), DeepEffTestAUC=f"{test['auc']:.4f}",
             DeepEffTestMacroF=f"{test['macro_f1']:.4f}", DeepEffTestN=f"{test['n']:,}",
             DeepEffTemperature=f"{main['calibration']['temperature']:.2f}",
             DeepEffECEBefore=f"{main['calibration']['ece_before']:.3f}",
             DeepEffECEAfter=f"{main['calibration']['ece_after']:.3f}")
    seeds = main["seeds"]
    n_seeds = len(seeds["runs"])
    m.update(DeepEffSeeds=str(n_seeds), DeepEffSeedsTestAccMean=pct(seeds["test_acc_mean"]),
             DeepEffSeedsTestAccStd=pct(seeds["test_acc_std"]),
             DeepEffSeedsSentence=(
                 f"Over {n_seeds} seeds the mean test accuracy is {pct(seeds['test_acc_mean'])}\\% (standard "
                 f"deviation {pct(seeds['test_acc_std'])} points)" if n_seeds > 1 else
                 "This build has one seed of this budget stored, so it gives no spread over seeds"),
             DeepEffTarget=("met" if main["target"]["met"] else "not met") if n_seeds >= 3 else
             f"not yet decided: {n_seeds} of its 3 seeds stored, at {pct(seeds['test_acc_mean'])}\\%",
             DeepEffTargetPct=pct(main["target"]["test_acc_mean"], 1),
             DeepEffAimPct=pct(main["target"].get("aim", float("nan")), 1),
             DeepEffAim=(("reached" if main["target"].get("aim_met") else "not reached") if n_seeds >= 3 else
                         "not yet decided"))
    if "test_acc_mean_bootstrap_ci95" in seeds:
        low, high = seeds["test_acc_mean_bootstrap_ci95"]
        m.update(DeepEffSeedsBootLow=pct(low), DeepEffSeedsBootHigh=pct(high))
        if n_seeds >= 3 and main["target"]["met"] and low < main["target"]["test_acc_mean"]:
            m["DeepEffTarget"] = (f"met by the mean, though the mean's bootstrap interval over the test images "
                                  f"({pct(low)}--{pct(high)}\\%) reaches below it")
    if "acc_ci95" in test:
        m.update(DeepEffTestAccBootLow=pct(test["acc_ci95"][0]), DeepEffTestAccBootHigh=pct(test["acc_ci95"][1]))
    tta = main.get("tta")
    if tta:
        kept = sum(tta["kept"])
        m.update(DeepEffTTAKept=f"{kept} of {len(tta['kept'])}",
                 DeepEffTTATestAccMean=pct(tta["test_acc_mean_where_kept"]),
                 DeepEffTTAValAcc=pct(tta["val_acc"][0]), DeepEffTTATestAcc=pct(tta["test_acc"][0]))
    confusion = np.array(test["confusion_matrix"])
    np.fill_diagonal(confusion, 0)
    short = [n.split("(")[0].strip() for n in record["class_names"]]
    top = int(confusion.max())
    pairs = [f"{short[t]} predicted as {short[p]}" for t, p in zip(*np.nonzero(confusion == top))]
    m.update(TopConfusions=tex_escape(_and(pairs) + f" ({top} test images{' each' if len(pairs) > 1 else ''})"),
             DeepEffSeedsPhrase=f"over {n_seeds} seeds" if n_seeds > 1 else "for seed 0, the only seed stored so far")
    per_class = [[tex_escape(name.split("(")[0].strip()), f"{c['precision']:.3f}", f"{c['recall']:.3f}",
                  f"{c['f1']:.3f}", str(c["support"])] for name, c in test["per_class"].items()]
    return m, {"perclass": _table(["Class", "Precision", "Recall", "F1", "Support"], per_class, "not run yet")}


def gradcam_section(results: Path) -> Section:
    cam = shown_summary("gradcam", results)
    if not cam:
        return {}, {}
    mean, std = cam["mean"], cam["std"]
    return {"RoadGradCAM": signed(mean['gradcam'], 3), "RoadGradCAMpp": signed(mean['gradcam++'], 3),
            "RoadRandom": signed(mean['random'], 3),
            "RoadVerdict": "above" if min(mean["gradcam"], mean["gradcam++"]) > mean["random"]
            + 2 * std["random"] / cam["n"] ** 0.5 else "not clearly above",
            "RoadSE": f"{max(std[k] for k in ('gradcam', 'gradcam++', 'random')) / cam['n'] ** 0.5:.3f}",
            "RoadN": str(cam["n"]), "CamLayer": tex_escape(cam["target_layer"]),
            "RoadProfile": cam["provenance"]["profile"], "GradcamBudget": budget_note(cam),
            "GradcamRun": tex_escape(cam["run"]) if "run" in cam else MISSING}, {}


def bench_section(results: Path) -> Section:
    m = {}
    bench = _read(results, "bench/bench_quick_cpu.json")
    gpu_bench = sorted(p for p in (results / "bench").glob("bench_*.json") if "cpu" not in p.name) \
        if (results / "bench").is_dir() else []
    for prefix, b in (("Bench", bench), ("GpuBench", _read(results, f"bench/{gpu_bench[-1].name}") if gpu_bench else None)):
        if b:
            m.update({f"{prefix}Device": tex_escape(b["device"]), f"{prefix}Speedup": f"{b['train_speedup_vs_dataloader']:.2f}",
                      f"{prefix}ProjectEpoch": f"{b['epoch_seconds']['project_pipeline']:.1f}",
                      f"{prefix}LoaderEpoch": f"{b['epoch_seconds']['standard_dataloader']:.1f}",
                      f"{prefix}FiftyEpochs": f"{b['train_seconds_50_epochs']:,.0f}",
                      f"{prefix}ImagesPerSecond": f"{b['inference_images_per_second']:,.0f}",
                      f"{prefix}Latency": f"{b['latency_ms_batch1']:.1f}", f"{prefix}Steps": str(b["timed_steps"])})
            if b.get("floor"):
                m[f"{prefix}FloorFraction"] = f"{bench_floor(b)['fraction_reached']['eager']:.2f}"
    if bench:
        m["BenchModeSentence"] = (
            f"This is a \\code{{-{{}}-quick}} run: {bench['timed_steps']} timed steps per pipeline, and its 50-epoch time is "
            f"extrapolated from them, not measured" if bench["quick"] else
            "This is a full run: the 50-epoch time is measured, validation included")
    m["HasGpuBench"] = "true" if gpu_bench else "false"
    if gpu_bench:
        m["GpuBenchCommit"] = _read(results, f"bench/{gpu_bench[-1].name}")["git_commit"][:7]
    return m, {"bench": bench_table(results)}


def study_table_section(results: Path, name: str, prefix: str, baseline: str | None = None) -> Section:
    """A comparison study's table (``STUDY_HEADER`` rows, the shown summary: full budget where stored) and its
    ``<prefix>Budget`` note."""
    summary = shown_summary(name, results)
    header = STUDY_HEADER + (["$\\Delta$ val"] if baseline else [])
    table = _table(header, _study_rows(summary, baseline), "not run yet")
    return ({f"{prefix}Budget": budget_note(summary)} if summary else {}), {name: table}


def baselines_section(results: Path) -> Section:
    m, t = study_table_section(results, "baselines", "Baseline")
    baselines = shown_summary("baselines", results)
    if baselines:
        m.update(_best_on_validation(baselines, "Baseline"))
        seconds = [record["train_seconds"] for record in (_run(results, run) for run in baselines["runs"]) if record]
        m.update(BaselineTrainMin=f"{min(seconds):,.0f}", BaselineTrainMax=f"{max(seconds):,.0f}")
    return m, t


def attention_section(results: Path) -> Section:
    m, t = study_table_section(results, "attention", "Attention", baseline="none")
    attention = shown_summary("attention", results)
    rows = attention["rows"] if attention else []
    none = next((r for r in rows if r["name"] == "none"), None)
    if not none:
        return m, t
    best = _chosen_row(attention)
    se = next((r for r in rows if r["name"] == "SE"), None)
    if se:
        m["AttentionSEDelta"] = signed(100 * (se['val_acc_mean'] - none['val_acc_mean']), 2)
    m["AttentionSeedNote"] = (
        f"The $\\pm$ is the standard deviation over {best['seeds']} seeds." if best["seeds"] > 1 else
        "With one seed the spread between seeds is not measured, so differences of a point or two are not "
        "evidence that one variant is better")
    m.update(AttentionBest=tex_escape(best["name"]), AttentionSeeds=str(best["seeds"]),
             AttentionBestDelta=signed(100 * (best['val_acc_mean'] - none['val_acc_mean']), 2),
             AttentionEpochs=str(best.get("epochs", "")))
    return m, t


def ablation_table(summary: dict | None, devices: bool = False) -> str:
    """The ablation rows on validation; with ``devices``, each row's devices (a row's train seconds are theirs)."""
    rows = [[r[0], r[4], r[8], r[7]] for r in _study_rows(summary, "recipe")]
    header = ["Change from the recipe", "Val acc (\\%)", "$\\Delta$ val (points)", "Train (s)"]
    align = r">{\raggedright\arraybackslash}p{2.4in}rrr"
    if devices and summary:
        for row, r in zip(rows, summary["rows"]):
            row.append("; ".join(f"{r['seeds']} $\\times$ {tex_escape(device_label(d))}" if len(r.get("devices", [])) == 1
                                 else tex_escape(device_label(d)) for d in r.get("devices", [])))
        header, align = header + ["Runs"], r">{\raggedright\arraybackslash}p{1.2in}rrrl"
    return _table(header, rows, "notebook 05 not run yet", align=align)


def ablations_section(results: Path) -> Section:
    """The ablations at the full budget where at least two rows are stored (``ablations_full``), and the cpu
    profile's approximation of every row (``ablations``, its macros): the full budget has few rows yet."""
    full = read_summary("ablations", "full", results)
    ablations = read_summary("ablations", "cpu", results)
    # The cpu table names each row's device only where its rows ran on more than one, so train seconds compare.
    mixed = bool(ablations) and len(ablations["provenance"]["devices"]) > 1
    t = {"ablations": ablation_table(ablations, devices=mixed), "ablations_full": ablation_table(full, devices=True)}
    m = {}
    if full and len(full["rows"]) >= 2:
        recipe = next(r for r in full["rows"] if r["name"] == "recipe")
        changes = len(full["rows"]) - 1
        m.update(AblationFullBudget=budget_note(full),
                 AblationFullRows=f"{changes} row{' is' if changes == 1 else 's are'}")
        previous = next((r for r in full["rows"] if r["name"] == PREVIOUS_RECIPE_RUNS), None)
        if previous:
            m.update(AblationFullAugmentDelta=signed(100 * (previous["val_acc_mean"] - recipe["val_acc_mean"]), 2),
                     AblationFullAugmentSeeds=str(previous["seeds"]), AblationFullRecipeSeeds=str(recipe["seeds"]))
        retrained = next((r for r in full["rows"] if r["name"] == PREVIOUS_RECIPE), None)
        m["AblationFullAffineSentence"] = (
            f"The same row trained like the others (CPU, fp32, {retrained['seeds']} "
            f"seed{'s' if retrained['seeds'] > 1 else ''}) changes validation accuracy by "
            f"{signed(100 * (retrained['val_acc_mean'] - recipe['val_acc_mean']), 2)} points on one device and one "
            "precision; its paired test difference is the last row of Table~\\ref{tab:ingredients}." if retrained else
            "The same row trained like the others (CPU, fp32, tagged \\code{ablation\\_affine\\_colour}) is planned "
            "beside it.")
    if not ablations:
        return m, t
    rows = ablations["rows"]
    recipe = next(r for r in rows if r["name"] == "recipe")
    others = [r for r in rows if r["name"] != "recipe"]
    worst = min(others, key=lambda r: r["val_acc_mean"])
    best = max(others, key=lambda r: r["val_acc_mean"])
    se_off = next((r for r in rows if r["name"] == "SE off"), None)
    if se_off:
        m["AblationSEOffDelta"] = signed(100 * (se_off["val_acc_mean"] - recipe["val_acc_mean"]), 2)
    m.update(AblationBudget=budget_note(ablations), AblationRuns=str(len(rows)), AblationChanges=str(len(others)),
             AblationSeeds=str(recipe["seeds"]), AblationRecipeVal=pct(recipe["val_acc_mean"]),
             AblationWorst=tex_escape(worst["name"]),
             AblationWorstDelta=signed(100 * (worst['val_acc_mean'] - recipe['val_acc_mean']), 2),
             AblationBest=tex_escape(best["name"]),
             AblationBestDelta=signed(100 * (best['val_acc_mean'] - recipe['val_acc_mean']), 2))
    recipe_run = _run(results, ablations["runs"][0])
    if recipe_run:
        m.update(AblationTrainImages=f"{recipe_run['data']['n']['train']:,}",
                 AblationEpochs=str(recipe_run["config"]["epochs"]))
    return m, t


def recipe_evidence_section(results: Path) -> Section:
    """Why the recipe augments with flips and turns only: on one H100 at dff1171, seed 0, the recipe probe's
    validation accuracy with them against the previous recipe's run of the same seed, and the previous recipe's
    spread over its three seeds (results/gpu-runs/dff1171/, results/runs/, copied unchanged)."""
    probe_path = results / "gpu-runs/dff1171/recipe_probe.jsonl"
    previous = [_run(results, f"deep_efficientnet-bloodmnist-full-s{s}-{h}")
                for s, h in ((0, "16269bbb26"), (1, "63061791b3"), (2, "13aff42b0c"))]
    if not probe_path.is_file() or not all(previous):
        return {}, {}
    probe = [json.loads(line) for line in probe_path.read_text().splitlines() if line.strip()]
    basic = next(p for p in probe if p["model"] == "deep_efficientnet" and p["change"] == {"augment": "basic"})
    vals = [r["val"]["acc"] for r in previous]
    n = previous[0]["val"]["n"] if "n" in previous[0]["val"] else previous[0]["data"]["n"]["val"]
    return {"ProbeBasicVal": pct(basic["val"]), "PreviousRecipeVal": pct(vals[0]),
            "ProbeValImages": str(round((basic["val"] - vals[0]) * n)), "ProbeValN": f"{n:,}",
            "PreviousRecipeValLow": pct(min(vals)), "PreviousRecipeValHigh": pct(max(vals)),
            "ProbeDelta": pct(basic["val"] - vals[0]),
            "ProbeResNetSentence": probe_resnet_sentence(results, probe, basic)}, {}


def probe_resnet_sentence(results: Path, probe: list[dict], deep: dict) -> str:
    """ResNet-18 against DeepEfficientNet in the H100 recipe probe (seed 0, 50 epochs, the recipe's augmentation),
    with parameters and FLOPs from a stored ResNet-18 record (they do not depend on the budget)."""
    resnet = next((p for p in probe if p["model"] == "resnet18" and p["change"] == {"augment": "basic"}), None)
    stored = load_results(results / "runs", model="resnet18", dataset="bloodmnist")
    deep_stored = load_results(results / "runs", model="deep_efficientnet", dataset="bloodmnist")
    if not resnet or not stored or not deep_stored:
        return ""
    size = lambda r: f"{r['params'] / 1e6:.2f}\\,M parameters and {r['flops'] / 1e6:.0f}\\,MFLOPs"
    ahead = resnet["val"] > deep["val"]
    return (f"The recipe probe on one H100 (seed 0, commit dff1171, Section~\\ref{{sec:method}}) trained ResNet-18 with "
            f"this recipe for 50 epochs: validation {pct(resnet['val'])}\\% and test {pct(resnet['test'])}\\%, against "
            f"{pct(deep['val'])}\\% and {pct(deep['test'])}\\% for DeepEfficientNet in the same probe, so ResNet-18 "
            + ("stays ahead" if ahead else "is not ahead")
            + f" on validation ({signed(100 * (resnet['val'] - deep['val']))} points; test "
            f"{signed(100 * (resnet['test'] - deep['test']))}) with {size(stored[0])}, against {size(deep_stored[0])}. "
            "The probe stored a line of numbers per run, not a run record with predictions, and one seed on another "
            "device, so it is not a row of Table~\\ref{tab:headline}.")


def zoo_section(results: Path) -> Section:
    m, t = study_table_section(results, "architectures", "Zoo")
    t = {"zoo": t["architectures"]}
    zoo = shown_summary("architectures", results)
    if zoo:
        m.update(_best_on_validation(zoo, "Zoo"))
        by_val = sorted(zoo["rows"], key=lambda r: -r["val_acc_mean"])
        rank = next((i + 1 for i, r in enumerate(by_val) if r["name"] == "DeepEfficientNet"), None)
        if rank:
            m.update(DeepEffRank=_ordinal(rank), ZooRows=str(len(by_val)))
    return m, t


def imbalance_section(results: Path) -> Section:
    imbalance = shown_summary("imbalance", results)
    if not imbalance:
        return {}, {"imbalance": _table(["Strategy", "Macro-F1"], [], "notebook 08 not run yet")}
    eda = _read(results, "eda/bloodmnist.json")
    # The figures' names (IG for immature granulocytes), cut to four letters so 8 recall columns fit the page.
    short = [name if name in ABBREVIATIONS.values() else name[:4]
             for name in short_names(eda["class_names"] if eda else [])]
    rows = [[tex_escape(r["name"]), f"{r['val_macro_f1_mean']:.3f}", f"{r['test_macro_f1_mean']:.3f}",
             pct(r["test_acc_mean"]), f"{r['min_recall']:.3f}"]
            + [f"{v:.2f}" for v in r["recall_mean"]] for r in imbalance["rows"]]
    best = _chosen_row(imbalance)
    model_labels = {model: label for label, (model, kwargs) in BASELINES.items() if not kwargs}
    return ({"ImbalanceBudget": budget_note(imbalance),
             "ImbalanceModel": tex_escape(model_labels.get(imbalance["model"], imbalance["model"])),
             "ImbalanceEpochs": str(best.get("epochs", "")), "ImbalanceBest": tex_escape(best["name"].lower()),
             "ImbalanceSeeds": str(imbalance["rows"][0]["seeds"])},
            {"imbalance": _table(["Strategy", "Val F1", "Test F1", "Acc (\\%)", "Min recall"]
                                 + [tex_escape(s) for s in short], rows, "not run yet")})


def pcam_section(results: Path) -> Section:
    """PatchCamelyon (cpu profile: the full profile trains it only on a GPU): its tables and macros."""
    m: dict[str, str] = {}
    t: dict[str, str] = {}
    pcam_data = _read(results, "eda/pcam.json")
    if pcam_data:
        dup = pcam_data["duplicates"]
        m.update(PcamDropped=str(sum(d["dropped"] for d in dup.values())),
                 PcamGroups=str(sum(d["groups"] for d in dup.values())),
                 PcamTrain=f"{dup['train']['kept']:,}", PcamVal=f"{dup['val']['kept']:,}", PcamTest=f"{dup['test']['kept']:,}")
    pcam = shown_summary("pcam", results)
    if pcam:
        m.update(PcamProfile=pcam["provenance"]["profile"], PcamBudget=budget_note(pcam))
        # The best run on validation, and beside it the same checkpoint scored with test-time augmentation.
        best_key = next(k for k, s in pcam["runs"].items() if s["run"] == pcam["best_on_val"])
        runs = dict(pcam["runs"])
        tta_key = best_key + " + TTA"
        runs[tta_key] = pcam["tta"]["study"]
        rows, threshold_rows = [], []
        for key, s in runs.items():
            a, b = s["test_at_0.5"], s["test_at_val_threshold"]
            rows.append([tex_escape(key), f"{s['train_n']:,}", str(s["epochs_run"]), f"{s['val_at_0.5']['auc']:.4f}",
                         f"{a['auc']:.4f}", pct(a["acc"]),
                         f"{a['sensitivity']:.3f}", f"{a['specificity']:.3f}", f"{a['f1']:.3f}"])
            threshold_rows.append([tex_escape(key), f"{s['threshold']:.2f}", pct(b["acc"]), f"{b['sensitivity']:.3f}",
                                   f"{b['specificity']:.3f}", f"{b['f1']:.3f}"])
        t["pcam"] = _table(["Model", "Train $n$", "Ep.", "Val AUC", "AUC", "Acc (\\%)", "Sens", "Spec", "F1"], rows,
                           "not run yet")
        t["pcam_threshold"] = _table(["Model", "$t_{\\mathrm{val}}$", "Acc (\\%)", "Sens", "Spec", "F1"], threshold_rows,
                                     "not run yet")
        # Scratch and ImageNet weights are compared where both had the same budget: the screen.
        screen = {k: s for k, s in pcam["runs"].items() if pcam["stages"][k] == "screen"}
        lite = {"Lite0 (ImageNet)": "PcamLiteImageNet", "Lite0 (scratch)": "PcamLiteScratch"}
        for key, s in screen.items():
            if pcam["labels"][key] in lite:
                m[lite[pcam["labels"][key]] + "AUC"] = f"{s['test_at_0.5']['auc']:.4f}"
                m[lite[pcam["labels"][key]] + "ValAUC"] = f"{s['val_at_0.5']['auc']:.4f}"
        first = next(iter(screen.values()))
        m.update(PcamScreenTrain=f"{first['train_n']:,}", PcamScreenEpochs=str(first["epochs"]))
        final = runs[pcam["final"]]
        m.update(PcamBest=tex_escape(pcam["final"]), PcamBestAcc=pct(final["test_at_0.5"]["acc"]),
                 PcamBestAUC=f"{final['test_at_0.5']['auc']:.4f}",
                 PcamBestAccTval=pct(final["test_at_val_threshold"]["acc"]), PcamBestTval=f"{final['threshold']:.2f}",
                 PcamAccTarget=pcam["verdict"]["acc"], PcamAUCTarget=pcam["verdict"]["auc"],
                 PcamTargetAcc=f"{100 * pcam['targets']['acc']:g}", PcamTargetAUC=f"{pcam['targets']['auc']:g}")
        degenerate = [(tex_escape(key), s["test_at_0.5"]) for key, s in pcam["runs"].items()
                      if {round(s["test_at_0.5"]["sensitivity"], 3), round(s["test_at_0.5"]["specificity"], 3)} == {0.0, 1.0}]
        m["PcamDegenerateSentence"] = " ".join(
            f"{key} is degenerate at threshold 0.5: it calls every test patch "
            f"{'metastatic' if a['sensitivity'] > 0.5 else 'normal'} (sensitivity {a['sensitivity']:.3f}, specificity "
            f"{a['specificity']:.3f}), so only its AUC ({a['auc']:.4f}) says anything about it." for key, a in degenerate) \
            or "No run is degenerate at threshold 0.5 (all of one class predicted)."
        m.update(PcamTrainPercent=f"{100 * final['train_n'] / PCAM_TRAIN_PATCHES:.1f}",
                 PcamFullTrain=f"{PCAM_TRAIN_PATCHES:,}")
        m.update(PcamTrainUsed=f"{final['train_n']:,}", PcamEpochs=str(final["epochs"]),
                 PcamTTAKept="kept" if pcam["tta"]["kept"] else "not kept")
        levers = {r["lever"]: r for r in pcam["levers"]}
        m["PcamTTAValDelta"] = signed(levers['test-time augmentation']['val_auc'], 4)
        if "1.5x input" in levers:
            m["PcamInputValDelta"] = signed(levers['1.5x input']['val_auc'], 4)
        # Wrapped columns: the runs' labels are long, and a shrunk table would print below 7 pt.
        t["pcam_levers"] = _table(["Change", "From", "To", "$\\Delta$ val AUC", "$\\Delta$ test AUC"],
                                  [[tex_escape(r["lever"]), tex_escape(r["from"]), tex_escape(r["to"]),
                                    signed(r['val_auc'], 4), signed(r['test_auc'], 4)]
                                   for r in pcam["levers"]], "not run yet",
                                  align=">{\\raggedright\\arraybackslash}p{0.9in}>{\\raggedright\\arraybackslash}p{1.35in}>{\\raggedright\\arraybackslash}p{1.35in}rr")
        scaling = pcam["scaling"]
        epochs = {s["epochs"] for s in pcam["scaling_runs"].values()}
        m.update(PcamScalingTrainMin=f"{min(scaling['train_n']):,}", PcamScalingEpochs="/".join(map(str, sorted(epochs))))
        for metric, name in (("auc", "AUC"), ("acc", "Acc")):
            fit = scaling["fits"][metric]
            m[f"PcamScaling{name}Patches"] = f"{fit['patches_for_target']:,.0f}"
            m[f"PcamScaling{name}TimesPcam"] = f"{fit['patches_for_target'] / PCAM_TRAIN_PATCHES:.2f}"
        m["PcamScalingAUCPerTenfold"] = signed(scaling['fits']['auc']['per_tenfold'], 4)
        m["PcamScalingVerdict"] = tex_escape({
            "within the patches used": "at least one lies within the patches used here",
            "within all of PCam's training patches": "both lie beyond the patches used here but within PCam's whole "
                                                     "training split",
            "beyond all of PCam's training patches": "both lie beyond the patches used here, and at least one beyond "
                                                     "PCam's whole training split"}[scaling["targets_reached"]])
    else:
        t["pcam"] = _table(["Model", "AUC"], [], "notebook 07 not run yet")

    return m, t


def headline_section(results: Path) -> Section:
    """The full-budget BloodMNIST models stored so far (baselines and attention variants; every seed stored), the
    validation-chosen one, DeepEfficientNet's place among them and its TTA row."""
    rows = full_budget_rows(results)
    table_rows = [[tex_escape(r["name"]), str(r["seeds"]),
                   f"{r['params'] / 1e6:.2f}", f"{r['flops'] / 1e6:.0f}", pm(r["val_acc_mean"], r["val_acc_std"], r["seeds"]),
                   pm(r["test_acc_mean"], r["test_acc_std"], r["seeds"]), f"{r['test_macro_f1_mean']:.3f}",
                   f"{r['test_auc_mean']:.4f}"] for r in sorted(rows, key=lambda r: -r["val_acc_mean"])]
    # Every row scored the same way, in one forward pass: DeepEfficientNet's TTA is reported in its own section only.
    t = {"headline": _table(["Model", "Seeds", "Params (M)", "MFLOPs", "Val acc (\\%)", "Test acc (\\%)", "Macro-F1",
                             "AUC"], table_rows, "no full-budget run stored yet")}
    if not rows:
        return {"HeadlineModels": "0"}, t
    best = max(rows, key=lambda r: r["val_acc_mean"])
    runs = [run for name in ("baselines", "attention") for run in (read_summary(name, "full", results) or {}).get("runs", [])]
    devices = sorted({device_label(record["device"]) for record in map(lambda run: _run(results, run), runs) if record})
    missing = list(missing_full_budget(results / "runs"))  # the headline models short of full-budget seeds
    m = {"HeadlineModels": str(len(rows)), "HeadlineRuns": str(len(runs)), "HeadlineDevices": tex_escape(", ".join(devices)),
         "HeadlineMissing": tex_escape(missing_full_sentence(results / "runs", command=None)),
         "HeadlineIncomplete": tex_escape(f"Models whose full-budget runs are not all stored yet ({', '.join(missing)}) are "
                                          "named, with their seeds, in notebooks 02 and 04.") if missing else "",
         "HeadlineOpen": (f"the full-budget seeds still missing for {tex_escape(_and(missing))} "
                          "(Section~\\ref{sec:full});" if missing else ""),
         "HeadlineMissingCommand": tex_escape(MISSING_FULL_COMMAND).replace("--", "-{}-") if missing else "",
         "HeadlineBest": tex_escape(best["name"]), "HeadlineBestTestAcc": pct(best["test_acc_mean"])}
    ours = next((r for r in rows if r["name"] == "DeepEfficientNet"), None)
    if ours:
        ahead = [r for r in rows if r["val_acc_mean"] > ours["val_acc_mean"]]
        m["HeadlineAheadSentence"] = tex_escape(
            "On validation, " + _and([f"{r['name']} ({r['params'] / 1e6:.2f}M parameters, {r['flops'] / 1e6:.0f} MFLOPs, "
                                      f"val {pct(r['val_acc_mean'])}%, test {pct(r['test_acc_mean'])}%)" for r in ahead])
            + f" {'stays' if len(ahead) == 1 else 'stay'} ahead of DeepEfficientNet ({ours['params'] / 1e6:.2f}M, "
              f"{ours['flops'] / 1e6:.0f} MFLOPs, val {pct(ours['val_acc_mean'])}%)." if ahead else
            "No full-budget model stored so far is ahead of DeepEfficientNet on validation.")
        ahead_on_test = sorted((r for r in rows if r["test_acc_mean"] > ours["test_acc_mean"]),
                               key=lambda r: -r["test_acc_mean"])
        m["HeadlineTestSentence"] = tex_escape(
            f"On the test split DeepEfficientNet ({pct(ours['test_acc_mean'])}%) is behind "
            + ("every other full-budget model stored: " if len(ahead_on_test) == len(rows) - 1 else
               f"{len(ahead_on_test)} of the {len(rows) - 1} other full-budget models stored: ")
            + _and([f"{r['name']} ({pct(r['test_acc_mean'])}%)" for r in ahead_on_test]) + "." if ahead_on_test else
            f"On the test split no other full-budget model stored is ahead of DeepEfficientNet "
            f"({pct(ours['test_acc_mean'])}%).")
    return m, t


# The claims of the projects this repository grew from, as their READMEs state them, and what each can be set
# against here. Only the words are typed; this repository's numbers are read from results/ (claims_section).
SEED_CLAIMS = (
    {"claim": "98.0% test accuracy, DeepEfficientNet (1.84M parameters)", "data": "blood-cell images; split, "
     "resolution and how the epoch was chosen not stated", "ours": "deep_efficientnet",
     "why": "ours: official BloodMNIST test split at 28x28, each checkpoint chosen on validation, over the seeds stored"},
    {"claim": "98.3% on BloodMNIST", "data": "BloodMNIST; model, split and resolution not stated", "ours": "best",
     "why": "ours: the full-budget model chosen on validation, scored once on the official test split"},
    {"claim": "98% accuracy, 0.97 macro-F1", "data": "NCT-CRC-HE-7K / PathMNIST; split not stated", "ours": None,
     "why": "not run: PathMNIST is not among the data available to this repository"},
    {"claim": "97.6% validation accuracy, EfficientNet-B0", "data": "PatchCamelyon; which validation split and how "
     "many patches not stated", "ours": "pcam_b0",
     "why": "ours: validation accuracy at threshold 0.5 after the cpu profile's short screen on a stratified subset "
            "of a 26,000-patch PCam subset; a random Kaggle-style split shares slides between train and validation"},
)


def claims_section(results: Path) -> Section:
    """``SEED_CLAIMS`` beside this repository's closest result: DeepEfficientNet's seed mean (full budget where
    stored), the validation-chosen BloodMNIST model, and EfficientNet-B0's PatchCamelyon validation accuracy."""
    deep = shown_summary("deep_efficientnet", results)
    ours_rows = our_bloodmnist_rows(results)
    baselines = shown_summary("baselines", results)
    pcam = shown_summary("pcam", results)
    found = {}
    if deep:
        seeds = deep["seeds"]
        found["deep_efficientnet"] = (f"{pct(seeds['test_acc_mean'])}% test ({deep['provenance']['profile']}, "
                                      f"{len(seeds['runs'])} seed{'s' if len(seeds['runs']) > 1 else ''})")
    if baselines:
        best = _chosen_row(baselines)
        found["best"] = f"{best['name']}: {pct(best['test_acc_mean'])}% test ({baselines['provenance']['profile']})"
    if pcam and "EfficientNet-B0" in pcam["runs"]:
        b0 = pcam["runs"]["EfficientNet-B0"]
        final = pcam["runs"][pcam["final"].removesuffix(" + TTA")]
        found["pcam_b0"] = (f"EfficientNet-B0: {pct(b0['val_at_0.5']['acc'])}% val, AUC {b0['val_at_0.5']['auc']:.3f} "
                            f"({pcam['provenance']['profile']} screen, {b0['train_n']:,} patches, {b0['epochs_run']} ep.); "
                            f"the model chosen on validation, {pcam['final']}: {pct(final['val_at_0.5']['acc'])}% val "
                            f"({final['train_n']:,} patches, {final['epochs_run']} ep.)")
    rows = [[tex_escape(c["claim"]), tex_escape(c["data"]), tex_escape(found.get(c["ours"], "not run")), tex_escape(c["why"])]
            for c in SEED_CLAIMS]
    wrap = r">{\raggedright\arraybackslash}p{1.1in}>{\raggedright\arraybackslash}p{1.15in}" \
           r">{\raggedright\arraybackslash}p{1.1in}>{\raggedright\arraybackslash}p{1.45in}"
    return {}, {"claims": _table(["Claim", "Data and split, as stated", "This repository", "Why they differ"], rows,
                                 "no claims", align=wrap)}


def claims_markdown(results: Path = Path("results")) -> str:
    """The claims table for the README, from the same rows as the report's."""
    _, tables = claims_section(results)
    body = [line.rstrip(" \\").split(" & ") for line in tables["claims"].splitlines()
            if " & " in line and "Claim" not in line]
    unescape = lambda text: text.replace(r"\%", "%").replace(r"\_", "_").replace(r"$\times$", "x")
    lines = ["| claim | data and split, as stated | this repository | why they differ |", "|---|---|---|---|"]
    return "\n".join(lines + ["| " + " | ".join(unescape(cell) for cell in row) + " |" for row in body])


INGREDIENT_HEADER = ["Ingredient (the ablation that removes it)", "Claimed (points)",
                     "Full budget: test, recipe minus ablation (points), verdict",
                     "Screen: val, recipe minus ablation (points)"]


def ingredient_pairs(rows: list[dict]) -> dict[str, dict]:
    """The paired rows of the recipe's ingredients (SE's included), each under the ablation that removes it."""
    return {r["base"]: r for r in rows if r["backbone"] == "DeepEfficientNet" and r["variant"] == "recipe"}


def ingredient_rows(results: Path) -> list[list[str]]:
    """The course project's credit for each ingredient of DeepEfficientNet's recipe (``RECIPE_INGREDIENTS``) beside
    what this repository measured: at the full budget the paired test difference, recipe minus the ablation that
    removes it, over the seeds stored (with its t interval) and the verdict rule's word; at the ablation screen the
    validation difference, labelled as a screen. Plain text; the report and the docs format it."""
    from .comparisons import p_clause
    paired = read_summary("paired", "full", results)
    screen = read_summary("ablations", "cpu", results)
    by_base = ingredient_pairs((paired or {}).get("rows", []))
    screen_rows = {r["name"]: r for r in (screen or {}).get("rows", [])}
    screen_recipe = screen_rows.get("recipe")
    rows = []
    for ingredient, ablation, claimed in RECIPE_INGREDIENTS:
        row = by_base.get(ablation)
        if row is None or not row["seeds_paired"]:
            full = f"not trained yet (0 of {row['seeds_planned'] if row else 3} seeds)"
            if ablation == PREVIOUS_RECIPE:
                full += "; the previous recipe's H100 bf16 runs are a row of their own among the full-budget ablations"
        else:
            interval = row["test_diff_interval"]
            full = (f"{row['test_diff_mean']:+.2f} ({row['seeds_paired']} of {row['seeds_planned']} seeds"
                    + (f"; 95% interval {interval[0]:+.2f} to {interval[1]:+.2f}" if interval else "")
                    # McNemar on the pooled test images: the uncertainty a single seed has, which no interval gives
                    + f"; McNemar {p_clause(row['mcnemar_test_pooled']['p'])}"
                    # "pending (1 of 3 seeds)" would repeat the seeds just given
                    + f"): {'pending' if row['verdict'].startswith('pending') else row['verdict']}")
        shown = screen_rows.get(ablation)
        at_screen = (f"{100 * (screen_recipe['val_acc_mean'] - shown['val_acc_mean']):+.2f} ({shown['seeds']} "
                     f"seed{'s' if shown['seeds'] != 1 else ''})" if shown and screen_recipe else "not run")
        rows.append([f"{ingredient} ({ablation.split(' (')[0]})", f"+{claimed:g}" if claimed is not None else "none",
                     full, at_screen])
    return rows


def ingredients_section(results: Path) -> Section:
    # A true minus sign in print, as signed() writes it.
    rows = [[re.sub(r"(^|[\s(])-(\d)", r"\1$-$\2", tex_escape(cell)) for cell in row] for row in ingredient_rows(results)]
    screen = read_summary("ablations", "cpu", results)
    m = {}
    if screen and (run := _run(results, screen["runs"][0])):
        m.update(IngredientScreenEpochs=str(run["config"]["epochs"]), IngredientScreenImages=f"{run['data']['n']['train']:,}")
    wrap = r">{\raggedright\arraybackslash}p{1.7in}>{\raggedleft\arraybackslash}p{0.6in}" \
           r">{\raggedright\arraybackslash}p{1.8in}>{\raggedright\arraybackslash}p{0.9in}"
    return m, {"ingredients": _table(INGREDIENT_HEADER, rows, "no ablation stored", align=wrap)}


def ingredients_markdown(results: Path = Path("results")) -> str:
    """The ingredients table for docs/results.md, from the same rows as the report's."""
    lines = ["| " + " | ".join(h[0].lower() + h[1:] for h in INGREDIENT_HEADER) + " |",
             "|" + "---|" * len(INGREDIENT_HEADER)]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in ingredient_rows(results)])


def deployment_section(results: Path) -> Section:
    """The released checkpoints beside the stored deployment evaluations (results/deployment/): ONNX agreement and
    speed, selective prediction at 90% coverage, MedMNIST-C robustness; and the ensemble's numbers."""
    root = results / "deployment"
    onnx = {p.stem: json.loads(p.read_text()) for p in sorted((root / "onnx").glob("*.json"))}
    robust = {p.stem: json.loads(p.read_text()) for p in sorted((root / "robustness").glob("*.json"))}
    selective = {p.stem: json.loads(p.read_text()) for p in sorted((root / "selective").glob("*.json"))}
    if not onnx:
        return {}, {"deployment": _table(["Run", "Test acc (\\%)"], [], "no released checkpoint evaluated yet")}
    rows = []
    for run, check in onnx.items():
        c, r = check["check"], robust.get(run)
        study = next((sel for sel in selective.values() if run in sel["predictors"]), None)
        at90 = study["predictors"][run]["selective"]["max_prob"]["at_coverage"]["0.90"]["test"] if study else None
        record = _run(results, run)
        rows.append([tex_escape(f"{record['model']} s{record['seed']}" if record else run), pct(c["acc"]["pytorch"]),
                     f"{c['argmax_agree']:,}/{c['n']:,}", f"{c['max_abs_prob_diff']:.1e}",
                     f"{c['speed']['pytorch']['batch1_ms_median']:.1f} / {c['speed']['onnxruntime']['batch1_ms_median']:.1f}",
                     f"{pct(at90['acc'])} ({pct(at90['coverage'], 1)})" if at90 else MISSING,
                     f"{pct(r['mean_corruption_acc'], 1)} ({pct(r['relative_drop'], 1)})" if r else MISSING])
    agree = all(c["check"]["argmax_agree"] == c["check"]["n"] for c in onnx.values())
    m = {"DeployRuns": str(len(onnx)), "DeployOnnxAgree": "every" if agree else "not every",
         "DeployOnnxMaxDiff": f"{max(c['check']['max_abs_prob_diff'] for c in onnx.values()):.1e}",
         "DeployThreads": str(next(iter(onnx.values()))["check"]["threads"]),
         "DeployTrainedOn": tex_escape(", ".join(sorted({device_label(r["device"]) for r in
                                                         (_run(results, run) for run in onnx) if r}))),
         "DeployLoad": f"{max(c['check']['load_average_1min'] for c in onnx.values()):.1f}"}
    if robust:
        drops = [r["relative_drop"] for r in robust.values()]
        m.update(DeployRobustDropLow=pct(min(drops), 1), DeployRobustDropHigh=pct(max(drops), 1))
        worst_of = lambda r: sorted(r["mean_acc_per_corruption"].items(), key=lambda kv: kv[1])[:3]
        first = next(iter(robust.values()))
        m["DeployWorstCorruptions"] = tex_escape(_and([f"{name.replace('_', ' ')} ({pct(acc, 1)}%)"
                                                       for name, acc in worst_of(first)])
                                                 + f" for {first['model']} s{first['seed']}")
    ensemble = next((sel for sel in selective.values() if "ensemble" in sel["predictors"]), None)
    if ensemble:
        e = ensemble["predictors"]["ensemble"]
        at90 = e["selective"]["max_prob"]["at_coverage"]["0.90"]["test"]
        m.update(DeployEnsembleModel=tex_escape(ensemble["model"]), DeployEnsembleSeeds=str(len(ensemble["runs"])),
                 DeployEnsembleAcc=pct(e["metrics"]["test"]["acc"]),
                 DeployEnsembleECE=f"{e['metrics']['test']['ece']:.3f}",
                 DeployEnsembleECET=f"{e['metrics_temperature']['test']['ece']:.3f}",
                 DeployEnsembleAtNinety=pct(at90["acc"]), DeployEnsembleCoverage=pct(at90["coverage"], 1))
    # Two-line headers: on one line each, the table had to shrink to a third of the text size to fit.
    header = ["Run", "\\shortstack{Test\\\\acc (\\%)}", "\\shortstack{ONNX argmax\\\\agree}", "max $|\\Delta p|$",
              "\\shortstack{batch-1 ms\\\\(PyTorch / ORT)}", "\\shortstack{Acc at 90\\% cov.\\\\(test cov.)}",
              "\\shortstack{MedMNIST-C acc\\\\(rel. drop)}"]
    return m, {"deployment": _table(header, rows, "no released checkpoint evaluated yet",
                                    align=r"lrrrrrr")}


def malloc_sentence(bench: dict) -> str:
    """What keeping freed memory did to the speedrun's step (``python -m utils.bench --malloc``)."""
    ratios = ", ".join(f"{precision} steps {r['speedup']:.2f}x as fast with it ({r['median_ms']['kept']:.1f} against "
                       f"{r['median_ms']['default']:.1f} ms)" for precision, r in bench["by_precision"].items())
    return (f"{ratios} on {bench['device']}, {bench['threads']} threads, the medians of {bench['rounds']} alternating "
            f"rounds of {bench['timed_steps']} steps, commit {bench['git_commit'][:7]}")


def speedrun_section(results: Path) -> Section:
    """The speedrun (utils.speedrun): the candidates searched on validation and each precision's recipe over seeds on
    test, with the side-by-side timing against the standard recipe."""
    from statistics import mean, stdev
    from .speedrun import (AIM_SECONDS, EARLIER, PLAIN_SCORED_CHOICE, PRECISIONS, SEARCH_LIMIT_SECONDS, TARGET_ACCURACY,
                           TIME_LIMIT_SECONDS, other_cpu_records, other_cpu_sentence, read_candidates, read_speedruns, recipe_for,
                           retimed_sentence, search_rows, stored_recipe, superseded, superseded_note, superseded_sentence,
                           target_verdicts, tta_wins)
    folder = results / "speedrun"
    entries = read_candidates(folder, missing_ok=True)
    if not entries:
        return {}, {"speedrun": _table(["Candidate", "Seeds", "Val acc (\\%)", "Seconds"], [], "not measured yet")}
    chosen = {recipe_for(precision).label: precision for precision in PRECISIONS}
    scored = {row["candidate"]: row for row in search_rows(entries)}
    rows = [[tex_escape(row["label"]) + (f" (chosen, {chosen[row['label']]})" if row["label"] in chosen else ""),
             ", ".join(map(str, row["seeds"])), pct(row["val_acc"]), f"{row['seconds']:.0f}"]
            for row in sorted(scored.values(), key=lambda r: (len(r["seeds"]), r["seconds"]))
            if row["candidate"].tta]  # the ones that compete (choose)
    finalists = [row for row in scored.values() if len(row["seeds"]) > 1]
    m = {"SpeedrunCandidates": str(len(scored)), "SpeedrunTrainings": str(len(entries)),
         "SpeedrunFinalists": str(len({row["candidate"].trained_as() for row in finalists})),
         "SpeedrunFinalistSeeds": str(max((len(row["seeds"]) for row in finalists), default=1)),
         "SpeedrunLimit": str(SEARCH_LIMIT_SECONDS), "SpeedrunTimeLimit": str(TIME_LIMIT_SECONDS),
         "SpeedrunAim": str(AIM_SECONDS), "SpeedrunTarget": pct(TARGET_ACCURACY, 1),
         "SpeedrunSearchMachine": tex_escape(f"{entries[0]['machine']['cpu']}, {entries[0]['machine']['threads']} threads"),
         "SpeedrunRetimed": tex_escape(retimed_sentence(entries))}
    wins, trainings, gain = tta_wins(entries)
    m.update(SpeedrunTtaWins=f"{wins} of the search's {trainings} trainings", SpeedrunTtaGain=f"{gain:+.2f}")
    current = {precision: read_speedruns(folder, recipe_for(precision)) for precision in PRECISIONS}
    if PLAIN_SCORED_CHOICE in scored and current["fp32"]:
        lead = scored[PLAIN_SCORED_CHOICE]["val_acc"] - scored[recipe_for("fp32")]["val_acc"]
        m["SpeedrunPlainLead"] = f"{lead * current['fp32'][0]['val']['n']:.1f} validation images"
    for precision, prefix in (("bf16", "SpeedrunBf"), ("fp32", "SpeedrunFp")):
        recipe = recipe_for(precision)
        m[f"{prefix}Recipe"] = tex_escape(recipe.label)
        records = current[precision]
        if not records:
            m[f"{prefix}Targets"] = "Its seeds are not measured yet."
            continue
        accs, seconds, first = [r["test"]["acc"] for r in records], [r["wall_seconds"] for r in records], records[0]
        m.update({f"{prefix}Seeds": str(len(records)),
                  f"{prefix}TestAcc": pm(mean(accs), stdev(accs) if len(accs) > 1 else 0.0, len(accs)),
                  f"{prefix}TestAccMean": pct(mean(accs), 1), f"{prefix}ValAccMean": pct(mean(r["val"]["acc"] for r in records)),
                  f"{prefix}Seconds": f"{mean(seconds):.0f}", f"{prefix}SecondsMax": f"{max(seconds):.0f}",
                  f"{prefix}Machine": tex_escape(f"{first['cpu']}, {first['threads']} threads"),
                  f"{prefix}Targets": tex_escape("It {} and its longest seed is {}.".format(*target_verdicts(records))),
                  f"{prefix}Commit": first["git_commit"][:7]})
    versus = _read(results, "speedrun/versus_standard.json")
    if versus:
        m.update(SpeedrunSpeedup=f"{versus['speedup']:.1f}", SpeedrunStandardSeconds=f"{versus['standard']['seconds']:.0f}",
                 SpeedrunVersusSeconds=f"{versus['speedrun']['seconds']:.0f}",
                 SpeedrunVersusRecipe=tex_escape(versus["speedrun"]["label"] + superseded_note(versus)),
                 SpeedrunVersusTestAcc=pct(versus["speedrun"]["test_acc"]),
                 SpeedrunStandardTestAcc=pct(versus["standard"]["test_acc"]), SpeedrunVersusThreads=str(versus["threads"]))
        stored = [r for r in load_results(results / "runs", model="simple_cnn", dataset="bloodmnist", profile="full",
                                          seed=versus["seed"]) if not r.get("tag")]
        if stored:
            m["SpeedrunStandardStored"] = tex_escape(
                f"SimpleCNN seed {versus['seed']} was trained again for this timing; its stored full-budget run, "
                f"on {device_label(stored[0]['device'])}, reached {pct(stored[0]['test']['acc'])}% test accuracy: a "
                "different thread count sums in a different order, so the two trainings part ways.")
    malloc = _read(results, MALLOC_FILE)
    seeds = [r for records in current.values() for r in records]
    kept = sum(bool(r.get("freed_memory_kept")) for r in seeds)
    m["SpeedrunMalloc"] = tex_escape(
        (malloc_sentence(malloc) if malloc else f"not measured yet: python -m utils.bench --malloc --out results/{MALLOC_FILE}")
        + f". {kept} of the {len(seeds)} stored seeds of the two recipes below ran with it")
    m["SpeedrunSuperseded"] = tex_escape(" ".join(f"Also stored: {superseded_sentence(recipe, records)}."
                                                  for recipe, records in superseded(folder)))
    m["SpeedrunOtherCpus"] = tex_escape(" ".join(other_cpu_sentence(recipe, records)
                                                 for _, recipe, records in other_cpu_records(folder)))
    if (finding := speedrun_finding(folder)) is not None:
        m["SpeedrunShort"] = tex_escape(finding)
    earlier_folder = folder / EARLIER.name
    if (earlier_recipe := stored_recipe(earlier_folder)) and (earlier := read_speedruns(earlier_folder, earlier_recipe)):
        m.update(SpeedrunEarlierTestAcc=pct(mean(r["test"]["acc"] for r in earlier)),
                 SpeedrunEarlierSeconds=f"{mean(r['wall_seconds'] for r in earlier):.0f}",
                 SpeedrunEarlierMachine=tex_escape(earlier[0]["cpu"]), SpeedrunEarlierRecipe=tex_escape(earlier[0]["label"]))
    # The labels wrap: the longest ones are wider than the page at 8 pt.
    return m, {"speedrun": _table(["Candidate", "Seeds", "Val acc (\\%)", "Seconds"], rows, "not measured yet",
                                  align=r">{\raggedright\arraybackslash}p{0.58\linewidth}rrr")}


def versions_section(results: Path) -> Section:
    runs = load_results(results / "runs")
    if not runs:
        return {"ProvenanceSlowEpochs": ""}, {}
    versions = Counter(r["torch_version"] for r in runs)
    return {"TorchVersions": tex_escape(", ".join(f"{v} ({n} {plural(n, 'run')})" for v, n in versions.most_common())),
            "ProvenanceSlowEpochs": tex_escape(slow_epochs_sentence(runs))}, {}


def slow_epoch_minutes(record: dict, factor: float = 2.0) -> tuple[float, int]:
    """The minutes a run's epochs spent beyond its median epoch, summed over the epochs that took more than ``factor``
    times the median (a paused worker, or a core shared with other work), and how many epochs those were."""
    seconds = [epoch["seconds"] for epoch in record.get("history") or [] if "seconds" in epoch]  # since training began
    durations = [b - a for a, b in zip([0.0] + seconds, seconds)]
    if len(durations) < 3:
        return 0.0, 0
    median = statistics.median_high(durations)
    slow = [d - median for d in durations if d > factor * median]
    return sum(slow) / 60, len(slow)


def slow_epochs_sentence(runs: list[dict], at_least_minutes: float = 10.0, factor: float = 2.0) -> str:
    """The full-budget CPU runs whose training seconds hold ``at_least_minutes`` or more beyond their median epoch in
    slow epochs (``slow_epoch_minutes``), found from their own per-epoch times, so no pause goes unlisted."""
    listed = []
    for record in sorted(runs, key=lambda r: r["run"]):
        if record.get("profile") == "full" and str(record.get("device", "")).startswith("cpu"):
            minutes, epochs = slow_epoch_minutes(record, factor)
            if minutes >= at_least_minutes:
                listed.append(f"{record['run']} ({minutes:.0f} min over {epochs} {plural(epochs, 'epoch')})")
    if not listed:
        return ""
    return (f"Found from the records' own per-epoch times, the full-budget CPU runs (by record name) whose training "
            f"seconds hold {at_least_minutes:.0f} minutes or more beyond their median epoch in epochs that took over "
            f"{factor:g} times that median (a paused worker, or a core shared with other work; their time columns are "
            f"that much longer than the training itself): {'; '.join(listed)}.")


def plural(n: int, word: str) -> str:
    return word if n == 1 else f"{word}s"


def published_at_28() -> list[tuple[str, float]]:
    """The published BloodMNIST test accuracies at 28x28, (name, accuracy)."""
    return [(name, acc) for key, name, _, size, _, acc, _ in PUBLISHED if key == "bloodmnist" and size == 28]


def best_published_at_28() -> tuple[str, float]:
    return max(published_at_28(), key=lambda p: p[1])


def full_budget_rows(results: Path) -> list[dict]:
    """The full-budget BloodMNIST rows of the baselines and attention studies (seed means, plain scoring), each with
    its study and an attention row named as the model it is."""
    return [dict(r, study=name, name=attention_model_label(r["name"]) if name == "attention" else r["name"])
            for name in ("baselines", "attention") for r in (read_summary(name, "full", results) or {}).get("rows", [])]


def published_section(results: Path) -> Section:
    """The verdict and table beside the published results, and the MedMNIST v2 figures the related work cites: its
    ResNet-18 at 28x28 and its best 28x28 baseline."""
    best_name, best_acc = best_published_at_28()
    resnet = dict(published_at_28())["ResNet-18 (28)"]
    return ({"PublishedVerdict": published_verdict(results), "PublishedResNetAcc": pct(resnet, 1),
             "PublishedBestAcc": pct(best_acc, 1), "PublishedBestName": tex_escape(best_name)},
            {"published": published_table(results)})


# --- Findings: the paired comparisons (utils.comparisons, the "paired" summary), the budgets table, the abstract's
# sentences. Each sentence is built from results/, so the abstract and conclusion say only what the files say.
PAIRED_HEADER = ["Comparison", "Seeds", "$\\Delta$ val", "$\\Delta$ test", "95\\% interval", "$b$ / $c$", "$p$",
                 "Verdict"]


def _interval(interval) -> str:
    return f"{signed(interval[0])} to {signed(interval[1])}" if interval else ""


def paired_rows(rows: list[dict]) -> list[list[str]]:
    from .comparisons import format_p
    out = []
    for r in rows:
        mc = r["mcnemar_test_pooled"]
        verdict = r["verdict"].split(", interval")[0].split(" (")[0]  # the interval and the seeds have their columns
        out.append([tex_escape(r["name"]), f"{r['seeds_paired']}/{r['seeds_planned']}",
                    signed(r["val_diff_mean"]) if r["seeds_paired"] else "",
                    signed(r["test_diff_mean"]) if r["seeds_paired"] else "", _interval(r["test_diff_interval"]),
                    f"{mc['variant_only_right']} / {mc['base_only_right']}" if mc else "",
                    tex_escape(format_p(mc["p"])) if mc else "", tex_escape(verdict)])
    return out


def attention_findings(rows: list[dict]) -> str:
    """The abstract's sentence on attention: per backbone, the verdicts of the variants whose planned seeds are all
    stored, then the variants still open with how many of their pairs are stored."""
    decided, open_ = [], []
    for backbone in dict.fromkeys(r["backbone"] for r in rows if r["group"] == "attention"):
        group = [r for r in rows if r["group"] == "attention" and r["backbone"] == backbone]
        name = "DeepEfficientNet's own SE" if backbone == "DeepEfficientNet" else backbone
        done = [r for r in group if not r["verdict"].startswith(("pending", "no verdict"))]
        waiting = [r for r in group if r not in done]
        if done:
            said = {}
            for r in done:
                verdict = "no detectable effect" if r["verdict"].startswith("no effect") else r["verdict"]
                said.setdefault(verdict, []).append(r["variant"])
            decided.append(f"on {name} ({done[0]['seeds_planned']} paired seeds) " + "; ".join(
                f"{_and(names)}: {verdict}" for verdict, names in said.items())
                if backbone != "DeepEfficientNet" else f"{name} ({done[0]['seeds_planned']} paired seeds): "
                + ", ".join(said))
        if waiting:
            paired, planned = sum(r["seeds_paired"] for r in waiting), sum(r["seeds_planned"] for r in waiting)
            which = f" for {_and([r['variant'] for r in waiting])}" if done else ""
            open_.append(f"{'for ' if backbone == 'DeepEfficientNet' else 'on '}{name}{which} "
                         f"({paired} of {planned} pairs stored)")
    parts = decided + ([f"the verdicts are still open {_and(open_)}"] if open_ else [])
    return ("Attention is judged by a rule fixed before the test split was read: " + "; ".join(parts) + ".") if parts else ""


def ingredients_finding(rows: list[dict]) -> str:
    """The README's line on the course project's recipe claims: each claimed gain beside the paired test difference
    measured at the full budget, over the seeds stored."""
    by_base = ingredient_pairs(rows)
    said = []
    for ingredient, ablation, claimed in RECIPE_INGREDIENTS:
        row = by_base.get(ablation)
        if claimed is None or not row or not row["seeds_paired"]:
            continue
        verdict = (f"{row['seeds_paired']} of {row['seeds_planned']} seeds, no verdict yet"
                   if row["verdict"].startswith("pending") else
                   f"{row['seeds_paired']} seeds: {row['verdict'].split(', interval')[0]}")
        said.append(f"{ingredient} {row['test_diff_mean']:+.2f} (claimed {claimed:+g}; {verdict})")
    if not said:
        return ""
    return ("The course project credits DeepEfficientNet's 98.0% to four ingredients. At the full budget, the recipe "
            "minus the recipe without each, in official test points: " + "; ".join(said) + ".")


def findings_section(results: Path) -> Section:
    return recipe_findings(results), {}


def _signed_for(tex: bool):
    """A signed number as the report (a true minus sign) or the README (plain text) prints it."""
    return signed if tex else (lambda x: f"{x:+.2f}")


def pair_sentence(row: dict, first: str, second: str, tex: bool = True) -> str:
    """One headline pair as the abstract, the text (``tex``) and the README say it."""
    from .comparisons import p_clause
    if row["seeds_paired"] == 0:
        return ""
    number = _signed_for(tex)
    mc = row["mcnemar_test_pooled"]
    p = tex_escape(p_clause(mc["p"])) if tex else p_clause(mc["p"])
    if row["verdict"].startswith(("pending", "no verdict")):
        return (f"{first} against {second}: {number(row['test_diff_mean'])} official test points on "
                f"{row['seeds_paired']} of {row['seeds_planned']} planned seed{'s' if row['seeds_planned'] > 1 else ''}, "
                f"no verdict until every planned seed is stored (exact McNemar {p})")
    word = {"ahead": "is ahead of", "behind": "is behind"}.get(row["verdict"], "is not told apart from")
    low_high = row["test_diff_interval"]
    interval = f"{number(low_high[0])} to {number(low_high[1])}" if low_high else "no interval"
    joint = " by" if row["verdict"] in ("ahead", "behind") else ":"
    return (f"{first} {word} {second}{joint} {number(row['test_diff_mean'])} official test points over "
            f"{row['seeds_paired']} paired seeds (95{chr(92) if tex else ''}% interval {interval}; exact McNemar {p})")


TEX_28 = "$28\\times28$"


def baseline_pairs_sentence(rows: list[dict], tex: bool = True) -> str:
    """What lifts ResNet-18 above its published 28x28 result (the recipe, on the same architecture; the architecture,
    against DeepEfficientNet under the same recipe) and whether ImageNet weights explain Lite0's lead (#35)."""
    by_name = {r["name"]: r for r in rows}
    resnet, lite = by_name.get("ResNet-18 vs DeepEfficientNet"), by_name.get("Lite0: ImageNet weights vs scratch")
    sentences = []
    if resnet and resnet["seeds_paired"]:
        published = dict(published_at_28())["ResNet-18 (28)"]
        stored = list(resnet["variant_test_acc_by_seed"].values())
        mean = sum(stored) / len(stored)
        percent = "\\%" if tex else "%"
        sentences.append(
            f"ResNet-18 trained with this recipe reaches {pct(mean)}{percent} mean test accuracy over "
            f"{len(stored)} seed{'s' if len(stored) > 1 else ''}, against the "
            f"{pct(published, 1)}{percent} MedMNIST v2 reports for the same architecture at "
            f"{TEX_28 if tex else '28x28'} with its own recipe "
            f"({_signed_for(tex)(100 * (mean - published))} points on the same architecture; the recipe is the "
            f"difference we know of, but {len(stored)} seed{'s' if len(stored) > 1 else ''} against one published "
            "number, with no interval, does not rule out others); under the same recipe, "
            + pair_sentence(resnet, "ResNet-18", "DeepEfficientNet", tex))
    if lite and lite["seeds_paired"]:
        sentences.append(pair_sentence(lite, "EfficientNet-Lite0 from ImageNet weights", "the same model from scratch",
                                       tex))
    return "".join(f"{s[0].upper()}{s[1:]}. " for s in sentences).strip()


def paired_section(results: Path) -> Section:
    from .comparisons import describe_evidence
    paired = read_summary("paired", "full", results)
    if not paired:
        return {}, {"paired": _table(PAIRED_HEADER, [], "no paired comparison stored yet")}
    rows = paired["rows"]
    by_name = {r["name"]: r for r in rows}
    m = {"AttentionFindings": tex_escape(attention_findings(rows)),
         "PairedEvidence": " ".join(tex_escape(s) for s in describe_evidence(
             [r for r in rows if r["group"] == "attention"])),
         "PairedRule": tex_escape(paired["rule"])}
    simple, lite = by_name.get("SimpleCNN vs DeepEfficientNet"), by_name.get("Lite0 (ImageNet) vs DeepEfficientNet")
    if simple:
        m["PairSimpleSentence"] = pair_sentence(simple, f"SimpleCNN ({simple['variant_params'] / 1e6:.2f}M parameters)",
                                                f"DeepEfficientNet ({simple['base_params'] / 1e6:.2f}M)")
    if simple and simple["seeds_paired"]:
        low, high = simple["test_diff_interval"] or (float("nan"), float("nan"))
        m["PairSimpleShort"] = (f"SimpleCNN, with {simple['base_params'] / simple['variant_params']:.0f} times fewer "
                                f"parameters, is {simple['verdict']} of DeepEfficientNet by {simple['test_diff_mean']:.2f} "
                                f"test points (95\\% interval {low:.2f} to {high:.2f} over {simple['seeds_paired']} "
                                f"paired seeds)" if simple["verdict"] in ("ahead", "behind") else
                                pair_sentence(simple, "SimpleCNN", "DeepEfficientNet"))
    attention = [r for r in rows if r["group"] == "attention"]
    if all(r["verdict"].startswith("pending") for r in attention):
        m["AttentionShort"] = (f"Whether attention helps stays open: {sum(r['seeds_paired'] for r in attention)} of "
                               f"the {sum(r['seeds_planned'] for r in attention)} planned paired runs are stored.")
    else:
        m["AttentionShort"] = m["AttentionFindings"]
    if lite:
        m["PairLiteSentence"] = pair_sentence(lite, "EfficientNet-Lite0 from ImageNet weights", "DeepEfficientNet")
    m["BaselinePairsSentence"] = baseline_pairs_sentence(rows)
    # The recipe's ingredients have their own table (ingredients_section).
    shown = [r for r in rows if r["group"] != "recipe"]
    return m, {"paired": _table(PAIRED_HEADER, paired_rows(shown), "", align="lrrrrrrl")}


def recipe_sentence(results: Path) -> str | None:
    """How the full-budget models (seed means, plain scoring) sit against the best published 28x28 result."""
    rows = full_budget_rows(results)
    if not rows:
        return None
    best_name, best_acc = best_published_at_28()
    above = [r for r in rows if r["test_acc_mean"] > best_acc]
    below = [r for r in rows if r["test_acc_mean"] <= best_acc]
    accs = [r["test_acc_mean"] for r in above] or [r["test_acc_mean"] for r in rows]
    sentence = (f"At the full budget (50 epochs), {len(above)} of the {len(rows)} models stored reach "
                f"{pct(min(accs))}-{pct(max(accs))}% mean test accuracy, above the best published "
                f"28x28 result ({pct(best_acc, 1)}%, {best_name})")
    if below:
        sentence += "; " + _and([f"{r['name']} ({r['seeds']} seed{'s' if r['seeds'] > 1 else ''}, {pct(r['test_acc_mean'])}%)"
                                for r in below]) + (" is not" if len(below) == 1 else " are not")
    return sentence + "."


def recipe_short(results: Path) -> str | None:
    """The abstract's version of ``recipe_sentence``: how many full-budget models beat the best published result."""
    rows = full_budget_rows(results)
    if not rows:
        return None
    best_acc = best_published_at_28()[1]
    above = sum(r["test_acc_mean"] > best_acc for r in rows)
    return (f"At the full budget, the mean test accuracies of {above} of the {len(rows)} models stored lie above the "
            f"best published $28\\times28$ point estimate ({pct(best_acc, 1)}\\%) on the official test split.")


def recipe_findings(results: Path) -> dict[str, str]:
    sentence = recipe_sentence(results)
    if sentence is None:
        return {}
    return {"RecipeShort": recipe_short(results),
            "RecipeFindings": re.sub(r"(\d)-(\d)", r"\1--\2", tex_escape(sentence)).replace("28$\\times$28",
                                                                                           "$28\\times28$")}


def speedrun_finding(folder: Path) -> str | None:
    """The speedrun in one sentence: each precision's mean test accuracy over its seeds and its longest seed, against
    the targets."""
    from .speedrun import (PRECISION_WORDS, PRECISIONS, TIME_LIMIT_SECONDS, current_recipes, other_cpu_records,
                           read_speedruns, recipe_for, seeds_words, target_verdicts)
    parts, verdicts, over, cpu = [], [], [], None
    for precision in reversed(PRECISIONS):  # float32 first: every x86 CPU runs it
        if records := read_speedruns(folder, recipe_for(precision)):
            longest = max(r["wall_seconds"] for r in records)
            verdicts.append(f"{PRECISION_WORDS[precision]} {target_verdicts(records)[0]}")
            mean = sum(r["test"]["acc"] for r in records) / len(records)
            parts.append((f"{100 * mean:.2f}% test accuracy over {seeds_words(len(records))} in {PRECISION_WORDS[precision]} "
                          f"(longest seed {longest:.0f} s)") if not parts else
                         f"{100 * mean:.2f}% in {PRECISION_WORDS[precision]} (longest {longest:.0f} s)")
            if late := sum(r["wall_seconds"] > TIME_LIMIT_SECONDS for r in records):
                over.append(f"{PRECISION_WORDS[precision]} on {late} of {len(records)} seeds")
            cpu = cpu or f"{records[0]['cpu']}, {records[0]['threads']} threads"
    if not parts:
        return None
    timed = (f"every seed within its {TIME_LIMIT_SECONDS} s limit in the session that timed it" if not over else
             f"over its {TIME_LIMIT_SECONDS} s limit in {' and '.join(over)}")
    others, cpus = [], set()
    for _, recipe, records in other_cpu_records(folder):
        if recipe in current_recipes():
            longest = max(r["wall_seconds"] for r in records)
            others.append(f"{PRECISION_WORDS[recipe.precision]} {100 * sum(r['test']['acc'] for r in records) / len(records):.2f}% "
                          f"over {seeds_words(len(records))} on {records[0]['cpu']} ({records[0]['threads']} threads), "
                          f"longest seed {longest:.0f} s, {'within' if longest <= TIME_LIMIT_SECONDS else 'over'} the limit")
            cpus.add(records[0]["cpu"])
    timed_elsewhere = (f" Timed on {'another CPU' if len(cpus) == 1 else 'other CPUs'} too: {'; '.join(others)}."
                       if others else "")
    return (f"A speedrun on two CPU cores ({cpu}) averages {' and '.join(parts)}, {timed}; {'; '.join(verdicts)}."
            + timed_elsewhere)


def findings_markdown(results: Path = Path("results")) -> str:
    """The README's findings, one line each, from the same files as the report's abstract."""
    lines = [recipe_sentence(results)]
    paired = read_summary("paired", "full", results)
    if paired:
        by_name = {r["name"]: r for r in paired["rows"]}
        simple = by_name.get("SimpleCNN vs DeepEfficientNet")
        if simple and simple["seeds_paired"]:
            lines.append("Our main model is not the best one: " + pair_sentence(
                simple, f"SimpleCNN ({simple['variant_params'] / 1e6:.2f}M parameters)",
                f"DeepEfficientNet ({simple['base_params'] / 1e6:.2f}M)", tex=False) + ".")
        lines.append(attention_findings(paired["rows"]))
        lines.append(ingredients_finding(paired["rows"]))
        lines.append(baseline_pairs_sentence(paired["rows"], tex=False))
    if speedrun := speedrun_finding(results / "speedrun"):
        lines.append(speedrun)
    pcam = read_summary("pcam", "cpu", results)
    if pcam:
        final = pcam["tta"]["study"] if pcam["tta"]["kept"] else pcam["runs"][pcam["final"]]
        lines.append(f"PatchCamelyon stays below its targets (AUC {pcam['targets']['auc']:g}, accuracy "
                     f"{100 * pcam['targets']['acc']:g}%): with {100 * final['train_n'] / PCAM_TRAIN_PATCHES:.1f}% of its "
                     f"training patches the validation-chosen model reaches test AUC {final['test_at_0.5']['auc']:.4f} "
                     f"and {100 * final['test_at_0.5']['acc']:.1f}% accuracy." if "not met" in pcam["verdict"].values() else
                     f"PatchCamelyon meets its targets: test AUC {final['test_at_0.5']['auc']:.4f}.")
    return "\n".join(f"- {line}" for line in lines if line) or "(no stored result yet)"


def headline_markdown(results: Path = Path("results")) -> str:
    """The README's headline table: the best published 28x28 result, then ours (full budget and the speedrun)."""
    best_name, best_acc = best_published_at_28()
    # Every row scored in one forward pass (the speedrun, scored with TTA, has its own section).
    lines = ["| model | parameters | seeds | official test accuracy | how |", "|---|---|---|---|---|",
             f"| {best_name} | | | {100 * best_acc:.1f}% | best published 28x28 result (MedMNIST v2) |"]
    baselines = read_summary("baselines", "full", results)
    rows = sorted((baselines or {}).get("rows", []), key=lambda r: -r["test_acc_mean"])
    for r in [r for r in rows if r["seeds"] > 1][:4]:
        lines.append(f"| {r['name']} | {r['params'] / 1e6:.2f}M | {r['seeds']} | {100 * r['test_acc_mean']:.2f}% "
                     f"± {100 * r['test_acc_std']:.2f} | 50 epochs, one recipe, chosen on validation |")
    return "\n".join(lines)


# The studies of the budgets table, in the report's order: (label, summary name, profile).
BUDGET_STUDIES = (("Headline models", "baselines", "full"), ("Attention on EfficientNet-B0", "attention", "full"),
                  ("DeepEfficientNet seeds", "deep_efficientnet", "full"), ("Ablations at the full budget", "ablations", "full"),
                  ("Ablation screen", "ablations", "cpu"), ("Architecture zoo", "architectures", "cpu"),
                  ("Class imbalance", "imbalance", "cpu"))


def budget_rows(results: Path) -> list[list[str]]:
    """One row per study: budget, seeds, training images, and the devices and precisions its records name."""
    rows = []
    for label, name, profile in BUDGET_STUDIES:
        summary = read_summary(name, profile, results)
        if not summary:
            continue
        runs = summary.get("runs") or summary.get("seeds", {}).get("runs", [])
        records = [r for r in (_run(results, run) for run in runs) if r]
        rows.append(_budget_row(label, profile, records))
    small = [r for r in load_results(results / "runs", profile="full") if (r.get("tag") or "").startswith("simple_cnn_")]
    if small:
        rows.insert(2, _budget_row("Attention on SimpleCNN", "full", small))
    from .studies import STUDIES, stored_runs
    from .analysis import identity_but_epochs
    study_runs = [r for name in ("pcam", "pcam_scaling") for r in stored_runs(STUDIES[name], "cpu")[0]]
    # With the runs that differ from a study run only in their epochs: the levers table's "more epochs" reads them.
    identities = [identity_but_epochs(r) for r in study_runs]
    pcam = [r for r in load_results(results / "runs", profile="cpu", dataset="pcam") if identity_but_epochs(r) in identities]
    if pcam:
        rows.append(_budget_row("PatchCamelyon (all stages)", "cpu", pcam))
    return [row for row in rows if row]


def _budget_row(label: str, profile: str, records: list[dict]) -> list[str] | None:
    if not records:
        return None
    epochs = sorted({r["config"]["epochs"] for r in records})
    images = sorted({r["data"]["n"]["train"] for r in records})
    seeds = sorted({r["seed"] for r in records})
    kinds = sorted({("GPU" if "cuda" in r["device"].lower() or "H100" in r["device"] else "CPU") + " "
                    + {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(r.get("amp_dtype") or "float32",
                                                                                      str(r.get("amp_dtype")))
                    for r in records})
    span = lambda values: str(values[0]) if len(values) == 1 else f"{values[0]}--{values[-1]}"
    return [tex_escape(label), "full" if profile == "full" else "short", span(epochs),
            span([f"{n:,}" for n in images]) if len(images) < 3 else f"{images[0]:,}--{images[-1]:,}",
            span(seeds), str(len(records)), "; ".join(kinds)]


def budgets_section(results: Path) -> Section:
    header = ["Study", "Budget", "Epochs", "Train images", "Seeds", "Runs", "Device"]
    return {}, {"budgets": _table(header, budget_rows(results), "no run stored", align="llrrrrl")}


# Every part of the report's numbers, in the order it prints them; each returns (macros, tables).
SECTIONS = (data_section, recipe_evidence_section, headline_section, deep_efficientnet_section, gradcam_section, bench_section,
            baselines_section, attention_section, ablations_section, zoo_section, imbalance_section, pcam_section,
            versions_section, published_section, claims_section, deployment_section, speedrun_section, paired_section,
            ingredients_section,
            budgets_section, findings_section)


def latex_outputs(results: str | Path = "results") -> tuple[dict[str, str], dict[str, str]]:
    """(macros, tables): every number the report prints, read from results/."""
    results = Path(results)
    m: dict[str, str] = {}
    t: dict[str, str] = {}
    for section in SECTIONS:
        macros, tables = section(results)
        m.update(macros)
        t.update(tables)
    return m, t


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


# Published test accuracies on the same official test splits, as their papers report them (cited in
# main.tex; each with its source). BloodMNIST: MedMNIST v2 (Yang et al. 2023), Table 3; PatchCamelyon:
# Veeling et al. 2018 (P4M-DenseNet on the full official test split, trained on all 262,144 patches).
PUBLISHED = [
    ("bloodmnist", "ResNet-18 (28)", "yang2023medmnist", 28, 3421, 0.958, 0.998),
    ("bloodmnist", "ResNet-18 (224)", "yang2023medmnist", 224, 3421, 0.963, 0.998),
    ("bloodmnist", "AutoKeras", "yang2023medmnist", 28, 3421, 0.961, 0.998),
    ("bloodmnist", "Google AutoML Vision", "yang2023medmnist", 28, 3421, 0.966, 0.998),
    ("pcam", "P4M-DenseNet", "veeling2018pcam", 96, 32768, 0.898, 0.963),
]


def wilson_interval(acc: float, n: int) -> tuple[float, float]:
    """95% Wilson score interval of an accuracy measured on ``n`` images (scipy's binomtest)."""
    from scipy.stats import binomtest
    ci = binomtest(round(acc * n), n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


ENGINE_LABELS = {"standard_dataloader": "torchvision + DataLoader", "eager": "this engine, eager",
                 "graph": "this engine, CUDA graph"}


def bench_rows(bench: dict) -> list[dict]:
    """One row per pipeline of a benchmark file: ms per step, GPU kernel ms, GPU busy fraction, speed-up over
    the DataLoader and the 50-epoch time. Files from before the engine comparison (no ``engines``) give their
    two pipelines from ``epoch_seconds``."""
    if "engines" not in bench and bench["quick"]:
        raise ValueError(f"a --quick benchmark file from before the engine comparison ({bench['git_commit'][:7]}): "
                         "run `python -m utils.bench --quick --out` again")
    engines = bench.get("engines") or {  # an older file: full mode timed one whole epoch, so timed_steps is its length
        "standard_dataloader": {"epoch_seconds": bench["epoch_seconds"]["standard_dataloader"]},
        "eager": {"epoch_seconds": bench["epoch_seconds"]["project_pipeline"]}}
    fifty = bench.get("train_seconds_50_epochs_by_engine") or {"eager": bench["train_seconds_50_epochs"]}
    standard = engines["standard_dataloader"]["epoch_seconds"]
    rows = []
    for name, row in engines.items():
        if "skipped" in row:
            rows.append({"pipeline": name, "skipped": row["skipped"]})
            continue
        rows.append({"pipeline": name,
                     "ms_per_step": row.get("wall_ms_per_step", 1000 * row["epoch_seconds"] / bench["timed_steps"]),
                     "kernel_ms": row.get("gpu_kernel_ms_per_step"), "busy": row.get("gpu_busy_fraction"),
                     "speedup": standard / row["epoch_seconds"], "fifty": fifty.get(name)})
    return rows


def _rate(flops_per_second: float) -> str:
    return (f"{flops_per_second / 1e12:.1f} TFLOP/s" if flops_per_second >= 1e12
            else f"{flops_per_second / 1e9:.0f} GFLOP/s")


def bench_floor(bench: dict) -> dict:
    """A benchmark file's floor, its step FLOPs recounted with grouped convolutions' backward counted correctly
    (``utils.bench.step_flops``) where the file counted them the old way; the measured rates stay the file's.
    ``fraction_reached``: the floor over each pipeline's measured step (1 would be a step at the floor)."""
    from .bench import GROUPED_CONV_CORRECTED, step_flops
    from .models import build_model
    floor = dict(bench["floor"])
    if floor.get("flop_count") != GROUPED_CONV_CORRECTED:
        torch_model = build_model(bench["model"], 8)
        floor.update(step_flops=step_flops(torch_model, bench["batch_size"], 28), recounted=True)
        floor["compute_ms_per_step"] = 1000 * floor["step_flops"] / floor["matmul_flops_per_second"]
        floor["floor_ms_per_step"] = max(floor["compute_ms_per_step"], floor["memory_ms_per_step"])
    floor["fraction_reached"] = {row["pipeline"]: floor["floor_ms_per_step"] / row["ms_per_step"]
                                 for row in bench_rows(bench) if "ms_per_step" in row}
    return floor


def bench_table(results: Path) -> str:
    """Every committed benchmark file's pipelines side by side, with its device, mode and commit, and the floor
    each reaches a fraction of."""
    lines = []
    for path in sorted((results / "bench").glob("bench_*.json")) if (results / "bench").is_dir() else []:
        bench = json.loads(path.read_text())
        mode = f"-{{}}-quick, {bench['timed_steps']} steps" if bench["quick"] else "full"  # -{}- keeps two hyphens
        lines.append([rf"\multicolumn{{5}}{{l}}{{\textit{{{tex_escape(bench['device'])}, {tex_escape(bench['amp_dtype'])}, "
                      rf"{mode}, commit {bench['git_commit'][:7]}}}}}"])
        floor = bench_floor(bench) if bench.get("floor") else None
        for row in bench_rows(bench):
            label = ENGINE_LABELS.get(row["pipeline"], tex_escape(row["pipeline"]))
            if "skipped" in row:
                lines.append([label, rf"\multicolumn{{4}}{{l}}{{not run: {tex_escape(row['skipped'].split(',')[0])}}}"])
                continue
            kernel = (f"{row['kernel_ms']:.1f} ({row['busy']:.2f})" if row["kernel_ms"] is not None else
                      "(CPU)" if bench["device"].startswith("cpu") else "not profiled")
            reached = f", {floor['fraction_reached'][row['pipeline']]:.2f}" if floor else ""
            lines.append([label, f"{row['ms_per_step']:.1f}{reached}", kernel, f"{row['speedup']:.2f}",
                          f"{row['fifty']:,.0f}{'' if bench['train_seconds_50_epochs_measured'] else ' (est.)'}"
                          if row["fifty"] else "(not timed)"])
        if floor:
            recount = " recounted" if floor.get("recounted") else ""
            lines.append([r"floor: FLOPs / matmul rate, bytes / bandwidth",
                          rf"\multicolumn{{4}}{{l}}{{{floor['compute_ms_per_step']:.1f} ms, {floor['memory_ms_per_step']:.1f} ms "
                          rf"({floor['step_flops'] / 1e9:.1f} GFLOP{recount} at {_rate(floor['matmul_flops_per_second'])} "
                          rf"{tex_escape(floor['matmul_dtype'])})}}"])
    return _table(["Pipeline", "ms/step, fraction of floor", "GPU kernel ms (busy)", r"$\times$ DataLoader",
                   "50 epochs (s)"], lines, "not run yet", align=r">{\raggedright\arraybackslash}p{1.6in}rrrr")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def our_bloodmnist_rows(results: Path) -> list[dict]:
    """This repository's BloodMNIST models as the report leads with them (the shown baselines summary: the full
    budget where stored), each with its seed-mean test accuracy, the test size and how it was trained."""
    baselines = shown_summary("baselines", results)
    if not baselines:
        return []
    n = next((r["test"]["n"] for r in (_run(results, run) for run in baselines["runs"]) if r), 3421)
    profile = baselines["provenance"]["profile"]
    rows = [{"name": r["name"], "acc": r["test_acc_mean"], "auc": r["test_auc_mean"], "n": n, "seeds": r["seeds"],
             "source": f"this work ({profile}, {r['epochs']} ep., " + (f"mean of {r['seeds']} seeds)" if r["seeds"] > 1
                                                                       else "1 seed)")}
            for r in baselines["rows"]]
    # The speedrun is left out: it is scored with TTA, and every row here is scored in one forward pass.
    return rows


def published_verdict(results: Path) -> str:
    """One sentence per model of ours: which published BloodMNIST intervals it overlaps, lies below or lies above
    (all on the same 3,421 official test images; 95% Wilson intervals from the accuracy and n)."""
    ours = our_bloodmnist_rows(results)
    if not ours:
        return MISSING
    published = [(name, wilson_interval(acc, n)) for key, name, _, _, n, acc, _ in PUBLISHED if key == "bloodmnist"]
    sentences = []
    for row in ours:
        low, high = wilson_interval(row["acc"], row["n"])
        groups = {"below": [p for p, (lo, _) in published if high < lo],
                  "above": [p for p, (_, hi) in published if low > hi]}
        groups["overlapping"] = [p for p, _ in published if p not in groups["below"] + groups["above"]]
        said = [f"{verb} {'every published interval' if len(names) == len(published) else _and(names)}"
                for verb, names in (("overlaps", groups["overlapping"]), ("lies below", groups["below"]),
                                    ("lies above", groups["above"])) if names]
        # Where an end that decides is within the table's one decimal of the other interval's, two decimals say why.
        close = [f"its lower end {pct(low)} against the upper end of {p}, {pct(hi)}" for p, (_, hi) in published
                 if p in groups["above"] and pct(low, 1) == pct(hi, 1)]
        close += [f"its upper end {pct(high)} against the lower end of {p}, {pct(lo)}" for p, (lo, _) in published
                  if p in groups["below"] and pct(high, 1) == pct(lo, 1)]
        sentences.append(f"{row['name']} ({pct(row['acc'], 1)}%, interval {pct(low, 1)}-{pct(high, 1)}) "
                         + ", and ".join(said) + (f" ({'; '.join(close)})" if close else "") + ".")
    return tex_escape(" ".join(sentences))


def published_table(results: Path) -> str:
    """This repository's models beside the published results on the same official test splits, every accuracy with
    a 95% interval from its test-set size (Wilson), so that rows of different n compare. Px is the input the network
    sees (a model that resizes its input counts at the resized size)."""
    rows = []

    def row(name, source, size, n, acc, auc):
        low, high = wilson_interval(acc, n)
        rows.append([name, source, f"{size}", f"{n:,}", pct(acc, 1), f"{100 * low:.1f}--{100 * high:.1f}", f"{auc:.3f}"])

    def ours(record: dict, label: str, note: str = ""):
        scale = (record.get("model_kwargs") or {}).get("input_scale") or 1
        return (tex_escape(label), f"this work ({record['profile']}, {record['config']['epochs']} ep.{note})",
                round(record["image_size"] * scale))

    for dataset, heading in (("bloodmnist", "BloodMNIST, official test split"),
                             ("pcam", "PatchCamelyon (ours: a subset of the official test split)")):
        rows.append([f"\\multicolumn{{7}}{{l}}{{\\textit{{{heading}}}}}"])
        for key, name, source, size, n, acc, auc in PUBLISHED:
            if key == dataset:
                row(tex_escape(name), f"\\citet{{{source}}}", size, n, acc, auc)
        if dataset == "bloodmnist":
            for r in our_bloodmnist_rows(results):
                row(tex_escape(r["name"]), tex_escape(r["source"]), 28, r["n"], r["acc"], r["auc"])
        else:
            pcam = shown_summary("pcam", results)
            record = _run(results, pcam["best_on_val"]) if pcam else None
            if record:
                final = dict(pcam["runs"], **{pcam["final"]: pcam["tta"]["study"]})[pcam["final"]]
                row(*ours(record, pcam["final"], ", TTA" if pcam["tta"]["kept"] else ""),
                    final["test_at_0.5"]["n"], final["test_at_0.5"]["acc"], final["test_at_0.5"]["auc"])
    return _table(["Model", "Source", "Px", "Test $n$", "Acc (\\%)", "95\\% interval", "AUC"], rows, "not run yet",
                  align=">{\\raggedright\\arraybackslash}p{1.45in}p{1.3in}rrrrr")


def _chosen_row(summary: dict) -> dict:
    """The row the study chose (on validation, as its summary records)."""
    if summary.get("chosen_on") != "val":
        raise ValueError("a study summary must record its winner chosen on validation (chosen_on: val); "
                         "re-run its notebook")
    return next(r for r in summary["rows"] if r["name"] == summary["best"])


def _best_on_validation(summary: dict, prefix: str) -> dict[str, str]:
    """``<prefix>Best`` and ``<prefix>BestTestAcc`` for the study row chosen on validation."""
    best = _chosen_row(summary)
    return {f"{prefix}Best": tex_escape(best["name"]), f"{prefix}BestTestAcc": pct(best["test_acc_mean"])}


def write_latex(results: str | Path = "results", out: str | Path = GENERATED) -> list[Path]:
    """Write macros.tex and one table file per study; returns the files written."""
    macros, tables = latex_outputs(results)
    unknown = set(macros) - set(MACROS)
    if unknown:
        raise ValueError(f"add {sorted(unknown)} to utils.report.MACROS")
    macros = {name: macros.get(name, MISSING) for name in MACROS}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    header = "% Generated by `python -m utils.report` from results/ -- do not edit.\n"
    lines = [header]
    for name, value in sorted(macros.items()):
        if not re.fullmatch(r"[A-Za-z]+", name):
            raise ValueError(f"LaTeX macro names are letters only: {name!r}")
        lines.append(f"\\newcommand{{\\{name}}}{{{value}}}\n")
    written = [out / "macros.tex"]
    write_text(written[0], "".join(lines))
    for name, body in sorted(tables.items()):
        path = out / f"{name}.tex"
        write_text(path, header + body)
        written.append(path)
    return written


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.report", description=__doc__)
    parser.add_argument("--readme", default=str(README))
    parser.add_argument("--results", default="results/runs")
    parser.add_argument("--latex", default=str(GENERATED), help="folder for the report's generated .tex files")
    args = parser.parse_args(argv)
    try:  # every record, the intervals the README prints included, before anything is written
        check_run_records(args.results, intervals=("test",))
    except InvalidRunRecord as error:
        parser.exit(1, f"report: {error}\n")
    for path in sorted(Path(args.results).parent.rglob("summary.json")):  # and every study summary it reads
        try:
            if not isinstance(json.loads(path.read_text()), dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as error:
            parser.exit(1, f"report: {path}: a damaged study summary ({str(error).splitlines()[0][:120]}); rebuild "
                           f"it from the stored runs with `make summaries` (python -m utils.summaries)\n")
    changed = update_documents(Path(args.readme), args.results)
    print(f"generated blocks: {', '.join(map(str, changed)) + ' updated' if changed else 'already current'}")
    written = write_latex(Path(args.results).parent, args.latex)
    print(f"{args.latex}: wrote {', '.join(p.name for p in written)}")


if __name__ == "__main__":
    main()

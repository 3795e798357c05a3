r"""`python -m utils.report`: turn results/ into generated text; nothing here is typed by hand.

It rewrites the README's results table (between the `results:start` / `results:end` markers) from the
run records in results/runs/, and writes the LaTeX report's numbers: ``report/generated/macros.tex``
(one letter-only macro per number, e.g. ``\DeepEffTestAcc``) and one booktabs table body per study,
all read from results/*.json. A study whose results do not exist yet gives a table that says so.
"""
from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path

from .data import PCAM_TRAIN_PATCHES
from .experiment import InvalidRunRecord, check_run_records, load_results
from .plots import typeset
from .storage import write_text
from .studies import BASELINES

README = Path("README.md")
START, END = "<!-- results:start -->", "<!-- results:end -->"


def results_table(folder: str | Path = "results/runs") -> str:
    """Markdown table of every run record, by dataset, best test accuracy first. ``train n`` is the
    number of training images, so a study run on a subset (cpu-profile ablations) reads as one."""
    records = sorted(load_results(folder), key=lambda r: (r.get("dataset", ""), -r["test"]["acc"]))
    lines = ["| dataset | run | profile | device | train n | epochs | params | test acc (95% CI) | test AUC | macro-F1 | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        low, high = r["test"].get("acc_ci95", (float("nan"), float("nan")))
        train_n = r.get("data", {}).get("n", {}).get("train")
        scale = (r.get("model_kwargs") or {}).get("input_scale") or 1
        name = (r.get("tag") or r["model"]) + (f" (input x{scale:g})" if scale != 1 else "")
        lines.append(f"| {r.get('dataset', '')} | {name} | {r['profile']} | {r['device']} | "
                     f"{'' if train_n is None else f'{train_n:,}'} | {r['epochs_run']} | "
                     f"{r['params'] / 1e6:.2f}M | {100 * r['test']['acc']:.2f}% ({100 * low:.1f}-{100 * high:.1f}) | "
                     f"{r['test']['auc']:.4f} | {r['test']['macro_f1']:.4f} | {r['train_seconds']:.0f} |")
    if not records:
        lines.append("| (no runs yet) | | | | | | | | | | |")
    return "\n".join(lines)


def update_readme(readme: Path = README, folder: str | Path = "results/runs") -> bool:
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: add the markers {START} and {END} where the results table goes")
    block = f"{START}\n{results_table(folder)}\n{END}"
    new = re.sub(re.escape(START) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    write_text(readme, new)
    return new != text


# ---------------------------------------------------------------------------------------------
# LaTeX: macros and tables from results/

GENERATED = Path("report/generated")
MISSING = r"\textit{n/a}"


def tex_escape(text: str) -> str:
    """Text for a table cell, as print sets it: '1.5x input' with a times sign."""
    return (typeset(str(text)).replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%")
            .replace("_", r"\_").replace("#", r"\#").replace("±", r"$\pm$").replace("\u00d7", r"$\times$"))


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
    "BenchProjectEpoch", "BenchSpeedup", "BloodImbalance", "BloodLargestTrain", "BloodSmallestTrain",
    "BloodTest", "BloodTrain", "BloodVal", "CamLayer", "DeepEffBestEpoch", "DeepEffECEAfter",
    "DeepEffECEBefore", "DeepEffEpochs", "DeepEffMFlops", "DeepEffRank", "DeepEffSeedsSentence", "ZooRows",
    "AblationChanges", "AblationSEOffDelta", "AttentionSEDelta", "AttentionSeedNote", "BaselineTrainMin",
    "BaselineTrainMax", "BenchModeSentence", "PcamDegenerateSentence", "PcamTrainPercent", "TorchVersions",
    "DeepEffParams", "DeepEffRun", "DeepEffTemperature", "DeepEffTestAUC", "DeepEffTestAcc",
    "DeepEffTestAccHigh", "DeepEffTestAccLow", "DeepEffTestMacroF", "DeepEffTestN", "DeepEffTrainSeconds",
    "DeepEffValAcc", "DeepEffSeeds", "DeepEffSeedsTestAccMean", "DeepEffSeedsTestAccStd", "DeepEffTarget", "GpuBenchDevice", "GpuBenchFiftyEpochs", "GpuBenchImagesPerSecond", "GpuBenchLatency",
    "GpuBenchLoaderEpoch", "GpuBenchCommit", "GpuBenchProjectEpoch", "GpuBenchSpeedup", "HasGpuBench", "ImbalanceBest",
    "ImbalanceModel", "ImbalanceSeeds", "ImbalanceEpochs", "RoadSE", "PublishedVerdict",
    "AblationAugmentDelta", "PcamBest", "PcamBestAUC", "PcamBestAcc", "PcamBestAccTval", "PcamBestTval", "PcamDropped", "PcamEpochs",
    "PcamAccTarget", "PcamAUCTarget", "PcamTargetAcc", "PcamTargetAUC", "PcamScreenEpochs", "PcamScreenTrain",
    "PcamGroups", "PcamLiteImageNetAUC", "PcamLiteScratchAUC", "PcamProfile", "PcamTest", "PcamTrain",
    "PcamTTAKept", "PcamTTAValDelta", "PcamInputValDelta", "PcamScalingTrainMin", "PcamScalingAUCPerTenfold",
    "PcamScalingAUCPatches", "PcamScalingAUCTimesPcam", "PcamScalingAccPatches", "PcamScalingAccTimesPcam",
    "PcamScalingEpochs", "PcamScalingVerdict",
    "PcamTrainUsed", "PcamVal", "ResultsDevice", "ResultsProfile", "RoadGradCAM", "RoadGradCAMpp", "RoadN",
    "RoadRandom", "RoadVerdict", "TopConfusionTrue", "TopConfusionPred", "TopConfusionCount", "ZooBest", "ZooBestTestAcc",
)


def latex_outputs(results: str | Path = "results") -> tuple[dict[str, str], dict[str, str]]:
    """(macros, tables): every number the report prints, read from results/."""
    results = Path(results)
    m: dict[str, str] = {}
    t: dict[str, str] = {}

    eda = _read(results, "eda/bloodmnist.json")
    if eda:
        counts = eda["class_counts"]["train"]
        m.update(BloodTrain=f"{eda['splits']['train']:,}", BloodVal=f"{eda['splits']['val']:,}",
                 BloodTest=f"{eda['splits']['test']:,}", BloodImbalance=f"{eda['imbalance_ratio']:.2f}",
                 BloodSmallestTrain=f"{min(counts):,}", BloodLargestTrain=f"{max(counts):,}")

    main = _read(results, "deep_efficientnet/summary.json")
    record = _run(results, main["run"]) if main else None
    if record:
        test, val = record["test"], record["val"]
        m.update(ResultsProfile=record["profile"], ResultsDevice=tex_escape(record["device"]),
                 DeepEffRun=tex_escape(record["run"]),
                 DeepEffParams=f"{record['params'] / 1e6:.2f}", DeepEffMFlops=f"{record['flops'] / 1e6:.0f}",
                 DeepEffEpochs=str(record["config"]["epochs"]), DeepEffBestEpoch=str(record["best_epoch"]),
                 DeepEffTrainSeconds=f"{record['train_seconds']:.0f}", DeepEffValAcc=pct(val["acc"]),
                 DeepEffTestAcc=pct(test["acc"]), DeepEffTestAccLow=pct(test["acc_ci95"][0]),
                 DeepEffTestAccHigh=pct(test["acc_ci95"][1]), DeepEffTestAUC=f"{test['auc']:.4f}",
                 DeepEffTestMacroF=f"{test['macro_f1']:.4f}", DeepEffTestN=f"{test['n']:,}",
                 DeepEffTemperature=f"{main['calibration']['temperature']:.2f}",
                 DeepEffECEBefore=f"{main['calibration']['ece_before']:.3f}",
                 DeepEffECEAfter=f"{main['calibration']['ece_after']:.3f}")
        if "seeds" in main:
            seeds = main["seeds"]
            n_seeds = len(seeds["runs"])
            m.update(DeepEffSeeds=str(n_seeds), DeepEffSeedsTestAccMean=pct(seeds["test_acc_mean"]),
                     DeepEffSeedsTestAccStd=pct(seeds["test_acc_std"]),
                     DeepEffSeedsSentence=(
                         f"Over {n_seeds} seeds the mean test accuracy is {pct(seeds['test_acc_mean'])}\\% (standard "
                         f"deviation {pct(seeds['test_acc_std'])} points)" if n_seeds > 1 else
                         "This build trains one seed, so it gives no spread over seeds"),
                     DeepEffTarget="met" if main["target"]["met"] else "not met")
        import numpy as np
        confusion = np.array(test["confusion_matrix"])
        np.fill_diagonal(confusion, 0)
        true, pred = np.unravel_index(confusion.argmax(), confusion.shape)
        short = [n.split("(")[0].strip() for n in record["class_names"]]
        m.update(TopConfusionTrue=tex_escape(short[true]), TopConfusionPred=tex_escape(short[pred]),
                 TopConfusionCount=str(int(confusion[true, pred])))
        per_class = [[tex_escape(name.split("(")[0].strip()), f"{c['precision']:.3f}", f"{c['recall']:.3f}",
                      f"{c['f1']:.3f}", str(c["support"])] for name, c in test["per_class"].items()]
        t["perclass"] = _table(["Class", "Precision", "Recall", "F1", "Support"], per_class, "not run yet")

    cam = _read(results, "gradcam/summary.json")
    if cam:
        m.update(RoadGradCAM=signed(cam['mean']['gradcam'], 3), RoadGradCAMpp=signed(cam['mean']['gradcam++'], 3),
                 RoadRandom=signed(cam['mean']['random'], 3),
                 RoadVerdict="above" if min(cam["mean"]["gradcam"], cam["mean"]["gradcam++"]) > cam["mean"]["random"]
                 + 2 * cam["std"]["random"] / cam["n"] ** 0.5 else "not clearly above",
                 RoadSE=f"{max(cam['std'][k] for k in ('gradcam', 'gradcam++', 'random')) / cam['n'] ** 0.5:.3f}", RoadN=str(cam["n"]), CamLayer=tex_escape(cam["target_layer"]))

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
                      f"{prefix}Latency": f"{b['latency_ms_batch1']:.1f}"})
    if bench:
        m["BenchModeSentence"] = (
            f"This is a \\code{{-{{}}-quick}} run: {bench['timed_steps']} timed steps per pipeline, and its 50-epoch time is "
            f"extrapolated from them, not measured" if bench["quick"] else
            "This is a full run: the 50-epoch time is measured, validation included")
    m["HasGpuBench"] = "true" if gpu_bench else "false"
    if gpu_bench:
        m["GpuBenchCommit"] = _read(results, f"bench/{gpu_bench[-1].name}")["git_commit"][:7]
    t["bench"] = bench_table(results)

    baselines = _read(results, "baselines/summary.json")
    t["baselines"] = _table(STUDY_HEADER, _study_rows(baselines), "not run yet")
    if baselines:
        m.update(_best_on_validation(baselines, "Baseline"))
        seconds = [r["train_seconds_mean"] for r in baselines["rows"]]
        m.update(BaselineTrainMin=f"{min(seconds):,.0f}", BaselineTrainMax=f"{max(seconds):,.0f}")
    attention = _read(results, "attention/summary.json")
    t["attention"] = _table(STUDY_HEADER + ["$\\Delta$ val"], _study_rows(attention, "none"), "notebook 04 not run yet")
    if attention:
        rows = attention["rows"]
        none = next(r for r in rows if r["name"] == "none")
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
    ablations = _read(results, "ablations/summary.json")
    ablation_rows = [[r[0], r[4], r[8], r[7]] for r in _study_rows(ablations, "recipe")]
    t["ablations"] = _table(["Change from the recipe", "Val acc (\\%)", "$\\Delta$ val (points)", "Train (s)"],
                            ablation_rows, "notebook 05 not run yet")
    if ablations:
        rows = ablations["rows"]
        recipe = next(r for r in rows if r["name"] == "recipe")
        others = [r for r in rows if r["name"] != "recipe"]
        worst = min(others, key=lambda r: r["val_acc_mean"])
        best = max(others, key=lambda r: r["val_acc_mean"])
        recipe_run = _run(results, ablations["runs"][0])
        basic = next((r for r in rows if r["name"] == "basic augmentation"), None)
        if basic:
            m["AblationAugmentDelta"] = signed(100 * (basic["val_acc_mean"] - recipe["val_acc_mean"]), 2)
        se_off = next((r for r in rows if r["name"] == "SE off"), None)
        if se_off:
            m["AblationSEOffDelta"] = signed(100 * (se_off['val_acc_mean'] - recipe['val_acc_mean']), 2)
        m.update(AblationRuns=str(len(rows)), AblationChanges=str(len(others)), AblationSeeds=str(recipe["seeds"]),
                 AblationRecipeVal=pct(recipe["val_acc_mean"]),
                 AblationWorst=tex_escape(worst["name"]),
                 AblationWorstDelta=signed(100 * (worst['val_acc_mean'] - recipe['val_acc_mean']), 2),
                 AblationBest=tex_escape(best["name"]),
                 AblationBestDelta=signed(100 * (best['val_acc_mean'] - recipe['val_acc_mean']), 2))
        if recipe_run:
            m.update(AblationTrainImages=f"{recipe_run['data']['n']['train']:,}", AblationEpochs=str(recipe_run["config"]["epochs"]))
    zoo = _read(results, "architectures/summary.json")
    t["zoo"] = _table(STUDY_HEADER, _study_rows(zoo), "notebook 08 not run yet")
    if zoo:
        m.update(_best_on_validation(zoo, "Zoo"))
        by_val = sorted(zoo["rows"], key=lambda r: -r["val_acc_mean"])
        rank = next((i + 1 for i, r in enumerate(by_val) if r["name"] == "DeepEfficientNet"), None)
        if rank:
            m.update(DeepEffRank=_ordinal(rank), ZooRows=str(len(by_val)))

    imbalance = _read(results, "imbalance/summary.json")
    if imbalance:
        eda_names = eda["class_names"] if eda else []
        short = [n.split("(")[0].strip()[:4] for n in eda_names]
        rows = [[tex_escape(r["name"]), f"{r['val_macro_f1_mean']:.3f}", f"{r['test_macro_f1_mean']:.3f}",
                 pct(r["test_acc_mean"]), f"{r['min_recall']:.3f}"]
                + [f"{v:.2f}" for v in r["recall_mean"]] for r in imbalance["rows"]]
        t["imbalance"] = _table(["Strategy", "Val F1", "Test F1", "Acc (\\%)", "Min recall"] + [tex_escape(s) for s in short],
                                rows, "not run yet")
        best = _chosen_row(imbalance)
        model_labels = {model: label for label, (model, kwargs) in BASELINES.items() if not kwargs}
        m.update(ImbalanceModel=tex_escape(model_labels.get(imbalance["model"], imbalance["model"])),
                 ImbalanceEpochs=str(best.get("epochs", "")), ImbalanceBest=tex_escape(best["name"].lower()),
                 ImbalanceSeeds=str(imbalance["rows"][0]["seeds"]))
    else:
        t["imbalance"] = _table(["Strategy", "Macro-F1"], [], "notebook 08 not run yet")

    pcam_data = _read(results, "eda/pcam.json")
    if pcam_data:
        dup = pcam_data["duplicates"]
        m.update(PcamDropped=str(sum(d["dropped"] for d in dup.values())),
                 PcamGroups=str(sum(d["groups"] for d in dup.values())),
                 PcamTrain=f"{dup['train']['kept']:,}", PcamVal=f"{dup['val']['kept']:,}", PcamTest=f"{dup['test']['kept']:,}")
    pcam = _read(results, "pcam/summary.json")
    if pcam:
        m.update(PcamProfile=pcam["provenance"]["profile"])
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
        lite = {"Lite0 (ImageNet)": "PcamLiteImageNetAUC", "Lite0 (scratch)": "PcamLiteScratchAUC"}
        for key, s in screen.items():
            if pcam["labels"][key] in lite:
                m[lite[pcam["labels"][key]]] = f"{s['test_at_0.5']['auc']:.4f}"
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
        m.update(PcamTrainPercent=f"{100 * final['train_n'] / PCAM_TRAIN_PATCHES:.1f}")
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

    runs = load_results(results / "runs")
    if runs:
        versions = Counter(r["torch_version"] for r in runs)
        m["TorchVersions"] = tex_escape(", ".join(f"{v} ({n} run{'s' if n > 1 else ''})" for v, n in versions.most_common()))
    t["published"] = published_table(results)
    m["PublishedVerdict"] = published_verdict(results)
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


def bench_table(results: Path) -> str:
    """Every committed benchmark file's pipelines side by side, with its device, mode and commit."""
    lines = []
    for path in sorted((results / "bench").glob("bench_*.json")) if (results / "bench").is_dir() else []:
        bench = json.loads(path.read_text())
        mode = f"-{{}}-quick, {bench['timed_steps']} steps" if bench["quick"] else "full"  # -{}- keeps two hyphens
        lines.append([rf"\multicolumn{{6}}{{l}}{{\textit{{{tex_escape(bench['device'])}, {tex_escape(bench['amp_dtype'])}, "
                      rf"{mode}, commit {bench['git_commit'][:7]}}}}}"])
        for row in bench_rows(bench):
            label = ENGINE_LABELS.get(row["pipeline"], tex_escape(row["pipeline"]))
            if "skipped" in row:
                lines.append([label, rf"\multicolumn{{5}}{{l}}{{not run: {tex_escape(row['skipped'].split(',')[0])}}}"])
                continue
            lines.append([label, f"{row['ms_per_step']:.1f}",
                          f"{row['kernel_ms']:.1f}" if row["kernel_ms"] is not None else "--",
                          f"{row['busy']:.2f}" if row["busy"] is not None else "--", f"{row['speedup']:.2f}",
                          f"{row['fifty']:,.0f}{'' if bench['train_seconds_50_epochs_measured'] else ' (est.)'}"
                          if row["fifty"] else "--"])
        floor = bench.get("floor")
        if floor:
            lines.append([r"floor: FLOPs / matmul rate, bytes / bandwidth",
                          rf"\multicolumn{{5}}{{l}}{{{floor['compute_ms_per_step']:.1f} ms, {floor['memory_ms_per_step']:.1f} ms "
                          rf"({floor['step_flops'] / 1e9:.0f} GFLOP at {_rate(floor['matmul_flops_per_second'])} "
                          rf"{tex_escape(floor['matmul_dtype'])})}}"])
    return _table(["Pipeline", "ms/step", "GPU kernel ms", "GPU busy", r"$\times$ DataLoader", "50 epochs (s)"],
                  [row for row in lines], "not run yet",
                  align=r">{\raggedright\arraybackslash}p{1.6in}rrrrr")


def _and(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def published_verdict(results: Path) -> str:
    """One sentence: which published BloodMNIST intervals this build's DeepEfficientNet and the validation-chosen
    model overlap, lie below or lie above (all on the same 3,421 official test images)."""
    main = _read(results, "deep_efficientnet/summary.json")
    zoo = _read(results, "architectures/summary.json")
    if not main or not zoo:
        return MISSING
    published = [(name, wilson_interval(acc, n)) for key, name, _, _, n, acc, _ in PUBLISHED if key == "bloodmnist"]
    record = _run(results, main["run"])
    n = record["test"]["n"]
    sentences = []
    for label, acc in (("DeepEfficientNet", record["test"]["acc"]),
                       (_chosen_row(zoo)["name"], _chosen_row(zoo)["test_acc_mean"])):
        low, high = wilson_interval(acc, n)
        groups = {"below": [p for p, (lo, _) in published if high < lo],
                  "above": [p for p, (_, hi) in published if low > hi]}
        groups["overlapping"] = [p for p, _ in published if p not in groups["below"] + groups["above"]]
        said = [f"{verb} {'every published interval' if len(names) == len(published) else _and(names)}"
                for verb, names in (("overlaps", groups["overlapping"]), ("lies below", groups["below"]),
                                    ("lies above", groups["above"])) if names]
        sentences.append(f"{tex_escape(label)} ({pct(acc, 1)}\\%, interval {pct(low, 1)}--{pct(high, 1)}) "
                         + tex_escape(", and ".join(said)) + ".")
    return " ".join(dict.fromkeys(sentences))


def published_table(results: Path) -> str:
    """This repository's chosen models beside the published results on the same official test splits, every
    accuracy with a 95% interval from its test-set size (Wilson), so that rows of different n compare.
    Px is the input the network sees (a model that resizes its input counts at the resized size)."""
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
            main = _read(results, "deep_efficientnet/summary.json")
            record = _run(results, main["run"]) if main else None
            if record:
                row(*ours(record, "DeepEfficientNet"), record["test"]["n"], record["test"]["acc"], record["test"]["auc"])
            zoo = _read(results, "architectures/summary.json")
            best = _chosen_row(zoo) if zoo else None
            best_record = next((r for r in (_run(results, run) for run in zoo["runs"])
                                if r and r["test"]["acc"] == best["test_acc_mean"] and r["params"] == best["params"]),
                               None) if best and best["name"] != "DeepEfficientNet" else None
            if best_record:
                row(*ours(best_record, f"{best['name']} (best on val)"), best_record["test"]["n"],
                    best_record["test"]["acc"], best_record["test"]["auc"])
        else:
            pcam = _read(results, "pcam/summary.json")
            record = _run(results, pcam["best_on_val"]) if pcam else None
            if record:
                final = dict(pcam["runs"], **{pcam["final"]: pcam["tta"]["study"]})[pcam["final"]]
                row(*ours(record, pcam["final"], ", TTA" if pcam["tta"]["kept"] else ""),
                    final["test_at_0.5"]["n"], final["test_at_0.5"]["acc"], final["test_at_0.5"]["auc"])
    return _table(["Model", "Source", "Px", "Test $n$", "Acc (\\%)", "95\\% interval", "AUC"], rows, "not run yet",
                  align=">{\\raggedright\\arraybackslash}p{1.45in}lrrrrr")


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
    changed = update_readme(Path(args.readme), args.results)
    print(f"{args.readme}: results table {'updated' if changed else 'already current'}")
    written = write_latex(Path(args.results).parent, args.latex)
    print(f"{args.latex}: wrote {', '.join(p.name for p in written)}")


if __name__ == "__main__":
    main()

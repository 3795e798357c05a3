import pytest

from tests.conftest import REPO, store_record
from utils.report import CLAIMS_END, CLAIMS_START, END, START, update_readme


def _record(tag, acc):
    return {"model": "simple_cnn", "dataset": "bloodmnist", "tag": tag, "profile": "cpu", "device": "cpu", "epochs_run": 3,
            "data": {"n": {"train": 3000 if tag == "a" else 11959}},
            "params": 288488, "train_seconds": 12.0, "accuracy": {"test": acc}}


def test_readme_table_comes_from_the_records(tmp_path):
    runs = tmp_path / "runs"
    store_record(runs, "a", **_record("a", 0.9))
    b = store_record(runs, "b", **_record("b", 0.95))
    store_record(runs, "c", **dict(_record("c", 0.8), model_kwargs={"input_scale": 1.5}))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nSTALE\n{END}\n{CLAIMS_START}\n{CLAIMS_END}\n"
                      "<!-- cpu-threads:start -->\n<!-- cpu-threads:end -->\n<!-- speedrun:start -->\n<!-- speedrun:end -->\noutro\n")
    assert update_readme(readme, runs)
    text = readme.read_text()
    assert "STALE" not in text and text.startswith("intro") and text.endswith("outro\n")
    assert text.index("| b |") < text.index("| a |")  # best first
    assert "| b | cpu | cpu | 11,959 |" in text and "| a | cpu | cpu | 3,000 |" in text
    low, high = b["test"]["acc_ci95"]
    assert f"95.00% ({100 * low:.1f}-{100 * high:.1f})" in text
    assert "| c (input x1.5) | cpu |" in text  # runs that differ only in input size stay apart
    assert not update_readme(readme, runs)  # idempotent


def test_the_readme_table_leads_with_the_full_budget(tmp_path):
    from utils.report import results_table
    runs = tmp_path / "runs"
    store_record(runs, "short", **_record("short", 0.99))
    store_record(runs, "long", **dict(_record("long", 0.97), profile="full"))
    table = results_table(runs)
    assert table.index("| long | full |") < table.index("| short | cpu |")  # full first, whatever the accuracy


def test_each_run_in_the_readme_table_names_its_study_rows_and_runs_no_study_plans_stand_apart():
    from utils.experiment import load_results
    from utils.report import results_table, study_rows
    from utils.studies import STUDIES, stored_runs
    runs = REPO / "results" / "runs"
    records = load_results(runs)
    rows = study_rows(records)
    for profile in ("cpu", "full"):  # read the other way: each study's stored records, found by its own plan
        for study in STUDIES.values():
            for record in stored_runs(study, profile)[0]:
                assert f"{study.name}: {record['label']}" in rows[record["run"]]
    text = results_table(runs)
    table, _, history = text.partition("Stored runs that no study plans any more")
    data_rows = lambda part: [line for line in part.splitlines() if line.startswith("| ") and
                              not line.startswith("| dataset |")]
    assert len(data_rows(table)) == len(rows) and len(data_rows(history)) == len(records) - len(rows)
    # The previous recipe's H100 runs are the full-budget ablation row, not the recipe.
    assert all(line.endswith("| ablations: affine + colour (the previous recipe's H100 runs) |")
               for line in table.splitlines() if "H100" in line)
    # A shorter-budget run of a study row with full-budget runs is not shown among the approximations.
    full_rows = {row for r in records if r["profile"] == "full" and r["run"] in rows for row in rows[r["run"]]}
    approximations = text.partition("Shorter budgets, for the study rows")[2].partition("Shorter budgets, runs")[0]
    assert not any(row in line for line in data_rows(approximations) for row in full_rows)
    assert "`python -m utils.sweep --profile full --only" in text.splitlines()[0]


def test_missing_markers_are_reported(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, tmp_path)


def test_latex_macros_trace_to_the_result_files(tmp_path):
    import json
    import re
    from utils.report import MACROS, write_latex
    results = REPO / "results"
    written = write_latex(results, tmp_path)
    text = (tmp_path / "macros.tex").read_text()
    defined = dict(re.findall(r"\\newcommand\{\\([A-Za-z]+)\}\{(.*)\}", text))
    assert set(defined) == set(MACROS)
    from utils.summaries import shown_summary
    main = shown_summary("deep_efficientnet", results)  # the full budget's where stored
    record = json.loads((results / "runs" / f"{main['run']}.json").read_text())
    assert defined["DeepEffTestAcc"] == f"{100 * record['test']['acc']:.2f}"
    assert defined["BloodTest"] == "3,421"
    pcam = json.loads((results / "pcam/summary.json").read_text())
    final = pcam["tta"]["study"] if pcam["tta"]["kept"] else pcam["runs"][pcam["final"]]
    assert defined["PcamBestAUC"] == f"{final['test_at_0.5']['auc']:.4f}"
    assert defined["PcamBestAccTval"] == f"{100 * final['test_at_val_threshold']['acc']:.2f}"
    assert defined["PcamTTAKept"] == ("kept" if pcam["tta"]["kept"] else "not kept")
    assert all(p.read_text().count(r"\begin{tabular}") == 1 for p in written if p.name != "macros.tex")


def test_missing_results_read_as_not_available(tmp_path):
    from utils.report import MISSING, write_latex
    write_latex(tmp_path / "no_results", tmp_path / "out")
    text = (tmp_path / "out" / "macros.tex").read_text()
    assert f"\\newcommand{{\\DeepEffTestAcc}}{{{MISSING}}}" in text
    assert "not run yet" in (tmp_path / "out" / "ablations.tex").read_text()


def _figure_groups(tex: str) -> list[list[str]]:
    """The \\resultfigure names of each figure environment of main.tex (side by side when several)."""
    import re
    return [re.findall(r"\\resultfigure(?:\[[^\]]*\])?\{([^}]+)\}", body)
            for body in re.findall(r"\\begin\{figure\}(.*?)\\end\{figure\}", tex, flags=re.S)]


def test_report_figures_print_at_the_size_they_are_drawn():
    """Figures are drawn at print size with no font below 8 pt; included at their natural size, side by
    side ones together fit the 5.5 in text, so nothing is shrunk below what was drawn."""
    import re
    from utils.plots import TEXT_WIDTH
    tex = (REPO / "report/main.tex").read_text()
    assert "\\resultfigure[" not in tex, "a width option rescales a figure away from its drawn size"
    groups = _figure_groups(tex)
    assert groups and all(groups)
    for names in groups:
        widths = []
        for name in names:
            pdf = (REPO / "figures" / f"{name}.pdf").read_bytes()
            widths.append(float(re.search(rb"/MediaBox \[ ?0 0 ([\d.]+)", pdf).group(1)))
        assert sum(widths) <= TEXT_WIDTH * 72 + 1, (names, widths)


def test_plots_draw_no_text_below_the_minimum_font():
    import matplotlib.text
    import numpy as np
    from utils import plots
    from utils.models import build_model
    names = ["basophil", "eosinophil", "erythroblast", "immature granulocytes(myelocytes)", "lymphocyte",
             "monocyte", "neutrophil", "platelet"]
    rng = np.random.default_rng(0)
    curve = {"confidence": [0.2, 0.5, 0.9], "accuracy": [0.3, 0.5, 0.8], "count": [2, 10, 300]}
    y = rng.integers(0, 2, 50)
    figures = [
        plots.plot_class_counts({"train": list(range(1, 9)), "test": list(range(1, 9))}, names),
        plots.plot_confusion_matrix(rng.integers(0, 50, (8, 8)), names),
        plots.plot_reliability({"before": curve, "after": curve}),
        plots.plot_roc_curves({"a": (y, rng.random(50)), "b": (y, rng.random(50))}),
        plots.plot_scaling({"train_n": [1000, 4000], "val_auc": [0.9, 0.92], "test_auc": [0.9, 0.91],
                            "fits": {"auc": {"target": 0.95, "per_tenfold": 0.03, "intercept": 0.81,
                                             "patches_for_target": 50000.0}}}),
        plots.plot_image_grid([rng.random((28, 28, 3))] * 6, ["neutrophil\n-> IG"] * 6, columns=6),
        plots.plot_architecture(plots.architecture_rows(build_model("deep_efficientnet", 8)), "title"),
    ]
    for fig in figures:
        fig.canvas.draw()
        sizes = [t.get_fontsize() for t in fig.findobj(matplotlib.text.Text) if t.get_text().strip()]
        assert sizes and min(sizes) >= plots.MIN_FONT, fig


def test_bench_table_shows_every_pipeline_side_by_side_and_says_why_one_was_skipped(tmp_path):
    import json
    from utils.bench import GROUPED_CONV_CORRECTED
    from utils.report import bench_floor, bench_rows, bench_table
    bench = {"device": "cpu (x86_64, 2 threads)", "amp_dtype": "float32", "quick": True, "timed_steps": 8,
             "git_commit": "abcdef0123", "batch_size": 128, "train_seconds_50_epochs_measured": False,
             "engines": {"standard_dataloader": {"wall_ms_per_step": 400.0, "gpu_kernel_ms_per_step": None,
                                                 "gpu_busy_fraction": None, "epoch_seconds": 37.2},
                         "eager": {"wall_ms_per_step": 100.0, "gpu_kernel_ms_per_step": None,
                                   "gpu_busy_fraction": None, "epoch_seconds": 9.3},
                         "graph": {"skipped": "CUDA graphs need a CUDA device, this run is on cpu"}},
             "train_seconds_50_epochs_by_engine": {"eager": 600.0},
             "model": "deep_efficientnet",
             "floor": {"compute_ms_per_step": 50.0, "memory_ms_per_step": 5.0, "step_flops": 5e9,
                       "floor_ms_per_step": 50.0, "matmul_flops_per_second": 1e11, "matmul_dtype": "float32",
                       "flop_count": GROUPED_CONV_CORRECTED}}
    rows = {r["pipeline"]: r for r in bench_rows(bench)}
    assert rows["eager"]["speedup"] == 4.0 and rows["graph"] == {"pipeline": "graph",
                                                                 "skipped": bench["engines"]["graph"]["skipped"]}
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench_quick_cpu.json").write_text(json.dumps(bench))
    table = bench_table(tmp_path)
    assert "-{}-quick, 8 steps, commit abcdef0" in table and "600 (est.)" in table and "at 100 GFLOP/s" in table
    assert "not run: CUDA graphs need a CUDA device" in table and "50.0 ms, 5.0 ms" in table
    assert "100.0, 0.50" in table and "400.0, 0.12" in table  # the fraction of the floor each step reaches
    # A file counted before the grouped-convolution correction is recounted, not printed as it was.
    old = dict(bench, floor={k: v for k, v in bench["floor"].items() if k != "flop_count"})
    recounted = bench_floor(old)
    assert recounted["recounted"] and 2e10 < recounted["step_flops"] < 3e10  # DeepEfficientNet at batch 128: 24 GFLOP
    bench.pop("engines")  # an old --quick file cannot be read as if it were new
    (tmp_path / "bench" / "bench_quick_cpu.json").write_text(json.dumps(bench))
    with pytest.raises(ValueError, match="run `python -m utils.bench --quick --out` again"):
        bench_table(tmp_path)


def _pair_row(name: str, diffs: list[float], planned: int, variant_accs: dict[str, float], ablation: str = "") -> dict:
    """A paired summary row; with ``ablation``, DeepEfficientNet's recipe against that ablation."""
    from utils.comparisons import seed_interval, verdict, VERDICT_WORDS
    interval = seed_interval(diffs)
    return {"name": name, "group": "headline", "seeds_paired": len(diffs), "seeds_planned": planned,
            "test_diff_mean": sum(diffs) / len(diffs) if diffs else None, "test_diff_interval": interval,
            "mcnemar_test_pooled": {"variant_only_right": 9, "base_only_right": 3, "p": 0.146} if diffs else None,
            "verdict": verdict(interval, len(diffs), planned, VERDICT_WORDS["headline"]),
            "variant_test_acc_by_seed": variant_accs,
            "backbone": "DeepEfficientNet" if ablation else "", "variant": "recipe" if ablation else "", "base": ablation}


def test_baseline_pairs_say_what_lifts_resnet18_and_call_a_partial_pair_pending():
    from utils.report import baseline_pairs_sentence, published_at_28
    published = dict(published_at_28())["ResNet-18 (28)"]
    rows = [_pair_row("ResNet-18 vs DeepEfficientNet", [0.30], 3, {"0": published + 0.015}),
            _pair_row("Lite0: ImageNet weights vs scratch", [0.5, 0.7, 0.9], 3, {"0": 0.98, "1": 0.98, "2": 0.98})]
    text = baseline_pairs_sentence(rows, tex=False)
    assert "ResNet-18 trained with this recipe" in text and "over 1 seed," in text
    assert f"{100 * published:.1f}%" in text and "+1.50 points on the same architecture; the recipe is the difference we know of, but 1 seed against" in text
    # One seed of three: the difference is said, the verdict is not.
    assert "ResNet-18 against DeepEfficientNet: +0.30 official test points on 1 of 3 planned seeds, no verdict" in text
    assert "EfficientNet-Lite0 from ImageNet weights is ahead of the same model from scratch by +0.70" in text
    # Nothing stored: nothing said.
    assert baseline_pairs_sentence([_pair_row("ResNet-18 vs DeepEfficientNet", [], 3, {})]) == ""


def test_the_ingredients_finding_sets_each_claim_beside_its_measured_difference():
    from utils.report import ingredients_finding
    rows = [_pair_row("DeepEfficientNet's own SE", [0.26], 3, {}, "SE off"),
            _pair_row("DeepEfficientNet: cosine annealing over step decay", [-0.1, 0.2, 0.05], 3, {}, "step schedule"),
            _pair_row("DeepEfficientNet: flips and turns over affine + colour", [0.5], 3, {},
                      "affine + colour augmentation")]
    text = ingredients_finding(rows)
    assert "SE +0.26 (claimed +2.5; 1 of 3 seeds, no verdict yet)" in text
    assert "cosine annealing over step decay +0.05 (claimed +3.29; 3 seeds: no effect detected)" in text
    # No claim was made for the previous recipe's augmentation; an ingredient with no run stored is not mentioned.
    assert "affine" not in text and "regularisation" not in text
    assert ingredients_finding([]) == ""


def test_slow_epochs_are_found_from_a_records_own_epoch_times():
    from utils.report import slow_epoch_minutes, slow_epochs_sentence
    steady = [60.0 * (i + 1) for i in range(10)]  # one minute an epoch, cumulative
    paused = steady[:4] + [t + 30 * 60 for t in steady[4:]]  # epoch 5 took 31 minutes
    record = {"run": "simple_cnn-bloodmnist-full-s0-0123456789", "profile": "full", "device": "cpu (x86_64, 1 threads)",
              "history": [{"epoch": i + 1, "seconds": t} for i, t in enumerate(paused)]}
    assert slow_epoch_minutes(record) == (30.0, 1)
    assert slow_epoch_minutes(dict(record, history=[{"seconds": t} for t in steady])) == (0.0, 0)
    sentence = slow_epochs_sentence([record, dict(record, profile="cpu"), dict(record, device="NVIDIA H100")])
    assert sentence.endswith(": simple_cnn-bloodmnist-full-s0-0123456789 (30 min over 1 epoch).")
    assert "over 2 times that median" in sentence
    assert slow_epochs_sentence([dict(record, history=[{"seconds": t} for t in steady])]) == ""


def test_an_interval_end_that_rounds_onto_the_other_is_given_to_two_decimals(monkeypatch):
    import utils.report as report
    n = 3421
    published_high = report.wilson_interval(0.95, n)[1]
    # The smallest accuracy whose interval lies above the published one: its lower end rounds onto that upper end.
    acc = next(a / 10000 for a in range(9500, 9900) if report.wilson_interval(a / 10000, n)[0] > published_high)
    ours_low = report.wilson_interval(acc, n)[0]
    assert report.pct(ours_low, 1) == report.pct(published_high, 1)
    monkeypatch.setattr(report, "PUBLISHED", [("bloodmnist", "Theirs", None, 28, n, 0.95, "")])
    monkeypatch.setattr(report, "our_bloodmnist_rows", lambda results: [{"name": "Ours", "acc": acc, "n": n}])
    assert report.published_verdict(None).endswith(
        f"lies above every published interval (its lower end {report.pct(ours_low)} against the upper end of Theirs, "
        f"{report.pct(published_high)}).")
    monkeypatch.setattr(report, "our_bloodmnist_rows", lambda results: [{"name": "Ours", "acc": 0.97, "n": n}])
    assert report.published_verdict(None).endswith("lies above every published interval.")


def test_the_attention_finding_gives_each_variant_its_verdict_once_its_seeds_are_all_stored():
    from utils.report import attention_findings

    def row(backbone, variant, verdict, paired, planned=3):
        return {"group": "attention", "backbone": backbone, "variant": variant, "verdict": verdict,
                "seeds_paired": paired, "seeds_planned": planned}
    rows = [row("EfficientNet-B0", "SE", "no effect detected, interval [-1.27, +0.68] points", 3),
            row("EfficientNet-B0", "CBAM", "pending (1 of 3 seeds)", 1),
            row("EfficientNet-B0", "MSFF", "pending (2 of 3 seeds)", 2),
            row("SimpleCNN", "SE", "helps", 5, 5), {"group": "baselines", "backbone": "x", "verdict": "pending"}]
    assert attention_findings(rows) == (
        "Attention is judged by a rule fixed before the test split was read: on EfficientNet-B0 (3 paired seeds) SE: "
        "no detectable effect; on SimpleCNN (5 paired seeds) SE: helps; the verdicts are still open on "
        "EfficientNet-B0 for CBAM and MSFF (3 of 6 pairs stored).")
    assert attention_findings(rows[1:3]).endswith("still open on EfficientNet-B0 (3 of 6 pairs stored).")

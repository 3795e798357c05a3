"""`python -m utils.deployment [--only STEP ...] [--force]`: the stored evaluations of the released checkpoints
(``utils.release``), each written under ``results/deployment/`` with its commit, device, versions and seconds:

- selective: seed ensembles and selective prediction from the stored predictions (``utils.selective``)
- predict:   the test split as PNG files at 28x28 and 8x through ``python -m utils.predict`` (``utils.predict``)
- onnx:      ONNX export checked with onnxruntime on the whole test split, latency beside PyTorch (``utils.export``)
- cards:     a model card beside each released checkpoint, from its record and these files (``utils.model_card``)

A step whose file is stored is skipped unless ``--force``. Everything runs on the CPU.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from .release import DEPLOYMENT_ROOT, provenance, released_records
from .storage import write_json

STEPS = ("selective", "predict", "onnx", "cards")


def load_stored(kind: str, root: Path = DEPLOYMENT_ROOT) -> dict[str, dict]:
    """Every stored file of one kind (selective, predict, onnx, robustness), by file stem."""
    return {p.stem: json.loads(p.read_text()) for p in sorted((Path(root) / kind).glob("*.json"))}


def predict_check_table(check: dict) -> str:
    """Test accuracy through ``python -m utils.predict`` per checkpoint and image variant, beside the recorded one."""
    variants = list(next(iter(check["runs"].values()))["variants"])
    lines = [f"{'run':<50}{'recorded':>9}" + "".join(f"{v:>20}" for v in variants) + f"{'abstained':>11}"]
    for run, c in check["runs"].items():
        v = c["variants"]
        lines.append(f"{run:<50}{100 * c['recorded_test_acc']:>8.2f}%" + "".join(
            f"{100 * v[k]['acc']:>11.2f}% ({100 * v[k]['agreement_with_stored']:.1f})" for k in variants)
            + f"{100 * v[variants[0]]['abstained']:>10.1f}%")
    return "\n".join(lines) + "\n(in brackets: % of images whose class equals the run's stored prediction)"


def onnx_table(checks: dict[str, dict]) -> str:
    lines = [f"{'run':<50}{'agree':>12}{'max |dp|':>10}{'torch b1 ms':>12}{'ort b1 ms':>10}{'torch img/s':>12}{'ort img/s':>10}"]
    for run, c in checks.items():
        k, sp = c["check"], c["check"]["speed"]
        lines.append(f"{run:<50}{k['argmax_agree']:>6}/{k['n']:<5}{k['max_abs_prob_diff']:>10.1e}"
                     f"{sp['pytorch']['batch1_ms_median']:>12.2f}{sp['onnxruntime']['batch1_ms_median']:>10.2f}"
                     f"{sp['pytorch']['batch256_images_per_s']:>12.0f}{sp['onnxruntime']['batch256_images_per_s']:>10.0f}")
    return "\n".join(lines)


def selective_table(study: dict) -> str:
    """Each seed and the ensemble: test accuracy, NLL, ECE (before / after temperature scaling), then per score
    AURC and the accuracy and coverage on test at the thresholds chosen on val for 90% and 95% coverage."""
    lines = [f"{'predictor':<16}{'score':<22}{'acc':>7}{'NLL':>7}{'ECE':>13}{'AURC':>8}{'acc@90':>8}{'cov':>6}{'acc@95':>8}{'cov':>6}"]
    for name, p in study["predictors"].items():
        label = "ensemble" if name == "ensemble" else f"seed {name.split('-s')[-1].split('-')[0]}"
        m, t = p["metrics"]["test"], p["metrics_temperature"]["test"]
        for score, s in p["selective"].items():
            a, b = s["at_coverage"]["0.90"]["test"], s["at_coverage"]["0.95"]["test"]
            lines.append(f"{label:<16}{score:<22}{100 * m['acc']:>6.2f}%{m['nll']:>7.3f}{m['ece']:>6.3f}/{t['ece']:.3f}"
                         f"{1000 * s['aurc_test']:>8.2f}{100 * a['acc']:>7.2f}%{100 * a['coverage']:>5.1f}%"
                         f"{100 * b['acc']:>7.2f}%{100 * b['coverage']:>5.1f}%")
    return "\n".join(lines) + "\n(AURC x 1000; ECE before/after temperature scaling; thresholds chosen on val)"


def robustness_table(summaries: list[dict]) -> str:
    names = summaries[0]["corruptions"]
    lines = [f"{'corruption (mean of 5 severities)':<36}" + "".join(f"{s['model'] + ' s' + str(s['seed']):>22}" for s in summaries)]
    for name in names:
        lines.append(f"{name:<36}" + "".join(f"{100 * s['mean_acc_per_corruption'][name]:>21.2f}%" for s in summaries))
    for label, key in (("clean", "clean_acc"), ("mean corruption accuracy", "mean_corruption_acc")):
        lines.append(f"{label:<36}" + "".join(f"{100 * s[key]:>21.2f}%" for s in summaries))
    lines.append(f"{'relative drop':<36}" + "".join(f"{100 * s['relative_drop']:>21.1f}%" for s in summaries))
    return "\n".join(lines)


def run_predict_check(records, data_root, force: bool = False) -> Path:
    from .data import load_dataset
    from .predict import predict_check
    path = DEPLOYMENT_ROOT / "predict" / f"test_split_{records[0]['profile']}.json"
    if path.is_file() and not force:
        return path
    started = time.time()
    data = load_dataset(records[0]["dataset"], data_root)
    test = data.splits["test"]
    with tempfile.TemporaryDirectory() as workdir:
        result = predict_check(records, test.images, test.labels.numpy(), workdir)
    result["scoring"] = provenance(started, ("pillow",))
    return write_json(path, result)


def run_onnx_check(record: dict, data_root, force: bool = False) -> Path:
    from .data import load_dataset
    from .export import check_onnx, export_onnx
    path = DEPLOYMENT_ROOT / "onnx" / f"{record['run']}.json"
    if path.is_file() and not force:
        return path
    started = time.time()
    test = load_dataset(record["dataset"], data_root).splits["test"]
    onnx_path = Path("build") / "onnx" / f"{record['run']}.onnx"  # not committed: `python -m utils.export` makes it
    result = export_onnx(record["checkpoint"], onnx_path)
    result["check"] = check_onnx(record["checkpoint"], onnx_path, test.images, test.labels.numpy())
    result["scoring"] = provenance(started, ("onnx", "onnxruntime", "onnxscript"))
    return write_json(path, result)


def main(argv=None):
    from .data import DEFAULT_DATA_ROOT
    parser = argparse.ArgumentParser(prog="python -m utils.deployment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=STEPS, default=STEPS)
    parser.add_argument("--force", action="store_true", help="compute again what is stored")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    args = parser.parse_args(argv)
    records = released_records()
    if "selective" in args.only:
        from .selective import write_selective_studies
        for model, path in write_selective_studies(records).items():
            print(json.dumps({"step": "selective", "model": model, "path": str(path)}), flush=True)
    if "predict" in args.only:
        print(json.dumps({"step": "predict", "path": str(run_predict_check(records, args.data_root, args.force))}), flush=True)
    if "onnx" in args.only:
        for record in records:
            print(json.dumps({"step": "onnx", "path": str(run_onnx_check(record, args.data_root, args.force))}), flush=True)
    if "cards" in args.only:
        from .model_card import write_model_cards
        for path in write_model_cards(records):
            print(json.dumps({"step": "cards", "path": str(path)}), flush=True)


if __name__ == "__main__":
    main()

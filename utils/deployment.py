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

"""`python -m utils.export --checkpoint RUN.pt --onnx OUT.onnx [--force] [--check] [--data-root DIR]`: the checkpoint
as an ONNX model (``torch.onnx.export``, the dynamo exporter) that takes float32 images N x 3 x H x W in [0, 1] (uint8
/ 255; the model normalises them itself) and returns softmax probabilities N x C, any batch size. ``--check`` runs it
with onnxruntime on the whole official test split beside PyTorch: largest absolute difference of the probabilities,
argmax agreement, latency at batch 1 and throughput at batch 256 on the same threads. Prints one JSON object.

OUT is checked before the export runs (``utils.storage.claim_output``): an existing file is replaced only with
``--force``, and the checkpoint and its run's files (.json, .npz, .md) never are.
"""
from __future__ import annotations

import hashlib
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cli import OneLineParser
from .training import predict_proba
from .models import CheckpointError, checkpoint_files, input_size_and_classes, load_checkpoint
from .storage import OutputError, atomic_path, claim_output

OPSET = 18
LATENCY_IMAGES, THROUGHPUT_BATCH, THROUGHPUT_BATCHES, WARMUP = 200, 256, 8, 20


class Probabilities(nn.Module):
    """A classifier followed by softmax: what the exported graph computes."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images):
        return torch.softmax(self.model(images).float(), 1)


def export_onnx(checkpoint: str | Path, out: str | Path, force: bool = True) -> dict:
    """Write ``out`` and say what it holds (input size, classes, opset, bytes, SHA-256). ``out`` may replace an
    earlier export (``force=False``: it may not), never the checkpoint or its run's files."""
    import warnings
    out = claim_output(out, force, inputs=checkpoint_files(checkpoint))
    model, meta = load_checkpoint(checkpoint)
    size, names = input_size_and_classes(checkpoint, meta)
    example = torch.rand(2, 3, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on its own internals
        program = torch.onnx.export(Probabilities(model).eval(), (example,), dynamo=True, opset_version=OPSET,
                                    input_names=["images"], output_names=["probabilities"],
                                    dynamic_shapes=({0: torch.export.Dim("batch")},), verbose=False)
    with atomic_path(out) as tmp:
        program.save(str(tmp))
    return {"checkpoint": str(checkpoint), "run": meta.get("run"), "onnx": str(out), "opset": OPSET,
            "input": f"float32 N x 3 x {size} x {size} in [0, 1]", "output": f"probabilities N x {len(names)}",
            "class_names": names, "bytes": out.stat().st_size, "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}


def onnx_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads or torch.get_num_threads()
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def speed(calls: dict, images: torch.Tensor) -> dict:
    """Batch-1 latency (median and 90th percentile over ``LATENCY_IMAGES`` images, after ``WARMUP`` calls) and
    batch-256 throughput (images per second over ``THROUGHPUT_BATCHES`` batches, after one) of each of ``calls``
    (name -> a function of a float32 batch in [0, 1]). The calls take turns on each input, so a machine whose load
    changes during the measurement slows them alike."""
    x = images.float() / 255
    singles = [x[i:i + 1] for i in range(min(LATENCY_IMAGES, len(x)))]
    batches = [x[(i * THROUGHPUT_BATCH) % len(x):][:THROUGHPUT_BATCH] for i in range(THROUGHPUT_BATCHES)]
    for inputs, warmup in ((singles, WARMUP), (batches, 1)):
        for call in calls.values():
            for batch in inputs[:warmup]:
                call(batch)
    seconds = {name: {"single": [], "batch": []} for name in calls}
    for kind, inputs in (("single", singles), ("batch", batches)):
        for batch in inputs:
            for name, call in calls.items():
                started = time.perf_counter()
                call(batch)
                seconds[name][kind].append(time.perf_counter() - started)
    return {name: {"batch1_ms_median": 1000 * statistics.median(s["single"]),
                   "batch1_ms_p90": 1000 * float(np.quantile(s["single"], 0.9)),
                   f"batch{THROUGHPUT_BATCH}_images_per_s": sum(len(b) for b in batches) / sum(s["batch"])}
            for name, s in seconds.items()}


def check_onnx(checkpoint: str | Path, onnx_path: str | Path, images: torch.Tensor, labels=None) -> dict:
    """PyTorch (``predict_proba``, float32) against onnxruntime on ``images`` (uint8 N x 3 x H x W): probability
    difference, argmax agreement, accuracy of each (with ``labels``), and ``speed`` of each on the same threads."""
    model, _ = load_checkpoint(checkpoint)
    session = onnx_session(onnx_path)
    name = session.get_inputs()[0].name

    def run_onnx(x: torch.Tensor) -> np.ndarray:
        return session.run(None, {name: x.numpy()})[0]

    torch_probs = predict_proba(model, images).numpy()
    onnx_probs = np.concatenate([run_onnx(images[i:i + THROUGHPUT_BATCH].float() / 255)
                                 for i in range(0, len(images), THROUGHPUT_BATCH)])
    agree = torch_probs.argmax(1) == onnx_probs.argmax(1)

    def run_torch(x: torch.Tensor):
        with torch.inference_mode():
            return model(x.contiguous(memory_format=torch.channels_last))

    out = {"n": int(len(images)), "max_abs_prob_diff": float(np.abs(torch_probs - onnx_probs).max()),
           "argmax_agree": int(agree.sum()), "argmax_agree_fraction": float(agree.mean()),
           "disagreeing_images": np.flatnonzero(~agree).tolist(), "threads": torch.get_num_threads(),
           "load_average_1min": os.getloadavg()[0],
           "speed": speed({"pytorch": run_torch, "onnxruntime": run_onnx}, images)}
    if labels is not None:
        labels = np.asarray(labels)
        out["acc"] = {"pytorch": float((torch_probs.argmax(1) == labels).mean()),
                      "onnxruntime": float((onnx_probs.argmax(1) == labels).mean())}
    return out


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a run's .pt (results/runs/<run>.pt)")
    parser.add_argument("--onnx", required=True, help="where to write the ONNX model (a new file, unless --force)")
    parser.add_argument("--force", action="store_true",
                        help="replace --onnx if it exists (never the checkpoint or its run's files)")
    parser.add_argument("--check", action="store_true", help="compare with PyTorch on the whole official test split")
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args(argv)
    try:  # before the export runs: a file it would replace, a folder it cannot write in
        claim_output(args.onnx, args.force, inputs=checkpoint_files(args.checkpoint))
    except OutputError as error:
        parser.error(f"--onnx: {error}")
    try:
        result = export_onnx(args.checkpoint, args.onnx, force=args.force)
        if args.check:
            from .data import load_dataset
            test = load_dataset(load_checkpoint(args.checkpoint)[1]["dataset"], args.data_root).splits["test"]
            result["check"] = check_onnx(args.checkpoint, args.onnx, test.images, test.labels.numpy())
    except (FileNotFoundError, CheckpointError) as error:
        parser.exit(1, f"error: {error}\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()

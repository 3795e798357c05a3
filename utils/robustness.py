"""Corruption robustness with MedMNIST-C (Di Salvo et al., 2024; PyPI ``medmnistc``): each released checkpoint's
accuracy on the official test split under BloodMNIST's 11 corruptions at 5 severities, the mean corruption accuracy
and its drop relative to the clean accuracy. `python -m utils.robustness` writes
``results/deployment/robustness/<run>.json`` (a stored evaluation) for every released checkpoint.

MedMNIST-C defines its corruptions on 224x224 images (MedMNIST+): a stain's ink is 24-42 pixels wide, a bubble's
radius up to 15. So each 28x28 test image is enlarged 8x by repeating pixels, corrupted at 224x224 with the
package's parameters, and brought back to 28x28 by area averaging, exactly as ``python -m utils.predict`` brings a
224x224 file to the model (without corruption this gives back the 28x28 image, so the clean accuracy is the
recorded one). Corruptions that change each pixel on its own (brightness, contrast, saturation) give the same
28x28 result when applied to the 28x28 image directly, which is 64 times cheaper: they are.

Cost, measured at 5889a64 for the four released checkpoints: 27.5 minutes of one CPU core (the motion blur,
through ImageMagick, 11.7 of them), 1.5 hours of wall time on a 2-core machine shared with a training campaign
(two processes, the corruptions shared out through the cache).

Installing: ``pip install --no-deps medmnistc wand`` (medmnistc 0.1.0 pins medmnist 3.0.1 and scikit-image 0.23.2,
which would replace this project's versions; what it imports, numpy, scipy, scikit-image, OpenCV, Pillow and
torchvision, is already here) and ImageMagick's MagickWand library for the motion blur
(Debian: ``apt-get install libmagickwand-6.q16-6``).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import random
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .training import predict_proba
from .models import load_checkpoint
from .release import DEPLOYMENT_ROOT, provenance, released_records
from .storage import save_npz, write_json

DATASET = "bloodmnist"
SEVERITIES = 5
CORRUPTION_SIZE = 224
# Applied to each pixel on its own: the same at 28x28 as at 224x224 after repeating pixels.
POINTWISE = ("brightness_up", "brightness_down", "contrast_up", "contrast_down", "saturate")
CACHE = Path("build") / "robustness"


def corruptions() -> dict:
    """MedMNIST-C's corruptions for BloodMNIST, by name, the slow motion blur (ImageMagick, about 60 ms an image
    on one core) last (import deferred: it needs ImageMagick's library)."""
    from medmnistc.corruptions.registry import CORRUPTIONS_DS
    table = CORRUPTIONS_DS[DATASET]
    return {name: table[name] for name in sorted(table, key=lambda n: n == "motion_blur")}


@contextlib.contextmanager
def _numpy2_fromstring():
    """medmnistc 0.1.0's motion blur decodes ImageMagick's output with ``np.fromstring(bytes, uint8)``, whose binary
    mode NumPy 2 removed; ``np.frombuffer`` reads the same bytes."""
    original = np.fromstring
    np.fromstring = lambda data, dtype=float, *args, **kwargs: np.frombuffer(data, dtype)
    try:
        yield
    finally:
        np.fromstring = original


def corrupt(images: np.ndarray, name: str, severity: int, seed: int = 0) -> np.ndarray:
    """uint8 N x 28 x 28 x 3 images under corruption ``name`` at ``severity`` (1-5), back at 28x28. Random parts
    (stain and bubble positions, blur angle) are drawn from ``seed``, so a call repeats."""
    corruption = corruptions()[name]
    random.seed(seed), np.random.seed(seed)
    size = images.shape[1]
    out = np.empty_like(images)
    with _numpy2_fromstring():
        for i, pixels in enumerate(images):
            image = Image.fromarray(pixels)
            if name in POINTWISE:
                out[i] = corruption.apply(image, severity - 1)
                continue
            large = image.resize((CORRUPTION_SIZE, CORRUPTION_SIZE), Image.Resampling.NEAREST)
            corrupted = Image.fromarray(np.asarray(corruption.apply(large, severity - 1), dtype=np.uint8)[..., :3])
            out[i] = np.asarray(corrupted.resize((size, size), Image.Resampling.BOX))
    return out


def robustness_predictions(records: list[dict], images: torch.Tensor, names=None, cache: Path | None = CACHE,
                           seed: int = 0, reused: list | None = None) -> dict[str, dict[str, np.ndarray]]:
    """Predicted classes (N) of each record's checkpoint under each corruption and severity: run -> name ->
    severities x N. Each corruption's predictions are cached in ``cache`` (keyed by run) so a cut run resumes (or
    several processes share the corruptions out); the names read back from it are appended to ``reused``."""
    models = {r["run"]: load_checkpoint(r["checkpoint"])[0] for r in records}
    pixels = images.permute(0, 2, 3, 1).cpu().numpy()
    out = {run: {} for run in models}
    for name in names or corruptions():
        path = cache / f"{name}-n{len(pixels)}-s{seed}.npz" if cache else None
        stored = dict(np.load(path)) if path and path.is_file() else {}
        if all(run in stored for run in models):
            for run in models:
                out[run][name] = stored[run]
            if reused is not None:
                reused.append(name)
            continue
        preds = {run: np.zeros((SEVERITIES, len(pixels)), dtype=np.int64) for run in models}
        for severity in range(1, SEVERITIES + 1):
            x = torch.from_numpy(corrupt(pixels, name, severity, seed + severity)).permute(0, 3, 1, 2).contiguous()
            for run, model in models.items():
                preds[run][severity - 1] = predict_proba(model, x).argmax(1).numpy()
        if path:
            save_npz(path, **stored, **preds)
        for run in models:
            out[run][name] = preds[run]
    return out


def robustness_summary(record: dict, predictions: dict[str, np.ndarray], labels: np.ndarray) -> dict:
    """Accuracy per corruption and severity, their mean (mean corruption accuracy) and the drop from clean
    accuracy relative to it, (clean - mean) / clean."""
    acc = {name: [float((p == labels).mean()) for p in preds] for name, preds in predictions.items()}
    clean = record["test"]["acc"]
    mean = float(np.mean([a for accs in acc.values() for a in accs]))
    return {"run": record["run"], "model": record.get("tag") or record["model"], "seed": record["seed"],
            "n": int(len(labels)), "corruptions": list(acc), "severities": SEVERITIES, "clean_acc": clean, "acc": acc,
            "mean_acc_per_corruption": {name: float(np.mean(a)) for name, a in acc.items()},
            "mean_corruption_acc": mean, "relative_drop": (clean - mean) / clean,
            "protocol": f"28x28 -> {CORRUPTION_SIZE}x{CORRUPTION_SIZE} (repeated pixels) -> MedMNIST-C -> 28x28 "
                        f"(area average); pointwise corruptions applied at 28x28: {', '.join(POINTWISE)}"}


def write_robustness(records: list[dict] | None = None, data_root="data", root: Path = DEPLOYMENT_ROOT) -> list[Path]:
    from .data import load_dataset
    records = released_records() if records is None else records
    started = time.time()
    test = load_dataset(DATASET, data_root).splits["test"]
    labels = test.labels.numpy()
    reused = []
    predictions = robustness_predictions(records, test.images, reused=reused)
    paths = []
    for record in records:
        summary = robustness_summary(record, predictions[record["run"]], labels)
        summary["scoring"] = provenance(started, ("medmnistc", "wand", "pillow", "opencv-python-headless"))
        # wall_seconds counts only what this call computed: these came from the cache of an earlier (cut) run.
        summary["scoring"]["from_cache"] = reused
        paths.append(write_json(Path(root) / "robustness" / f"{record['run']}.json", summary))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.robustness", description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default="data")
    args = parser.parse_args(argv)
    for path in write_robustness(data_root=args.data_root):
        print(json.dumps({"path": str(path)}))


if __name__ == "__main__":
    main()

"""`python -m utils.predict --checkpoint RUN.pt IMAGES... [--out FILE [--force]] [--json] [--threshold T]`: one row per
image (file, predicted class, its probability, the top 3, whether the model abstains), as CSV (default) or JSON.

IMAGES are files or folders (searched recursively for .png, .jpg, .jpeg, .tif, .tiff). MedMNIST v2 made BloodMNIST
by cropping the centre 200x200 of each 360x363 capture and resizing it to 28x28; an image given here is taken to
show a cell as a BloodMNIST image does (already that crop), so it gets a centred square crop of its shorter side
(a no-op for square images) and a resize to the checkpoint's input size: area averaging when shrinking (PIL's box
filter, OpenCV's INTER_AREA), bicubic when enlarging. A 28x28 image is used pixel for pixel, and a 28x28 image
enlarged by repeating pixels comes back exactly. Grayscale images are repeated
into R, G and B and an alpha channel is dropped, each with a warning (the model saw only RGB blood smears);
16-bit images are scaled to 8 bits; a multi-page TIFF gives its first page. A file that cannot be read (missing,
damaged, not an image, over PIL's decompression-bomb limit) gets a row with its error and no prediction; the others
are still predicted (exit status 1 says some failed). A folder with no image files is refused (exit status 2).

Images unlike the training images are flagged, not silently answered: under 8 pixels a side (or the model's
smallest input) a row gets an error; enlarged to the input size, or shrunk more than 10 times, a warning that says
by how much. The model cannot tell what an image shows: a PCam model answers a blood-cell image confidently, so read
the warnings.

``abstain`` is "yes" when the top probability is under the threshold chosen on validation to keep
``utils.selective.PREDICT_COVERAGE`` of the validation images (stored in ``results/deployment/selective/``; for
a run not stored there it is computed the same way from the validation predictions beside the checkpoint).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from warnings import catch_warnings, simplefilter

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from .cli import OneLineParser, probability
from .training import predict_proba
from .models import CheckpointError, checkpoint_files, input_size_and_classes, load_checkpoint
from .storage import OutputError, claim_output, write_text
from .selective import PREDICT_COVERAGE, predict_threshold, threshold_for_coverage

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Out of what the model was trained on: an image whose shorter side is under MIN_IMAGE_SIDE pixels (or under the
# model's own smallest input) holds no cell to classify and gets an error; one enlarged to the model's input size
# (it holds less detail than the training images), or shrunk more than SHRINK_WARN_FACTOR times (its cell is far
# smaller than a training image's; BloodMNIST's own 200x200 crops shrink 7.1x), is predicted with a warning.
MIN_IMAGE_SIDE, SHRINK_WARN_FACTOR = 8, 10
SHRINK, ENLARGE = Image.Resampling.BOX, Image.Resampling.BICUBIC
COLUMNS = ("file", "prediction", "probability", "top3", "abstain", "warning", "error")


@dataclass
class LoadedImage:
    path: Path
    pixels: np.ndarray | None  # H x W x 3 uint8 at the model's input size; None when unreadable
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def find_images(paths) -> list[Path]:
    """Files as given (any suffix: a file named on the command line is tried) and the image files under each
    folder, sorted; a path that does not exist is kept so that its row says so."""
    found = []
    for path in map(Path, paths):
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def _to_rgb(image: Image.Image, warnings: list[str]) -> Image.Image:
    if getattr(image, "n_frames", 1) > 1:
        warnings.append(f"{image.n_frames} pages: the first is used")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        values = values / 257 if values.max() > 255 else values  # 16 bits to 8
        image = Image.fromarray(np.clip(np.round(values), 0, 255).astype(np.uint8), "L")
        warnings.append("more than 8 bits per pixel: scaled to 8")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if has_alpha:
        warnings.append("alpha channel dropped")
    if image.mode in ("L", "LA", "1"):
        warnings.append("grayscale: repeated into R, G and B (the model was trained on colour images)")
    return image.convert("RGB")


def prepare_image(image: Image.Image, size: int, warnings: list[str] | None = None) -> np.ndarray:
    """``image`` as the model's H x W x 3 uint8 input: RGB, centred square crop, resized to ``size``."""
    warnings = [] if warnings is None else warnings
    image = _to_rgb(image, warnings)
    w, h = image.size
    side = min(w, h)
    if side < size:
        warnings.append(f"enlarged {size / side:.1f}x from {w}x{h}: the model was trained on {size}x{size} images, "
                        f"and this one holds less detail")
    elif side > SHRINK_WARN_FACTOR * size:
        warnings.append(f"shrunk {side / size:.1f}x from {w}x{h}: the model was trained on {size}x{size} images; "
                        f"is this one cell, cropped as in training?")
    if w != h:
        left, top = (w - side) // 2, (h - side) // 2
        image = image.crop((left, top, left + side, top + side))
    if image.size != (size, size):
        image = image.resize((size, size), SHRINK if image.width > size else ENLARGE)
    return np.asarray(image, dtype=np.uint8)


def load_image(path: Path, size: int, smallest: int = MIN_IMAGE_SIDE) -> LoadedImage:
    """``path`` prepared for the model, or its row's error: whatever PIL raises on one file (a decompression bomb, a
    damaged or unknown format, a decoder's failure) stays with that file, and the others are still predicted. An
    image whose shorter side is under ``smallest`` pixels is refused."""
    warnings = []
    try:
        with catch_warnings():
            # Over Image.MAX_IMAGE_PIXELS (89 million) PIL only warns, and decoding would take gigabytes: refused too.
            simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if min(image.size) < smallest:
                    return LoadedImage(path, None, error=f"{image.width}x{image.height} pixels: too small to classify "
                                                         f"(at least {smallest}x{smallest}; the model was trained on "
                                                         f"{size}x{size} images)")
                image.load()
                return LoadedImage(path, prepare_image(image, size, warnings), warnings)
    except FileNotFoundError:
        return LoadedImage(path, None, error="no such file")
    except IsADirectoryError:
        return LoadedImage(path, None, error="a folder")
    except PermissionError:
        return LoadedImage(path, None, error="not readable by this user (permission denied)")
    except UnidentifiedImageError:
        return LoadedImage(path, None, error="not an image PIL can read (PNG, JPEG or TIFF expected)")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return LoadedImage(path, None, error=f"too large to open safely ({_first_line(error)}); crop or shrink it "
                                             f"below {Image.MAX_IMAGE_PIXELS:,} pixels first")
    except Exception as error:  # truncated or damaged data, or a decoder that fails on this file
        return LoadedImage(path, None, error=f"damaged image ({_first_line(error)})")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:120] if text else type(error).__name__


def abstain_threshold(checkpoint: str | Path, meta: dict) -> float | None:
    """The stored validation threshold of the checkpoint's run, else the same choice made from the validation
    predictions beside the checkpoint, else None (no abstention)."""
    if (stored := predict_threshold(meta.get("run", Path(checkpoint).stem))) is not None:
        return stored
    npz = Path(checkpoint).with_suffix(".npz")
    if npz.is_file():
        try:
            with np.load(npz) as predictions:
                if "val_probs" in predictions.files:
                    return threshold_for_coverage(predictions["val_probs"].max(1), PREDICT_COVERAGE)
        except Exception as error:  # truncated, damaged or another kind of file
            raise CheckpointError(f"{npz}: the run's predictions beside the checkpoint cannot be read "
                                  f"({_first_line(error)}); restore the file (git checkout, or train the run again) "
                                  f"or pass --threshold") from None
    return None


def predict_files(checkpoint: str | Path, paths, threshold: float | None = None, batch_size: int = 512) -> dict:
    """Rows of predictions for the images under ``paths`` (see the module's docstring), with the threshold
    used and how images were prepared."""
    model, meta = load_checkpoint(checkpoint)
    size, names = input_size_and_classes(checkpoint, meta)
    threshold = abstain_threshold(checkpoint, meta) if threshold is None else threshold
    smallest = max(MIN_IMAGE_SIDE, getattr(model, "min_input_size", 1))
    loaded = [load_image(p, size, smallest) for p in find_images(paths)]
    good = [item for item in loaded if item.pixels is not None]
    probs = np.zeros((0, len(names)), dtype=np.float32)
    if good:
        images = torch.from_numpy(np.stack([item.pixels for item in good])).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad():
            probs = predict_proba(model, images, batch_size=batch_size).numpy()
    rows, next_good = [], iter(probs)
    for item in loaded:
        row = {"file": str(item.path), "prediction": None, "probability": None, "top3": None, "abstain": None,
               "warning": "; ".join(item.warnings) or None, "error": item.error}
        if item.pixels is not None:
            p = next(next_good)
            top = np.argsort(-p, kind="stable")[:3]
            row.update(prediction=names[top[0]], probability=float(p[top[0]]),
                       top3=[{"class": names[k], "probability": float(p[k])} for k in top],
                       abstain=None if threshold is None else bool(p[top[0]] < threshold))
        rows.append(row)
    return {"checkpoint": str(checkpoint), "run": meta.get("run"), "input_size": size, "threshold": threshold,
            "coverage_on_val": PREDICT_COVERAGE if threshold is not None else None,
            "preprocessing": f"RGB; centred square crop; resized to {size}x{size} (area average when shrinking, "
                             f"bicubic when enlarging)", "rows": rows}


def rows_as_csv(rows: list[dict]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        flat = dict(row)
        flat["probability"] = f"{row['probability']:.4f}" if row["probability"] is not None else ""
        flat["top3"] = "; ".join(f"{t['class']}: {t['probability']:.4f}" for t in row["top3"]) if row["top3"] else ""
        flat["abstain"] = {True: "yes", False: "no", None: ""}[row["abstain"]]
        writer.writerow({k: "" if flat[k] is None else flat[k] for k in COLUMNS})
    return out.getvalue()


def write_images(images: torch.Tensor, folder: str | Path, scale: int = 1, names: list[str] | None = None,
                 resample: Image.Resampling = Image.Resampling.NEAREST) -> list[Path]:
    """uint8 N x 3 x H x W images as PNG files in ``folder`` (``<i>.png``, or ``<i>_<name>.png``), enlarged
    ``scale`` times with ``resample`` (by default each pixel repeated): how the notebook, the tests and
    ``predict_check`` make files from the test split."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, pixels in enumerate(images.permute(0, 2, 3, 1).cpu().numpy()):
        image = Image.fromarray(pixels)
        if scale != 1:
            image = image.resize((image.width * scale, image.height * scale), resample)
        path = folder / (f"{i:05d}_{names[i]}.png" if names else f"{i:05d}.png")
        image.save(path)
        paths.append(path)
    return paths


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.predict", description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a run's .pt (results/runs/<run>.pt)")
    parser.add_argument("images", nargs="+", help="image files or folders")
    parser.add_argument("--json", action="store_true", help="print JSON (with the threshold used) instead of CSV")
    parser.add_argument("--out", help="write to this file instead of standard output (a new file, unless --force)")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists (never the checkpoint's "
                        "files or an image read)")
    parser.add_argument("--threshold", type=probability,
                        help="abstain below this top probability, from 0 to 1 (default: chosen on val)")
    args = parser.parse_args(argv)
    images = find_images(args.images)
    for folder in filter(Path.is_dir, map(Path, args.images)):
        if not find_images([folder]):
            parser.error(f"{folder}: no image files in this folder or below ({', '.join(IMAGE_SUFFIXES)}); "
                         f"give folders or files of images")
    if args.out:
        try:  # before anything is predicted: never the checkpoint, its run's files or an image read
            claim_output(args.out, args.force, inputs=[*checkpoint_files(args.checkpoint), *images])
        except OutputError as error:
            parser.error(f"--out: {error}")
    try:
        result = predict_files(args.checkpoint, images, args.threshold)
    except (FileNotFoundError, CheckpointError) as error:
        parser.exit(2, f"error: {error}\n")
    for row in result["rows"]:
        for kind in ("error", "warning"):
            if row[kind]:
                print(f"{row['file']}: {kind}: {row[kind]}", file=sys.stderr)
    if result["threshold"] is None:
        print("no validation threshold for this checkpoint: abstain is left empty", file=sys.stderr)
    text = json.dumps(result, indent=1) + "\n" if args.json else rows_as_csv(result["rows"])
    if args.out:
        write_text(args.out, text)
    else:
        sys.stdout.write(text)
    return 1 if any(row["error"] for row in result["rows"]) else 0


if __name__ == "__main__":
    sys.exit(main())


# How the check enlarges the test split's images: every pixel repeated (the resize in `prepare_image` undoes it
# exactly), and bicubic (smooth: shrinking it again cannot give back the 28x28 pixels, so predictions move).
CHECK_VARIANTS = {"28x28": (1, Image.Resampling.NEAREST), "8x repeated pixels": (8, Image.Resampling.NEAREST),
                  "8x bicubic": (8, Image.Resampling.BICUBIC)}
CHECK_TOLERANCE = 0.001  # |accuracy through the command - recorded accuracy| for 28x28 and repeated pixels


def predict_check(records: list[dict], images: torch.Tensor, labels: np.ndarray, workdir: str | Path) -> dict:
    """Each run's test accuracy through the command (``main``, as a user calls it) on the test split written
    as PNG files at 28x28 and enlarged 8x, against its recorded accuracy and its stored predictions."""
    import tempfile
    import time
    out = {}
    for variant, (scale, resample) in CHECK_VARIANTS.items():
        folder = Path(workdir) / variant.replace(" ", "_")
        started = time.time()
        write_images(images, folder, scale, resample=resample)
        write_seconds = time.time() - started
        for record in records:
            started = time.time()
            with tempfile.TemporaryDirectory() as tmp:
                rc = main(["--checkpoint", record["checkpoint"], str(folder), "--json", "--out", f"{tmp}/p.json"])
                result = json.loads(Path(tmp, "p.json").read_text())
            names = record["class_names"]
            pred = np.array([names.index(row["prediction"]) for row in result["rows"]])
            with np.load(record["predictions"]) as npz:
                stored = npz["test_probs"].argmax(1)
            out.setdefault(record["run"], {"recorded_test_acc": record["test"]["acc"], "variants": {}})
            out[record["run"]]["variants"][variant] = {
                "scale": scale, "resample": resample.name, "exit_status": rc, "n": int(len(pred)),
                "acc": float((pred == labels).mean()), "agreement_with_stored": float((pred == stored).mean()),
                "abstained": float(np.mean([row["abstain"] for row in result["rows"]])),
                "threshold": result["threshold"], "write_seconds": write_seconds, "predict_seconds": time.time() - started}
    return {"tolerance": CHECK_TOLERANCE, "tolerance_applies_to": ["28x28", "8x repeated pixels"], "runs": out}

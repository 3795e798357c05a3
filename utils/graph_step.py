"""A training step replayed as one CUDA graph (``TrainConfig.engine = "graph"``).

Eager PyTorch launches every kernel of a step from Python: DeepEfficientNet at batch 128 on an H100 spent
62 ms of host time per step around 7.7 ms of GPU work (../shared/gpu-runs/dff1171/README.md). Here the
whole step is recorded once and replayed: the batch's indices (from the epoch's order and a step counter on
the device), gathering and augmenting the batch, forward, loss, backward, the optimizer step with the learning
rate read from the schedule's table, the weight EMA, and the epoch's running loss, hits and first non-finite
step. Per step the host calls ``replay()``; per epoch it writes the new order and reads the sums once.

What stays random: the order is drawn per epoch outside the graph from the loader's generator; augmentation
(the loader's generator), dropout and stochastic depth (the default CUDA generator) draw inside it from
generators registered with the graph, whose offsets advance at every replay: new numbers each step, the same
numbers for the same seed.

``GraphStep(..., capture=False)`` runs the same body without recording it; that is how the tests check it
against the eager engine on a CPU.
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import nn


def unsupported_reason(device: torch.device, optimizer: str, amp_dtype: torch.dtype | None, compile: bool = False,
                       capture: bool = True) -> str | None:
    """Why this run cannot take the graph step, or None when it can. ``capture=False`` (the step run without
    recording it) asks only what the step itself needs."""
    if optimizer != "adamw":
        return f"{optimizer}'s update with a tensor learning rate is not capturable (AdamW is)"
    if compile:
        return "compile=True and engine='graph' are two ways to the same end; the graph engine takes the model as is"
    if not capture:
        return None
    if device.type != "cuda":
        return f"CUDA graphs need a CUDA device, this run is on {device.type}"
    if amp_dtype == torch.float16:
        return "fp16 needs a GradScaler, whose inf check reads the GPU from the host (use amp='bf16')"
    if not hasattr(torch.cuda.CUDAGraph, "register_generator_state"):
        return f"torch {torch.__version__} cannot register the augmentation generator with a graph"
    return None


def graph_autocast(device: torch.device, amp_dtype: torch.dtype | None) -> Callable[[], object]:
    """Autocast for recorded work: without its cast cache, which would carry tensors from the capture into every
    replay."""
    if amp_dtype is None:
        return nullcontext
    return lambda: torch.autocast(device.type, dtype=amp_dtype, cache_enabled=False)


@torch.no_grad()
def _ema_update_(ema_tensors, model_tensors, decay: float, n_averaged: torch.Tensor) -> None:
    """``AveragedModel.update_parameters`` with ``get_ema_multi_avg_fn(decay)`` and buffers, without its host
    check of ``n_averaged``: the first update copies, the later ones move ``1 - decay`` of the way."""
    first = n_averaged == 0
    weight = torch.where(first, 1.0, 1.0 - decay)
    for ema, current in zip(ema_tensors, model_tensors, strict=True):
        current = current.detach()
        if ema.is_floating_point():
            ema.lerp_(current, weight.to(ema.dtype))
        else:  # integer buffers (BatchNorm's num_batches_tracked), as get_ema_multi_avg_fn treats them
            ema.copy_(torch.where(first, current, ema * decay + current * (1 - decay)))
    n_averaged.add_(1)


class GraphStep:
    """One training step of ``model`` on ``loader``'s batches, recorded as a CUDA graph when ``capture``.

    ``optimizer`` must have one learning-rate tensor per group (capturable AdamW on CUDA); ``lr_values`` is the
    learning rate of every step (``training.schedule_values``); ``ema`` an ``AveragedModel`` or None;
    ``start_step`` the global step a resumed run continues from.
    """

    def __init__(self, model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                 loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], lr_values: torch.Tensor,
                 autocast: Callable[[], object], ema=None, ema_decay: float = 0.0, capture: bool = True,
                 start_step: int = 0, warmup_steps: int = 3):
        self.model, self.loader, self.optimizer, self.loss_fn = model, loader, optimizer, loss_fn
        self.autocast, self.ema, self.ema_decay = autocast, ema, ema_decay
        device = loader.split.labels.device
        self.steps_per_epoch = len(loader)
        self.rows = loader.batch_size if loader.drop_last else min(loader.batch_size, len(loader.split))
        self.lr_values, self.lr_host = lr_values.to(device), lr_values.tolist()
        self.order = torch.zeros(len(loader.split), dtype=torch.long, device=device)
        self.positions = torch.arange(self.rows, device=device)
        self.global_step = torch.full((), start_step, dtype=torch.long, device=device)  # resume continues here
        self.loss_sum = torch.zeros((), device=device)
        self.hits = torch.zeros((), dtype=torch.long, device=device)
        self.first_bad = torch.full((), -1, dtype=torch.long, device=device)  # global step, 1-based
        self.graph = None
        if capture:
            self._capture(warmup_steps)

    def _body(self) -> None:
        step_in_epoch = self.global_step % self.steps_per_epoch
        images, labels = self.loader.batch(self.order[step_in_epoch * self.rows + self.positions])
        # index_select, not lr_values[global_step]: indexing with a 0-dim tensor reads it on the host.
        lr = self.lr_values.index_select(0, self.global_step.view(1)).squeeze(0)
        for group in self.optimizer.param_groups:
            group["lr"].copy_(lr)
        with self.autocast():
            logits = self.model(images)
            loss = self.loss_fn(logits, labels)
        loss.backward()
        self.optimizer.step()
        if self.ema is not None:
            _ema_update_(list(self.ema.module.parameters()) + list(self.ema.module.buffers()),
                         list(self.model.parameters()) + list(self.model.buffers()), self.ema_decay,
                         self.ema.n_averaged)
        loss = loss.detach().float()
        self.global_step.add_(1)
        bad = ~torch.isfinite(loss) & (self.first_bad < 0)
        self.first_bad.copy_(torch.where(bad, self.global_step, self.first_bad))
        self.loss_sum.add_(loss * len(labels))
        self.hits.add_((logits.detach().argmax(1) == labels).sum())

    def _state(self) -> dict:
        tensors = {"model": self.model.state_dict(), "counters": [self.global_step, self.loss_sum, self.hits,
                                                                  self.first_bad]}
        if self.ema is not None:
            tensors["ema"] = self.ema.state_dict()
        return tensors

    def _capture(self, warmup_steps: int) -> None:
        """Warm up on a side stream (cuDNN picks its kernels, the optimizer makes its state), put back every
        weight, optimizer moment, counter and generator the warm-up moved, then record one step."""
        device = self.global_step.device
        generators = [self.loader.generator, torch.cuda.default_generators[device.index or 0]]
        saved = _clone(self._state())
        saved_optimizer = {p: _clone(s) for p, s in self.optimizer.state.items()}
        saved_rng = [g.get_state() for g in generators]
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(warmup_steps):
                self.optimizer.zero_grad(set_to_none=True)
                self._body()
        torch.cuda.current_stream(device).wait_stream(side)
        with torch.no_grad():
            _copy_into(self._state(), saved)
            for p, state in self.optimizer.state.items():
                for key, value in state.items():
                    if torch.is_tensor(value):  # moments made by the warm-up start from zero, as a fresh AdamW's
                        value.copy_(saved_optimizer[p][key]) if key in saved_optimizer.get(p, {}) else value.zero_()
        for g, state in zip(generators, saved_rng):
            g.set_state(state)
        self.graph = torch.cuda.CUDAGraph()
        self.graph.register_generator_state(self.loader.generator)  # capture registers the default one itself
        self.optimizer.zero_grad(set_to_none=True)
        with torch.cuda.graph(self.graph):
            self._body()

    def lr_after(self, epochs: int) -> float:
        """The learning rate after ``epochs`` epochs, as the eager engine's scheduler would show it."""
        return self.lr_host[epochs * self.steps_per_epoch]

    def run_epoch(self, max_steps: int | None = None) -> None:
        """One epoch's steps (or its first ``max_steps``: the benchmark); the sums stay on the device until
        ``read_epoch``."""
        self.order.copy_(self.loader.epoch_order())
        self.loss_sum.zero_()
        self.hits.zero_()
        for _ in range(min(self.steps_per_epoch, max_steps or self.steps_per_epoch)):
            if self.graph is not None:
                self.graph.replay()
            else:
                self.optimizer.zero_grad(set_to_none=True)
                self._body()

    def read_epoch(self) -> tuple[float, float, int]:
        """(mean training loss, training accuracy, first non-finite step of this epoch or -1): one host sync."""
        loss_sum, hits, first_bad, step = (t.item() for t in (self.loss_sum, self.hits, self.first_bad,
                                                               self.global_step))
        seen = self.steps_per_epoch * self.rows
        epoch_start = step - self.steps_per_epoch
        return loss_sum / seen, hits / seen, first_bad - epoch_start if first_bad > epoch_start else -1


def _clone(tree):
    if torch.is_tensor(tree):
        return tree.detach().clone()
    if isinstance(tree, dict):
        return {k: _clone(v) for k, v in tree.items()}
    if isinstance(tree, (list, tuple)):
        return type(tree)(_clone(v) for v in tree)
    return tree


def _copy_into(tree, saved) -> None:
    if torch.is_tensor(tree):
        tree.copy_(saved)
    elif isinstance(tree, dict):
        for k in tree:
            _copy_into(tree[k], saved[k])
    elif isinstance(tree, (list, tuple)):
        for t, s in zip(tree, saved, strict=True):
            _copy_into(t, s)


class GraphedPredictor:
    """Batch-1 (or any fixed-shape) inference replayed as a CUDA graph: ``predictor(x)`` copies ``x`` into the
    static input and replays; the returned tensor is overwritten by the next call."""

    def __init__(self, model: nn.Module, example: torch.Tensor, autocast: Callable[[], object]):
        self.model = model.eval()
        self.static_input = example.clone()
        side = torch.cuda.Stream(example.device)
        side.wait_stream(torch.cuda.current_stream(example.device))
        with torch.no_grad(), torch.cuda.stream(side), autocast():
            for _ in range(3):
                model(self.static_input)
        torch.cuda.current_stream(example.device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.no_grad(), torch.cuda.graph(self.graph), autocast():
            self.static_output = model(self.static_input)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.static_input.copy_(x)
        self.graph.replay()
        return self.static_output

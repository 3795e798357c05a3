"""`python -m utils.bench [--quick] [--model M] [--data-root DIR] [--out FILE]`

Measures side by side, in one run, with the same model, batch size, optimiser and precision:
(a) the standard pipeline: torchvision transforms per sample in a Dataset, batched by a DataLoader with worker
    processes, an eager step;
(b) this engine, eager (``engine="eager"``): uint8 data resident on the device, batches drawn by index and
    augmented as whole batches with torch ops, no host sync inside an epoch;
(c) this engine, graph-captured (``engine="graph"``, CUDA only; otherwise the JSON says why it was skipped).
For each: wall ms per step, GPU kernel ms per step (torch.profiler) and the fraction of the step the GPU is
busy. Also: the 50-epoch recipe's wall time per engine (validation included; measured in full mode, estimated
from the timed steps in --quick), inference throughput with large batches, batch-1 latency eager and replayed
as a CUDA graph, peak memory, parameters and FLOPs, and the step's floor: its FLOPs over a matmul rate and its
bytes over a copy bandwidth, both measured in the same run. Prints and writes one JSON object.
`--epoch-times` instead times training steps of every registered model (seconds per epoch); `--cpu-threads` measures
how a CPU sweep should spend two cores (one or two threads per process, alone and beside a busy core); `--malloc`
times the speedrun's training step with glibc's default allocator and with freed memory kept, alternating.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision.transforms import v2

from .data import DEFAULT_DATA_ROOT, load_dataset
from .experiment import count_flops, cpu_model, device_name, git_commit, keep_freed_memory, peak_memory
from .models import MODEL_NAMES, build_model, count_parameters
from .profiles import default_device, get_profile
from .recipes import train_config
from .speedrun import native_bf16, recipe_for
from .storage import write_text
from .graph_step import GraphedPredictor, graph_autocast, unsupported_reason
from .training import autocast_context, build_stepper, fit, make_optimizer, resolve_amp, train_loader


class TransformDataset(Dataset):
    """The usual way: one image at a time through torchvision transforms, in worker processes."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images.cpu(), labels.cpu()
        self.transform = v2.Compose([
            v2.RandomHorizontalFlip(), v2.RandomVerticalFlip(),
            v2.RandomChoice([v2.RandomRotation((a, a)) for a in (0, 90, 180, 270)]),
            v2.RandomAffine(degrees=15, translate=(0.08, 0.08), scale=(0.9, 1.1)),
            v2.ColorJitter(0.2, 0.2, 0.2, 0.04), v2.ToDtype(torch.float32, scale=True)])

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _cycle(make_iter):
    while True:
        yield from make_iter()


def _mean_seconds(fn, repeats: int, device, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    _sync(device)
    return (time.perf_counter() - t) / repeats


@torch.no_grad()
def time_inference(model, device, amp_dtype, image_size=28, batch=4096, repeats=10):
    """(images per second at ``batch``, batch-1 latency in ms), eager."""
    model.eval()
    x = torch.rand(batch, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    one = x[:1]
    with autocast_context(device, amp_dtype):
        throughput = batch / _mean_seconds(lambda: model(x), repeats, device)
        latency_ms = 1000 * _mean_seconds(lambda: model(one), 50, device, warmup=5)
    return throughput, latency_ms


def _time_steps(run, steps: int, warmup: int, device) -> float:
    """Seconds per step of ``run(n)`` (n training steps) over ``steps`` after ``warmup`` untimed ones."""
    run(warmup)
    _sync(device)
    t = time.perf_counter()
    run(steps)
    _sync(device)
    return (time.perf_counter() - t) / steps


def _kernel_ms_per_step(run, steps: int, device) -> float | None:
    """GPU kernel time per step as ``torch.profiler`` counts it (None off CUDA)."""
    if device.type != "cuda":
        return None
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        run(steps)
        _sync(device)
    events = prof.key_averages()
    total_us = sum(getattr(e, "self_device_time_total", getattr(e, "self_cuda_time_total", 0)) for e in events)
    return total_us / 1000 / steps


def _standard_runner(model, batches, amp_dtype, device, cfg):
    """n steps of the usual loop: a DataLoader batch copied to the device, an eager AdamW step."""
    optimizer = make_optimizer(model, cfg)

    def run(n):
        model.train()
        for _ in range(n):
            images, labels = next(batches)
            images = images.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            labels = labels.to(device, non_blocking=True)
            with autocast_context(device, amp_dtype):
                loss = F.cross_entropy(model(images), labels, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return run


def _engine_runner(model, train, num_classes, cfg, engine, amp_dtype):
    """n steps of this project's engine (``training.build_stepper``) on the device-resident training split."""
    generator = torch.Generator(device=train.labels.device).manual_seed(0)
    stepper = build_stepper(model, train_loader(train, cfg, generator, num_classes), cfg, engine,
                            amp_dtype)

    def run(n):
        model.train()
        while n > 0:
            stepper.run_epoch(max_steps=n)
            n -= min(n, stepper.steps_per_epoch)
    return run


def conv_backward_flops(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                        _output_padding, _groups, output_mask, out_shape=None, **kwargs) -> int:
    """A convolution's backward: the input gradient and the weight gradient each cost what the forward costs.
    torch.utils.flop_counter's own formula counts the weight gradient of a grouped convolution without dividing by
    the groups, so a depthwise convolution's backward was booked at about C times its true cost (C channels)."""
    from torch.utils.flop_counter import conv_flop_count
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(bool(output_mask[0])) + int(bool(output_mask[1])))


GROUPED_CONV_CORRECTED = "torch.utils.flop_counter, grouped convolutions' backward corrected"


def counted_flops(fn) -> int:
    """FLOPs of ``fn()`` by torch.utils.flop_counter, with grouped convolutions' backward counted correctly."""
    with FlopCounterMode(display=False,
                         custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flops}) as counter:
        fn()
    return int(counter.get_total_flops())


def step_flops(model, batch: int, image_size: int) -> int:
    """FLOPs of one training step's forward and backward at ``batch`` (``counted_flops``)."""
    device = next(model.parameters()).device
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    labels = torch.zeros(batch, dtype=torch.long, device=device)
    flops = counted_flops(lambda: F.cross_entropy(model(x), labels).backward())
    model.zero_grad(set_to_none=True)
    return flops


def step_bytes(model, batch: int, image_size: int, activation_bytes: int) -> int:
    """A lower bound on the bytes one training step moves: every layer's output written in the forward pass and
    read in the backward pass, and AdamW reading weight, gradient and two moments and writing three (fp32)."""
    device = next(model.parameters()).device
    elements = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: elements.append(out.numel()))
             for m in model.modules() if not list(m.children())]
    with torch.no_grad():
        model(torch.rand(batch, 3, image_size, image_size, device=device))
    for h in hooks:
        h.remove()
    return 2 * activation_bytes * sum(elements) + 7 * 4 * count_parameters(model)


def _best_seconds(fn, device, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        best = min(best, time.perf_counter() - t)
    return best


def measured_rates(device, dtype) -> dict:
    """The machine's matmul rate in ``dtype`` and its copy bandwidth, each the best of a few measurements here and
    now (a large square matmul; a copy between two large buffers, which reads and writes every byte)."""
    n = 8192 if device.type == "cuda" else 4096
    a, b = (torch.randn(n, n, device=device, dtype=dtype or torch.float32) for _ in range(2))
    flops = 2 * n**3 / _best_seconds(lambda: a @ b, device)
    size = (1 << 30) if device.type == "cuda" else (1 << 27)
    src, dst = torch.empty(size, dtype=torch.uint8, device=device), torch.empty(size, dtype=torch.uint8, device=device)
    bandwidth = 2 * size / _best_seconds(lambda: dst.copy_(src), device)
    return {"matmul_flops_per_second": flops, "matmul_dtype": str(dtype or torch.float32).replace("torch.", ""),
            "copy_bytes_per_second": bandwidth}


def benchmark(model_name="deep_efficientnet", quick=False, data_root=DEFAULT_DATA_ROOT, fit_epochs: int = 50) -> dict:
    """The side-by-side benchmark (module docstring). ``fit_epochs``: in full mode, the epochs of the recipe trained
    per engine and timed, scaled to 50 where fewer (to fit a time limit, as ``make gpu-check`` does)."""
    device = default_device()
    data = load_dataset("bloodmnist", data_root, device=device)
    cfg = train_config(model_name, "bloodmnist", get_profile("full"))
    amp_dtype = resolve_amp(cfg.amp, device)
    train = data.splits["train"]
    steps_per_epoch = len(train) // cfg.batch_size
    steps, warmup = (8, 2) if quick else (steps_per_epoch, 5)
    profiled_steps = 3 if quick else 10
    workers = 2 if quick or device.type == "cpu" else 8

    def fresh_model():
        torch.manual_seed(0)
        return build_model(model_name, data.num_classes).to(device).to(memory_format=torch.channels_last)

    model = fresh_model()
    params, flops = count_parameters(model), count_flops(model, data.image_size)
    standard_loader = DataLoader(TransformDataset(train.images, train.labels), batch_size=cfg.batch_size,
                                 shuffle=True, drop_last=True, num_workers=workers,
                                 pin_memory=device.type == "cuda", persistent_workers=True)
    runners = {"standard_dataloader": _standard_runner(model, _cycle(lambda: iter(standard_loader)), amp_dtype,
                                                       device, cfg),
               "eager": _engine_runner(fresh_model(), train, data.num_classes, cfg, "eager", amp_dtype)}
    graph_skipped = unsupported_reason(device, cfg.optimizer, amp_dtype, cfg.compile)
    if graph_skipped is None:
        runners["graph"] = _engine_runner(fresh_model(), train, data.num_classes, cfg, "graph", amp_dtype)
    engines = {}
    for name, run in runners.items():  # the same model, batch, optimizer and precision for each
        wall = _time_steps(run, steps, warmup, device)
        kernel = _kernel_ms_per_step(run, profiled_steps, device)
        engines[name] = {"wall_ms_per_step": 1000 * wall, "gpu_kernel_ms_per_step": kernel,
                         "gpu_busy_fraction": kernel / (1000 * wall) if kernel is not None else None,
                         "epoch_seconds": wall * steps_per_epoch}
    if graph_skipped:
        engines["graph"] = {"skipped": graph_skipped}
    standard_step = engines["standard_dataloader"]["wall_ms_per_step"]
    for row in engines.values():
        if "wall_ms_per_step" in row:
            row["speedup_vs_dataloader"] = standard_step / row["wall_ms_per_step"]

    train_50 = {}
    if quick:
        val_seconds = _time_validation(model, data, amp_dtype, device)
        for name in ("eager", "graph"):
            if "wall_ms_per_step" in engines[name]:
                train_50[name] = 50 * (engines[name]["epoch_seconds"] + val_seconds)
    else:
        # The recipe, validation after every epoch included, wall-clock, per engine: fit_epochs of it, scaled to 50.
        for name in ("eager", "graph"):
            if "wall_ms_per_step" in engines[name]:
                _sync(device)
                t = time.perf_counter()
                fit(fresh_model(), data, dataclasses.replace(cfg, engine=name, epochs=fit_epochs), progress=False)
                _sync(device)
                train_50[name] = (time.perf_counter() - t) * 50 / fit_epochs
    throughput, latency = time_inference(model, device, amp_dtype, data.image_size,
                                         batch=4096 if device.type == "cuda" else 512,
                                         repeats=20 if device.type == "cuda" else 3)
    latency_graph = time_graphed_latency(model, device, amp_dtype, data.image_size) if graph_skipped is None else None
    rates = measured_rates(device, amp_dtype)
    activation_bytes = torch.finfo(amp_dtype).bits // 8 if amp_dtype else 4
    floor = {"step_flops": step_flops(fresh_model(), cfg.batch_size, data.image_size),
             "step_bytes": step_bytes(fresh_model(), cfg.batch_size, data.image_size, activation_bytes), **rates}
    floor["compute_ms_per_step"] = 1000 * floor["step_flops"] / rates["matmul_flops_per_second"]
    floor["memory_ms_per_step"] = 1000 * floor["step_bytes"] / rates["copy_bytes_per_second"]
    floor["floor_ms_per_step"] = max(floor["compute_ms_per_step"], floor["memory_ms_per_step"])
    floor["flop_count"] = GROUPED_CONV_CORRECTED
    # What fraction of the floor's pace each pipeline reaches (1 would be a step at the floor).
    floor["fraction_reached"] = {name: floor["floor_ms_per_step"] / row["wall_ms_per_step"]
                                 for name, row in engines.items() if "wall_ms_per_step" in row}
    peak, peak_kind = peak_memory(device)
    return {
        "device": device_name(device), "torch_version": torch.__version__, "git_commit": git_commit(),
        "model": model_name, "params": params, "flops": flops, "batch_size": cfg.batch_size,
        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "quick": quick, "timed_steps": steps, "profiled_steps": profiled_steps, "dataloader_workers": workers,
        "engines": engines,
        "epoch_seconds": {"project_pipeline": engines["eager"]["epoch_seconds"],
                          "standard_dataloader": engines["standard_dataloader"]["epoch_seconds"]},
        "train_speedup_vs_dataloader": engines["eager"]["speedup_vs_dataloader"],
        "train_seconds_50_epochs": train_50["eager"], "train_seconds_50_epochs_by_engine": train_50,
        "train_seconds_50_epochs_measured": not quick and fit_epochs == 50,
        "fit_epochs_timed": None if quick else fit_epochs,
        "inference_images_per_second": throughput, "latency_ms_batch1": latency,
        "latency_ms_batch1_graph": latency_graph, "floor": floor,
        "peak_memory_bytes": peak, "peak_memory_kind": peak_kind,
    }


@torch.no_grad()
def time_graphed_latency(model, device, amp_dtype, image_size=28, repeats=200) -> float:
    """Batch-1 latency in ms with the forward pass replayed as a CUDA graph (``GraphedPredictor``)."""
    one = torch.rand(1, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    predictor = GraphedPredictor(model, one, graph_autocast(device, amp_dtype))
    return 1000 * _mean_seconds(lambda: predictor(one), repeats, device, warmup=10)


@torch.no_grad()
def _time_validation(model, data, amp_dtype, device) -> float:
    from .training import predict_proba
    _sync(device)
    t = time.perf_counter()
    predict_proba(model, data.splits["val"].images, amp_dtype=amp_dtype, channels_last=True)
    _sync(device)
    return time.perf_counter() - t


def epoch_times(data_root=DEFAULT_DATA_ROOT, steps: int = 6) -> dict:
    """Seconds per training epoch of every model at 28x28 with the recipe's batch size,
    from ``steps`` timed steps after 2 warm-up steps, on this machine's default device."""
    device = default_device()
    data = load_dataset("bloodmnist", data_root, device=device)
    out = {}
    for name in MODEL_NAMES:
        cfg = train_config(name, "bloodmnist", get_profile("full"))
        torch.manual_seed(0)
        model = build_model(name, 8).to(device).to(memory_format=torch.channels_last)
        run = _engine_runner(model, data.splits["train"], data.num_classes, cfg, "eager", resolve_amp(cfg.amp, device))
        step = _time_steps(run, steps, 2, device)
        out[name] = step * (len(data.splits["train"]) // cfg.batch_size)
        print(json.dumps({"model": name, "epoch_seconds": round(out[name], 1)}), flush=True)
    return {"device": device_name(device), "torch_version": torch.__version__, "timed_steps": steps,
            "epoch_seconds": out}


def _timed_step_ms(model_name: str, threads: int, steps: int, data_root: str, niceness: int = 0) -> float:
    """ms per training step of ``model_name`` (the recipe's batch, eager engine, CPU) in this process at
    ``threads`` threads: a worker of ``cpu_threads``."""
    if niceness:
        os.nice(niceness)
    return _cpu_step_ms(model_name, {}, train_config(model_name, "bloodmnist", get_profile("full")), threads, steps,
                        data_root, warmup=2)


def _cpu_step_ms(model_name: str, model_kwargs: dict, cfg, threads: int, steps: int, data_root: str,
                 warmup: int) -> float:
    """ms per eager training step on the CPU, at ``threads`` threads, of ``model_name`` trained by ``cfg`` (its
    precision included) on BloodMNIST's training split."""
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    data = load_dataset("bloodmnist", data_root, device=device)
    torch.manual_seed(0)
    model = build_model(model_name, data.num_classes, **model_kwargs).to(memory_format=torch.channels_last)
    run = _engine_runner(model, data.splits["train"], data.num_classes, cfg, "eager", resolve_amp(cfg.amp, device))
    return 1000 * _time_steps(run, steps, warmup, device)


def _side_by_side(jobs: list[tuple], data_root: str) -> list[float]:
    """``_timed_step_ms`` of each (model, threads, steps, niceness) job, all in processes running at the same time."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    with ProcessPoolExecutor(len(jobs), mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(_timed_step_ms, model, threads, steps, data_root, niceness)
                   for model, threads, steps, niceness in jobs]
        return [f.result() for f in futures]


CPU_THREAD_MODELS = ("deep_efficientnet", "simple_cnn", "efficientnet_lite0", "efficientnet_b0_se",
                     "efficientnet_b0_cbam", "resnet18")


def cpu_threads(data_root=DEFAULT_DATA_ROOT, steps: int = 6, models=CPU_THREAD_MODELS) -> dict:
    """How a CPU sweep should use two cores, measured side by side in one run (utils.sweep's defaults): ms per
    training step at batch 128 of each model on one thread and of DeepEfficientNet on two, each alone; the images
    per second of two one-thread processes at once against one two-thread process; and each setting's step while
    another one-thread training process at niceness 5 holds a core (a sweep's worker beside it)."""
    name = models[0]
    batch = train_config(name, "bloodmnist", get_profile("full")).batch_size
    load_before = os.getloadavg()[0]  # what else ran: a quiet machine reads near 0
    quiet = {m: {"1": _side_by_side([(m, 1, steps, 0)], data_root)[0]} for m in models}
    quiet[name]["2"] = _side_by_side([(name, 2, steps, 0)], data_root)[0]
    pair = _side_by_side([(name, 1, steps, 0), (name, 1, steps, 0)], data_root)
    busy = {str(threads): _side_by_side([(name, threads, steps, 0), (name, 1, 4 * steps, 5)], data_root)[0]
            for threads in (1, 2)}
    return {"device": f"cpu ({cpu_model()}, {os.cpu_count()} cores)",
            "torch_version": torch.__version__, "git_commit": git_commit(), "batch_size": batch, "timed_steps": steps,
            "ms_per_step_alone": quiet,
            "images_per_second": {"one process, 2 threads": 1000 * batch / quiet[name]["2"],
                                  "two processes, 1 thread each": sum(1000 * batch / ms for ms in pair)},
            "ms_per_step_beside_a_busy_core": busy,
            "slowdown_beside_a_busy_core": {t: busy[t] / quiet[name][t] for t in busy},
            "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}


def _speedrun_step_ms(precision: str, keep_memory: bool, threads: int, steps: int, data_root: str) -> float:
    """ms per training step of the speedrun's recipe of ``precision`` in this process (a fresh one: glibc's setting
    cannot be undone), with freed memory kept or glibc's default."""
    if keep_memory and not keep_freed_memory():
        raise RuntimeError("keep_freed_memory: glibc's mallopt is not available here, so there is nothing to compare")
    recipe = recipe_for(precision)
    return _cpu_step_ms(recipe.model, recipe.model_kwargs(), recipe.train_config(0, get_profile("cpu")), threads,
                        steps, data_root, warmup=3)


def malloc_side_by_side(data_root=DEFAULT_DATA_ROOT, steps: int = 40, rounds: int = 3,
                        threads: int | None = None) -> dict:
    """The speedrun's training step (each precision's recipe this CPU runs in hardware) with glibc's default allocator
    and with freed memory kept (``experiment.keep_freed_memory``), each in a fresh process, alternating for
    ``rounds`` rounds in one run; the ratio is of the medians. Time it on a quiet machine."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context
    threads = threads or torch.get_num_threads()
    load_before = os.getloadavg()[0]
    out = {}
    for precision in ("fp32", "bf16") if native_bf16() else ("fp32",):
        ms = {"default": [], "kept": []}
        for _ in range(rounds):
            for setting in ms:
                with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
                    ms[setting].append(pool.submit(_speedrun_step_ms, precision, setting == "kept", threads, steps,
                                                   data_root).result())
        median = {setting: statistics.median(v) for setting, v in ms.items()}
        out[precision] = {"ms_per_step": ms, "median_ms": median, "speedup": median["default"] / median["kept"]}
    return {"device": f"cpu ({cpu_model()}, {os.cpu_count()} cores)", "threads": threads,
            "torch_version": torch.__version__, "git_commit": git_commit(), "timed_steps": steps, "rounds": rounds,
            "by_precision": out, "load_average_1min": {"before": load_before, "after": os.getloadavg()[0]}}


def main(argv=None):
    from .cli import OneLineParser
    parser = OneLineParser(prog="python -m utils.bench", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few timed steps; under 60 s on 2 CPU cores")
    parser.add_argument("--epoch-times", action="store_true", help="seconds per epoch of every model")
    parser.add_argument("--cpu-threads", action="store_true",
                        help="one or two threads per training process on a CPU, alone and beside a busy core")
    parser.add_argument("--malloc", action="store_true",
                        help="the speedrun's step with glibc's default allocator and with freed memory kept")
    parser.add_argument("--model", default="deep_efficientnet", choices=MODEL_NAMES)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--fit-epochs", type=int, default=50,
                        help="full mode: epochs of the recipe timed per engine, scaled to 50 (default 50)")
    parser.add_argument("--out", help="also write the JSON here (an existing file only with --force)")
    parser.add_argument("--force", action="store_true", help="replace the --out file if it exists")
    args = parser.parse_args(argv)
    if args.out:
        from .storage import OutputError, claim_output
        try:  # before minutes of benchmarking, not after
            claim_output(args.out, args.force)
        except OutputError as error:
            parser.error(str(error))
    t = time.perf_counter()
    result = (epoch_times(args.data_root) if args.epoch_times else cpu_threads(args.data_root) if args.cpu_threads
              else malloc_side_by_side(args.data_root) if args.malloc
              else benchmark(args.model, args.quick, args.data_root, args.fit_epochs))
    result["bench_wall_seconds"] = time.perf_counter() - t
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()

"""`python -m utils.bench [--quick] [--model M] [--data-root DIR] [--out FILE]`

Measures side by side, in one run, with the same model, batch size, optimiser and precision:
(a) this project's pipeline: uint8 data resident on the device, batches drawn by index, augmented
    as whole batches with torch ops; and
(b) the standard pipeline: torchvision transforms per sample in a Dataset, batched by a DataLoader
    with worker processes.
Also: 50-epoch training time of the full recipe (validation included; measured in full mode,
estimated from the measured epoch in --quick), inference throughput with large batches, batch-1
latency, peak memory, parameters and FLOPs. Prints and writes one JSON object.
`--epoch-times` instead times training steps of every registered model (CPU seconds per epoch).
"""
from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from .data import DEFAULT_DATA_ROOT, DeviceLoader, load_dataset
from .experiment import count_flops, device_name, git_commit, peak_memory
from .models import MODEL_NAMES, build_model, count_parameters
from .profiles import default_device, get_profile
from .recipes import train_config
from .storage import write_text
from .training import autocast_context, fit, make_optimizer, resolve_amp


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


def time_training(model, batches, steps: int, warmup: int, amp_dtype, device, channels_last=True) -> float:
    """Seconds per step over ``steps`` steps after ``warmup`` untimed ones, data loading included."""
    optimizer = make_optimizer(model, train_config(getattr(model, "model_name", "deep_efficientnet"), "bloodmnist",
                                                    get_profile("full")))
    model.train()
    it = iter(batches)
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            _sync(device)
            start = time.perf_counter()
        images, labels = next(it)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, amp_dtype):
            loss = F.cross_entropy(model(images), labels, label_smoothing=0.1)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    _sync(device)
    return (time.perf_counter() - start) / steps


def _cycle(make_iter):
    while True:
        yield from make_iter()


@torch.no_grad()
def time_inference(model, device, amp_dtype, image_size=28, batch=4096, repeats=10):
    model.eval()
    x = torch.rand(batch, 3, image_size, image_size, device=device).contiguous(memory_format=torch.channels_last)
    one = x[:1]
    with autocast_context(device, amp_dtype):
        for _ in range(3):
            model(x)
        _sync(device)
        t = time.perf_counter()
        for _ in range(repeats):
            model(x)
        _sync(device)
        throughput = batch * repeats / (time.perf_counter() - t)
        for _ in range(5):
            model(one)
        _sync(device)
        t = time.perf_counter()
        for _ in range(50):
            model(one)
        _sync(device)
        latency_ms = (time.perf_counter() - t) / 50 * 1000
    return throughput, latency_ms


def benchmark(model_name="deep_efficientnet", quick=False, data_root=DEFAULT_DATA_ROOT) -> dict:
    device = default_device()
    data = load_dataset("bloodmnist", data_root, device=device)
    cfg = train_config(model_name, "bloodmnist", get_profile("full"))
    amp_dtype = resolve_amp(cfg.amp, device)
    train = data.splits["train"]
    steps_per_epoch = len(train) // cfg.batch_size
    steps, warmup = (8, 2) if quick else (steps_per_epoch, 5)
    workers = 2 if quick or device.type == "cpu" else 8

    torch.manual_seed(0)
    model = build_model(model_name, data.num_classes).to(device).to(memory_format=torch.channels_last)
    params, flops = count_parameters(model), count_flops(model, data.image_size)
    generator = torch.Generator(device=device).manual_seed(0)
    resident = _cycle(lambda: DeviceLoader(train, cfg.batch_size, shuffle=True, augment=cfg.augment,
                                           generator=generator, drop_last=True))
    standard_loader = DataLoader(TransformDataset(train.images, train.labels), batch_size=cfg.batch_size,
                                 shuffle=True, drop_last=True, num_workers=workers,
                                 pin_memory=device.type == "cuda", persistent_workers=True)
    standard = _cycle(lambda: iter(standard_loader))
    # Interleave the two measurements so that drifting machine load hits both alike.
    project_step = time_training(model, resident, steps, warmup, amp_dtype, device)
    standard_step = time_training(model, standard, steps, warmup, amp_dtype, device)

    if quick:
        val_seconds = _time_validation(model, data, amp_dtype, device)
        train_50 = 50 * (project_step * steps_per_epoch + val_seconds)
        measured_50 = False
    else:
        # The whole 50-epoch recipe, validation after every epoch included, wall-clock.
        _sync(device)
        t = time.perf_counter()
        fit(build_model(model_name, data.num_classes), data, cfg, progress=False)
        _sync(device)
        train_50, measured_50 = time.perf_counter() - t, True
    throughput, latency = time_inference(model, device, amp_dtype, data.image_size,
                                         batch=4096 if device.type == "cuda" else 512,
                                         repeats=20 if device.type == "cuda" else 3)
    peak, peak_kind = peak_memory(device)
    return {
        "device": device_name(device), "torch_version": torch.__version__, "git_commit": git_commit(),
        "model": model_name, "params": params, "flops": flops, "batch_size": cfg.batch_size,
        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else "float32",
        "quick": quick, "timed_steps": steps, "dataloader_workers": workers,
        "epoch_seconds": {"project_pipeline": project_step * steps_per_epoch,
                          "standard_dataloader": standard_step * steps_per_epoch},
        "train_speedup_vs_dataloader": standard_step / project_step,
        "train_seconds_50_epochs": train_50, "train_seconds_50_epochs_measured": measured_50,
        "inference_images_per_second": throughput, "latency_ms_batch1": latency,
        "peak_memory_bytes": peak, "peak_memory_kind": peak_kind,
    }


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
        loader = _cycle(lambda: DeviceLoader(data.splits["train"], cfg.batch_size, shuffle=True,
                                             augment=cfg.augment, generator=torch.Generator(device=device),
                                             drop_last=True))
        step = time_training(model, loader, steps, 2, resolve_amp(cfg.amp, device), device)
        out[name] = step * (len(data.splits["train"]) // cfg.batch_size)
        print(json.dumps({"model": name, "epoch_seconds": round(out[name], 1)}), flush=True)
    return {"device": device_name(device), "torch_version": torch.__version__, "timed_steps": steps,
            "epoch_seconds": out}


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m utils.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a few timed steps; under 60 s on 2 CPU cores")
    parser.add_argument("--epoch-times", action="store_true", help="seconds per epoch of every model")
    parser.add_argument("--model", default="deep_efficientnet", choices=MODEL_NAMES)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    parser.add_argument("--out", help="also write the JSON here")
    args = parser.parse_args(argv)
    t = time.perf_counter()
    result = epoch_times(args.data_root) if args.epoch_times else benchmark(args.model, args.quick, args.data_root)
    result["bench_wall_seconds"] = time.perf_counter() - t
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        write_text(args.out, text + "\n")


if __name__ == "__main__":
    main()

"""Verified data -> uint8 tensors on the device -> batches drawn by index -> batched augmentation.

BloodMNIST comes from the official ``bloodmnist.npz``: looked for in ``--data-root`` (default
``data/``), then in the folder named by ``MEDMNIST_MIRROR``, else downloaded with ``medmnist``.
Its MD5 is checked against ``medmnist.INFO`` on every load, and a bad file is never touched.

PatchCamelyon (``pcam``) comes from the full release's h5 files at ``--data-root`` (the layout
``torchvision.datasets.PCAM`` downloads), else from ``pcam_subset.tar`` (26,000 patches) in
``--data-root`` or ``$PCAM_MIRROR`` / ``$MEDMNIST_MIRROR``: decoded once and cached as uint8 tensors.
"""
from __future__ import annotations

import hashlib
import math
import os
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .storage import move_aside, save_torch

DEFAULT_DATA_ROOT = Path("data")
AUGMENT_LEVELS = ("none", "basic", "translate", "color", "full")


class DataIntegrityError(RuntimeError):
    """A data file exists but is not the one we expect."""


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_md5(path: Path, expected: str, expected_bytes: int | None = None, source: str = "") -> str:
    """``expected`` or a ``DataIntegrityError`` naming the file, both checksums and sizes, and the fix."""
    actual = md5sum(path)
    if actual != expected:
        size = path.stat().st_size
        sizes = f" ({size:,} bytes, expected {expected_bytes:,})" if expected_bytes else f" ({size:,} bytes)"
        what = "truncated" if expected_bytes and size < expected_bytes else "damaged or not the official release"
        raise DataIntegrityError(
            f"{path}: MD5 is {actual}, expected {expected}{sizes}: the file is {what}. It was left untouched: "
            f"move or delete it yourself, then get the official file again{f' ({source})' if source else ''} "
            f"or pass --data-root to a folder that holds it.")
    return actual


# ---------------------------------------------------------------------------------------------
# Splits held as uint8 tensors


@dataclass
class ImageSplit:
    """One split: uint8 images N x 3 x H x W and int64 labels N, on one device."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device) -> "ImageSplit":
        return ImageSplit(self.images.to(device), self.labels.to(device))

    def subset(self, n: int | None, seed: int = 0) -> "ImageSplit":
        """A stratified random subset of about ``n`` images (all of them when n is None or larger)."""
        if n is None or n >= len(self):
            return self
        labels = self.labels.cpu().numpy()
        rng = np.random.default_rng(seed)
        classes, counts = np.unique(labels, return_counts=True)
        per_class = np.maximum(1, np.round(counts / counts.sum() * n).astype(int))
        keep = np.concatenate([rng.choice(np.flatnonzero(labels == c), k, replace=False)
                               for c, k in zip(classes, per_class)])
        index = torch.as_tensor(np.sort(keep), device=self.labels.device)
        return ImageSplit(self.images[index], self.labels[index])


@dataclass
class ImageDataset:
    name: str
    class_names: list[str]
    splits: dict[str, ImageSplit]
    source: str
    md5: str
    extra: dict = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.splits["train"].images.shape[-1])

    def class_counts(self, split: str = "train") -> list[int]:
        return torch.bincount(self.splits[split].labels.cpu(), minlength=self.num_classes).tolist()

    def to(self, device) -> "ImageDataset":
        return ImageDataset(self.name, self.class_names, {k: v.to(device) for k, v in self.splits.items()},
                            self.source, self.md5, self.extra)


# ---------------------------------------------------------------------------------------------
# BloodMNIST


BLOODMNIST_BYTES = 35_461_855  # the official 28x28 file (medmnist.INFO gives only its MD5)


def bloodmnist_info() -> dict:
    import medmnist
    return medmnist.INFO["bloodmnist"]


def find_bloodmnist(data_root: str | Path = DEFAULT_DATA_ROOT, download: bool = True) -> Path:
    """Path of a verified ``bloodmnist.npz``: data_root, then $MEDMNIST_MIRROR, then a download."""
    expected = bloodmnist_info()["MD5"]
    data_root = Path(data_root)
    candidates = [data_root / "bloodmnist.npz"]
    if os.environ.get("MEDMNIST_MIRROR"):
        candidates.append(Path(os.environ["MEDMNIST_MIRROR"]) / "bloodmnist.npz")
    source = f"python -c \"import medmnist; medmnist.BloodMNIST(split='train', root='data', download=True)\", " \
             f"or {bloodmnist_info()['url']}"
    for path in candidates:
        if path.is_file():
            verify_md5(path, expected, BLOODMNIST_BYTES, source)
            return path
    if not download:
        raise FileNotFoundError(f"bloodmnist.npz is not in {data_root} nor in $MEDMNIST_MIRROR; "
                                f"run with download enabled or copy the official file there")
    import medmnist
    data_root.mkdir(parents=True, exist_ok=True)
    try:
        medmnist.BloodMNIST(split="train", root=str(data_root), download=True, size=28)
    except Exception as error:  # medmnist wraps network errors in a RuntimeError
        reason = str(error).strip().splitlines()[0][:160] if str(error).strip() else type(error).__name__
        raise FileNotFoundError(
            f"bloodmnist.npz is not in {', '.join(str(p.parent) for p in candidates)} and downloading it with "
            f"medmnist failed ({reason}). Download it from {bloodmnist_info()['url']} (MEDMNIST v2, CC BY 4.0; "
            f"MD5 {expected}, {BLOODMNIST_BYTES:,} bytes) to {data_root / 'bloodmnist.npz'}, or set "
            f"MEDMNIST_MIRROR to the folder that holds it.") from None
    path = data_root / "bloodmnist.npz"
    verify_md5(path, expected, BLOODMNIST_BYTES, source)
    return path


def load_bloodmnist(data_root: str | Path = DEFAULT_DATA_ROOT, device="cpu") -> ImageDataset:
    path = find_bloodmnist(data_root)
    info = bloodmnist_info()
    with np.load(path) as npz:
        splits = {split: ImageSplit(
            torch.from_numpy(npz[f"{split}_images"]).permute(0, 3, 1, 2).contiguous(),
            torch.from_numpy(npz[f"{split}_labels"].reshape(-1).astype(np.int64)))
            for split in ("train", "val", "test")}
    return ImageDataset("bloodmnist", dataset_class_names("bloodmnist"), splits, str(path), info["MD5"]).to(device)


# ---------------------------------------------------------------------------------------------
# PatchCamelyon

PCAM_CLASSES = ["normal", "metastasis"]
PCAM_SUBSET = "pcam_subset.tar"
PCAM_SUBSET_MD5 = "2a0857aeeaa347d9d9548c0005f27ef4"
PCAM_SUBSET_BYTES = 134_338_560
PCAM_SUBSET_SOURCE = "a subset of PatchCamelyon from the public GitHub repository vflorenc/AI4ALL-PCam; see data/README.md"
# The full release as torchvision.datasets.PCAM lays it out (<root>/pcam/...), with its split sizes.
PCAM_H5 = {"train": ("train", 262_144), "val": ("valid", 32_768), "test": ("test", 32_768)}
PCAM_TRAIN_PATCHES = PCAM_H5["train"][1]  # the whole official training split (Veeling et al., 2018)


def _pcam_h5_paths(folder: Path) -> dict[str, tuple[Path, Path]]:
    return {split: (folder / f"camelyonpatch_level_2_split_{name}_x.h5",
                    folder / f"camelyonpatch_level_2_split_{name}_y.h5") for split, (name, _) in PCAM_H5.items()}


def find_pcam(data_root: str | Path = DEFAULT_DATA_ROOT) -> tuple[str, Path]:
    """("h5", folder) for the full release at data_root[/pcam], else ("tar", path) for a verified
    ``pcam_subset.tar`` in data_root, $PCAM_MIRROR or $MEDMNIST_MIRROR."""
    data_root = Path(data_root)
    for folder in (data_root / "pcam", data_root):
        if all(p.is_file() for pair in _pcam_h5_paths(folder).values() for p in pair):
            return "h5", folder
    folders = [data_root] + [Path(os.environ[v]) for v in ("PCAM_MIRROR", "MEDMNIST_MIRROR") if os.environ.get(v)]
    for folder in folders:
        if (folder / PCAM_SUBSET).is_file():
            verify_md5(folder / PCAM_SUBSET, PCAM_SUBSET_MD5, PCAM_SUBSET_BYTES, PCAM_SUBSET_SOURCE)
            return "tar", folder / PCAM_SUBSET
    raise FileNotFoundError(
        f"PatchCamelyon not found: looked for the full release's h5 files in {data_root / 'pcam'} and for "
        f"{PCAM_SUBSET} in {', '.join(map(str, folders))}. Put {PCAM_SUBSET} in {data_root}/, or download the "
        f"full release with torchvision.datasets.PCAM(root='{data_root}', split='train', download=True) "
        f"(and split='val', 'test').")


def _decode_pcam_tar(path: Path) -> dict:
    """Every JPEG of the tar decoded to uint8 (3 x 96 x 96), with its name and content MD5."""
    import tarfile
    split_names = {"train": "train", "valid": "val", "test": "test"}
    entries = {split: [] for split in PCAM_H5}
    with tarfile.open(path) as tar:
        for member in tar:
            parts = Path(member.name).parts
            if not member.isfile() or not member.name.endswith(".jpg"):
                continue
            if len(parts) < 4 or parts[-3] not in split_names or parts[-2] not in ("0", "1"):
                raise DataIntegrityError(f"{path}: unexpected member {member.name}; expected "
                                         f"data/{{train,valid,test}}/{{0,1}}/*.jpg. Use the official {PCAM_SUBSET}.")
            raw = tar.extractfile(member).read()
            entries[split_names[parts[-3]]].append((member.name, int(parts[-2]), raw))
    out = {}
    for split, items in entries.items():
        items.sort()
        images = torch.stack([_decode_member(path, name, raw) for name, _, raw in items])
        out[split] = {"images": images, "labels": torch.tensor([label for _, label, _ in items]),
                      "names": [name for name, _, _ in items],
                      "md5": [hashlib.md5(raw).hexdigest() for _, _, raw in items]}
    return out


def _decode_member(path: Path, name: str, raw: bytes) -> torch.Tensor:
    from torchvision.io import decode_jpeg
    try:
        image = decode_jpeg(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    except RuntimeError as error:
        raise DataIntegrityError(
            f"{path}: member {name} is not a readable JPEG ({str(error).splitlines()[0][:100]}). The file was left "
            f"untouched; replace it with the official {PCAM_SUBSET} (MD5 {PCAM_SUBSET_MD5}, "
            f"{PCAM_SUBSET_BYTES:,} bytes; {PCAM_SUBSET_SOURCE}).") from None
    if image.shape != (3, 96, 96):
        raise DataIntegrityError(f"{path}: member {name} is {tuple(image.shape)}, expected a 3 x 96 x 96 RGB patch; "
                                 f"replace the file with the official {PCAM_SUBSET} (MD5 {PCAM_SUBSET_MD5}).")
    return image


def find_duplicates(digests: list[str]) -> list[list[int]]:
    """Groups (two or more indices) of identical content digests, in first-seen order."""
    groups: dict[str, list[int]] = {}
    for i, d in enumerate(digests):
        groups.setdefault(d, []).append(i)
    return [g for g in groups.values() if len(g) > 1]


def pcam_cache_path(cache_dir: Path) -> Path:
    return Path(cache_dir) / f"pcam_subset-{PCAM_SUBSET_MD5[:10]}.pt"


def _split_checksum(split: dict) -> int:
    """CRC-32 of a decoded split: its images, labels, member names and member MD5s (0.7 s for all 26,000)."""
    checksum = zlib.crc32(split["images"].contiguous().numpy())
    checksum = zlib.crc32(split["labels"].contiguous().numpy(), checksum)
    return zlib.crc32("\n".join(split["names"] + split["md5"]).encode(), checksum)


def _cache_fault(cache: dict, tar_md5: str) -> str | None:
    """Why ``cache`` is not the decoding of the tar whose MD5 is ``tar_md5``, or None when it is: it names that
    tar, each split's checksum holds, and each label is the one its member's folder (0 or 1) gives."""
    if not isinstance(cache, dict) or not {"tar_md5", "splits", "checksums"} <= set(cache):
        return "not a decoded-tar cache of this code (an older layout, or another file)"
    if cache["tar_md5"] != tar_md5:
        return f"decoded from another tar (MD5 {cache['tar_md5']}, not {tar_md5})"
    if not isinstance(cache["splits"], dict) or set(cache["splits"]) != set(PCAM_H5):
        return f"holds the splits {sorted(cache['splits']) if isinstance(cache['splits'], dict) else '?'}, not {sorted(PCAM_H5)}"
    for split, d in cache["splits"].items():
        if not isinstance(d, dict) or not {"images", "labels", "names", "md5"} <= set(d):
            return f"its {split} split is incomplete"
        if not isinstance(cache["checksums"], dict) or _split_checksum(d) != cache["checksums"].get(split):
            return f"its {split} split does not match its checksum (edited or damaged)"
        if d["labels"].tolist() != [int(name.split("/")[-2]) for name in d["names"]]:
            return f"its {split} labels differ from the folders (0, 1) of the tar's members"
    return None


def decoded_pcam_subset(path: Path, cache_dir: Path) -> dict:
    """The tar's patches decoded (``_decode_pcam_tar``), from the cache in ``cache_dir`` when that is the decoding of
    this tar (``_cache_fault``); a cache that is not is set aside with the reason, and the tar decoded again."""
    cache = pcam_cache_path(cache_dir)
    if cache.is_file():
        try:
            stored = torch.load(cache, weights_only=True)
        except Exception as error:  # a half-written or foreign file
            stored, fault = None, f"torch cannot read it ({type(error).__name__})"
        else:
            fault = _cache_fault(stored, PCAM_SUBSET_MD5)
        if fault is None:
            return stored["splits"]
        move_aside(cache, f"not the decoded {path.name}: {fault}; decoding the tar again")
    decoded = _decode_pcam_tar(path)
    save_torch({"tar_md5": PCAM_SUBSET_MD5, "splits": decoded,
                "checksums": {split: _split_checksum(d) for split, d in decoded.items()}}, cache)
    return decoded


def load_pcam_subset(path: Path, cache_dir: Path) -> tuple[dict[str, ImageSplit], dict]:
    """The 26,000-patch subset: decoded once into ``cache_dir`` (``decoded_pcam_subset``), then
    byte-identical copies inside each split dropped so that no patch is counted twice."""
    decoded = decoded_pcam_subset(path, cache_dir)
    splits, report = {}, {"cache": str(pcam_cache_path(cache_dir)), "duplicates": {}}
    for split, d in decoded.items():
        groups = find_duplicates(d["md5"])
        drop = sorted(i for g in groups for i in g[1:])
        keep = torch.ones(len(d["labels"]), dtype=torch.bool)
        keep[drop] = False
        splits[split] = ImageSplit(d["images"][keep], d["labels"][keep])
        report["duplicates"][split] = {
            "files": len(d["labels"]), "files_in_groups": sum(len(g) for g in groups), "groups": len(groups),
            "dropped": len(drop), "kept": int(keep.sum()),
            "dropped_by_class": torch.bincount(d["labels"][drop], minlength=2).tolist() if drop else [0, 0],
            "example_group": [d["names"][i] for i in groups[0]] if groups else []}
    splits_holding = Counter(digest for d in decoded.values() for digest in set(d["md5"]))
    report["cross_split_duplicates"] = sum(n > 1 for n in splits_holding.values())
    return splits, report


def _open_h5(h5py, path: Path, key: str):
    """The h5 file at ``path`` opened for reading, holding ``key``; else a ``DataIntegrityError`` naming it."""
    fix = ("The file was left untouched; download it again with torchvision.datasets.PCAM(root=..., download=True), "
           f"or remove the h5 files to use {PCAM_SUBSET} instead.")
    try:
        handle = h5py.File(path, "r")
    except OSError as error:
        reason = str(error).split("(")[-1].rstrip(")") if "(" in str(error) else str(error)
        raise DataIntegrityError(f"{path}: not a readable HDF5 file ({reason}). {fix}") from None
    if key not in handle:
        handle.close()
        raise DataIntegrityError(f"{path}: holds no '{key}' dataset, so it is not the PCam release's file. {fix}")
    return handle


def load_pcam_h5(folder: Path) -> dict[str, ImageSplit]:
    """The full release (h5 files as torchvision.datasets.PCAM downloads them), checked by size."""
    try:
        import h5py
    except ImportError as error:
        raise ImportError("reading the full PCam h5 files needs h5py: pip install h5py") from error
    splits = {}
    for split, (x_path, y_path) in _pcam_h5_paths(folder).items():
        with _open_h5(h5py, x_path, "x") as fx, _open_h5(h5py, y_path, "y") as fy:
            x, y = fx["x"], fy["y"]
            expected = PCAM_H5[split][1]
            if x.shape != (expected, 96, 96, 3) or y.shape[0] != expected:
                raise DataIntegrityError(
                    f"{x_path}: holds {x.shape} images / {y.shape[0]} labels, expected ({expected}, 96, 96, 3). "
                    f"The file is incomplete or not the official release; it was left untouched. Download it "
                    f"again with torchvision.datasets.PCAM(root=..., download=True).")
            splits[split] = ImageSplit(torch.from_numpy(x[:]).permute(0, 3, 1, 2).contiguous(),
                                       torch.from_numpy(np.asarray(y[:]).reshape(-1).astype(np.int64)))
    return splits


def load_pcam(data_root: str | Path = DEFAULT_DATA_ROOT, device="cpu") -> ImageDataset:
    kind, path = find_pcam(data_root)
    if kind == "h5":
        return ImageDataset("pcam", PCAM_CLASSES, load_pcam_h5(path), str(path), "", {"source": "full h5"}).to(device)
    splits, report = load_pcam_subset(path, Path(data_root) / "cache")
    return ImageDataset("pcam", PCAM_CLASSES, splits, str(path), PCAM_SUBSET_MD5,
                        {"source": PCAM_SUBSET, **report}).to(device)


DATASETS = {"bloodmnist": load_bloodmnist, "pcam": load_pcam}


def dataset_class_names(name: str) -> list[str]:
    """The class names of dataset ``name``, in label order, without loading its images."""
    if name == "bloodmnist":
        labels = bloodmnist_info()["label"]
        return [labels[str(i)] for i in range(len(labels))]
    if name == "pcam":
        return list(PCAM_CLASSES)
    raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def load_dataset(name: str, data_root: str | Path = DEFAULT_DATA_ROOT, device="cpu") -> ImageDataset:
    if name not in DATASETS:
        raise KeyError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name](data_root, device)


# ---------------------------------------------------------------------------------------------
# Class imbalance helpers


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Inverse-frequency weights normalised so that a balanced set would get all ones."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return counts.sum() / (num_classes * counts.clamp(min=1))


def balanced_sample_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Per-sample weights that make every class equally likely to be drawn."""
    return class_weights(labels, num_classes)[labels]


# ---------------------------------------------------------------------------------------------
# Batches drawn on the device


class DeviceLoader:
    """Yields (float images in [0, 1], labels) batches from a device-resident ``ImageSplit``.

    Indices are drawn on the split's device with ``generator``; augmentation works on whole
    batches with torch ops, so nothing crosses between host and device inside an epoch.
    """

    def __init__(self, split: ImageSplit, batch_size: int, shuffle: bool = False, augment: str = "none",
                 generator: torch.Generator | None = None, sample_weights: torch.Tensor | None = None,
                 drop_last: bool = False, channels_last: bool = False):
        if augment not in AUGMENT_LEVELS:
            raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, got {augment!r}")
        self.split, self.batch_size, self.shuffle, self.augment = split, batch_size, shuffle, augment
        self.generator, self.sample_weights, self.drop_last = generator, sample_weights, drop_last
        self.channels_last = channels_last

    def __len__(self) -> int:
        n = len(self.split)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def epoch_order(self) -> torch.Tensor:
        """One epoch's sample indices, drawn on the device (balanced, shuffled or in order)."""
        n, device = len(self.split), self.split.labels.device
        if self.sample_weights is not None:
            return torch.multinomial(self.sample_weights, n, replacement=True, generator=self.generator)
        if self.shuffle:
            return torch.randperm(n, device=device, generator=self.generator)
        return torch.arange(n, device=device)

    def batch(self, index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (augmented) images and labels at ``index``: device ops only, so a CUDA graph can record it."""
        images = self.split.images[index].float().div_(255)
        if self.augment != "none":
            images = augment_batch(images, self.augment, self.generator)
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return images, self.split.labels[index]

    def __iter__(self):
        order = self.epoch_order()
        for i in range(len(self)):
            yield self.batch(order[i * self.batch_size:(i + 1) * self.batch_size])


# ---------------------------------------------------------------------------------------------
# Batched augmentation


def _uniform(n: int, low: float, high: float, like: torch.Tensor, generator) -> torch.Tensor:
    return torch.rand(n, device=like.device, generator=generator) * (high - low) + low


def random_dihedral(x: torch.Tensor, generator=None) -> torch.Tensor:
    """Random flips and 90-degree rotations per image: cell and tissue images have no 'up'."""
    n = x.shape[0]
    flip = torch.rand(n, device=x.device, generator=generator) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    turns = torch.randint(0, 4, (n,), device=x.device, generator=generator).view(-1, 1, 1, 1)
    out = x
    for k in (1, 2, 3):
        out = torch.where(turns == k, torch.rot90(x, k, dims=(-2, -1)), out)
    return out


def random_translate(x: torch.Tensor, generator=None, pad: int = 2) -> torch.Tensor:
    """Each image shifted by up to ``pad`` pixels each way, the border reflected (airbench's random crop of a padded
    batch): one gather for the whole batch."""
    n, channels, height, width = x.shape
    padded = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    dy, dx = (torch.randint(0, 2 * pad + 1, (n, 1), device=x.device, generator=generator) for _ in range(2))
    rows = (dy + torch.arange(height, device=x.device)).view(n, 1, height, 1)
    cols = (dx + torch.arange(width, device=x.device)).view(n, 1, 1, width)
    return padded[torch.arange(n, device=x.device).view(n, 1, 1, 1),
                  torch.arange(channels, device=x.device).view(1, channels, 1, 1), rows, cols]


def random_affine(x: torch.Tensor, generator=None, degrees: float = 15.0, scale=(0.9, 1.1),
                  translate: float = 0.08) -> torch.Tensor:
    """Small rotation, scale and shift for the whole batch through one affine_grid/grid_sample."""
    n = x.shape[0]
    angle = _uniform(n, -degrees, degrees, x, generator) * math.pi / 180
    s = _uniform(n, *scale, x, generator)
    tx, ty = (_uniform(n, -2 * translate, 2 * translate, x, generator) for _ in range(2))
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


_RGB_TO_YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_MATRICES: dict = {}


def _yiq_matrices(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """RGB->YIQ and its inverse on ``device``, made once: a host copy or ``linalg.inv``'s error check inside a
    step would stall the GPU and cannot be recorded in a CUDA graph."""
    key = (device, dtype)
    if key not in _YIQ_MATRICES:
        to_yiq = _RGB_TO_YIQ.to(device, dtype)
        _YIQ_MATRICES[key] = to_yiq, torch.linalg.inv(to_yiq)
    return _YIQ_MATRICES[key]


def color_jitter(x: torch.Tensor, generator=None, brightness: float = 0.2, contrast: float = 0.2,
                 saturation: float = 0.2, hue: float = 0.04) -> torch.Tensor:
    """Brightness, contrast, saturation and hue jitter per image, in one pass of batched torch ops.
    Hue is a rotation of the chroma plane in YIQ space (``hue`` is a fraction of a full turn)."""
    n = x.shape[0]
    shape = (n, 1, 1, 1)
    x = x * _uniform(n, 1 - brightness, 1 + brightness, x, generator).view(shape)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    c = _uniform(n, 1 - contrast, 1 + contrast, x, generator).view(shape)
    x = (x - gray.mean((2, 3), keepdim=True)) * c + gray.mean((2, 3), keepdim=True)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    s = _uniform(n, 1 - saturation, 1 + saturation, x, generator).view(shape)
    x = gray + (x - gray) * s
    angle = _uniform(n, -hue, hue, x, generator) * 2 * math.pi
    to_yiq, from_yiq = _yiq_matrices(x.device, x.dtype)
    yiq = torch.einsum("ij,njhw->nihw", to_yiq, x)
    cos, sin = torch.cos(angle).view(-1, 1, 1), torch.sin(angle).view(-1, 1, 1)
    i, q = yiq[:, 1] * cos - yiq[:, 2] * sin, yiq[:, 1] * sin + yiq[:, 2] * cos
    yiq = torch.stack([yiq[:, 0], i, q], 1)
    x = torch.einsum("ij,njhw->nihw", from_yiq, yiq)
    return x.clamp_(0, 1)


def augment_batch(x: torch.Tensor, level: str, generator=None) -> torch.Tensor:
    """none: identity; basic: flips + 90-degree rotations; translate: basic + shifts of up to 2 pixels;
    color: basic + colour jitter; full: basic + small affine + colour jitter."""
    if level == "none":
        return x
    if level not in AUGMENT_LEVELS:
        raise ValueError(f"augment must be one of {AUGMENT_LEVELS}, got {level!r}")
    x = random_dihedral(x, generator)
    if level == "translate":
        x = random_translate(x, generator)
    if level == "full":
        x = random_affine(x, generator)
    if level in ("color", "full"):
        x = color_jitter(x, generator)
    return x


def main():
    """`python -m utils.data [--dataset NAME ...]`: find and verify the data, print where it is and its MD5."""
    import argparse
    import json
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--dataset", nargs="+", default=["bloodmnist"], choices=sorted(DATASETS))
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_ROOT))
    args = parser.parse_args()
    for name in args.dataset:
        try:
            data = load_dataset(name, args.data_root)
        except (FileNotFoundError, DataIntegrityError) as error:
            parser.exit(1, f"error: {error}\n")  # the message says what is wrong and the fix; no traceback
        print(json.dumps({"dataset": data.name, "path": data.source, "md5": data.md5,
                          "splits": {k: len(v) for k, v in data.splits.items()},
                          "classes": data.class_names}))


if __name__ == "__main__":
    main()

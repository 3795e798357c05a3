"""The model registry: what a registered model is (``ImageClassifier``) and the table of names to
factories. The model families (``utils.models``, ``utils.zoo``) register into it; nothing here imports
them, so the import graph has no cycle. Build models through ``utils.models.build_model``, which
sees every family."""
from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ImageClassifier(nn.Module):
    """Base class: normalisation buffers and the Grad-CAM target layer name."""

    cam_layer: str = ""
    # The smallest images (side in pixels) the model takes: its total downsampling. Smaller ones crash in a pooling
    # layer, or pass with the deepest layers seeing padding only; ``engine.check_images`` refuses them.
    min_input_size: int = 1

    def __init__(self, mean=IMAGENET_MEAN, std=IMAGENET_STD):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=True)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=True)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def cam_target_layer(self) -> nn.Module:
        return self.get_submodule(self.cam_layer)


_FACTORIES: dict[str, Callable[..., nn.Module]] = {}
_BUILDS: dict[str, type] = {}  # the class each factory passes its **kw on to


def register(name: str, builds: type):
    """Decorator for a factory function ``fn(num_classes, **kw)`` that passes its ``**kw`` on to ``builds``."""
    def decorator(fn):
        _FACTORIES[name] = fn
        _BUILDS[name] = builds
        return fn
    return decorator


def register_class(name: str, cls: type) -> None:
    """A model class whose constructor ``cls(num_classes, **kw)`` is its own factory."""
    register(name, cls)(cls)


def registered_names() -> tuple[str, ...]:
    return tuple(_FACTORIES)


def build_registered(name: str, num_classes: int, **kw) -> nn.Module:
    """Build a registered model; the name and kwargs are kept on it for checkpoints."""
    if name not in _FACTORIES:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(_FACTORIES)}")
    model = _FACTORIES[name](num_classes, **kw)
    model.model_name = name
    model.model_kwargs = {"num_classes": num_classes, **kw}
    return model


def accepts_kwarg(name: str, kwarg: str) -> bool:
    """Whether a registered model takes ``kwarg`` (dropout, drop_path, ...), directly or via its class."""
    if kwarg in inspect.signature(_FACTORIES[name]).parameters:
        return True
    return kwarg in inspect.signature(_BUILDS[name].__init__).parameters

"""Attention blocks, one small module each, sharing the constructor ``(channels, rd_channels)``.

They are passed into the MBConv block as a layer factory (as timm does with ``se_layer``), so a
variant differs from its baseline in one argument, never in a forked forward pass.
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


class SqueezeExcite(nn.Module):
    """Squeeze-and-Excitation (Hu et al., 2018): global pooling -> bottleneck MLP -> channel gate."""

    def __init__(self, channels: int, rd_channels: int, act_layer: type[nn.Module] = nn.SiLU):
        super().__init__()
        self.reduce = nn.Conv2d(channels, rd_channels, 1)
        self.act = act_layer()
        self.expand = nn.Conv2d(rd_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(self.act(self.reduce(x.mean((2, 3), keepdim=True))))
        return x * gate.sigmoid()


class ChannelAttention(nn.Module):
    """CBAM's channel branch: a shared MLP over average- and max-pooled descriptors."""

    def __init__(self, channels: int, rd_channels: int, act_layer: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Conv2d(channels, rd_channels, 1, bias=False), act_layer(),
            nn.Conv2d(rd_channels, channels, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.mlp(x.mean((2, 3), keepdim=True)) + self.mlp(x.amax((2, 3), keepdim=True))
        return x * gate.sigmoid()


class SpatialAttention(nn.Module):
    """CBAM's spatial branch: a 7x7 convolution over the channel-wise mean and max maps."""

    def __init__(self, kernel_size: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)
        self.bn = nn.BatchNorm2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], dim=1)
        return x * self.bn(self.conv(pooled)).sigmoid()


class CBAM(nn.Module):
    """Convolutional Block Attention Module (Woo et al., 2018): channel gate, then spatial gate."""

    def __init__(self, channels: int, rd_channels: int, act_layer: type[nn.Module] = nn.ReLU):
        super().__init__()
        self.channel = ChannelAttention(channels, rd_channels, act_layer)
        self.spatial = SpatialAttention()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.channel(x))


class MultiScaleFusion(nn.Module):
    """Fuse feature maps of several stages into one map.

    Each input is projected by a 1x1 convolution and resized to the middle input's resolution;
    the concatenation is mixed by another 1x1 convolution.
    """

    def __init__(self, in_channels: list[int], out_channels: int, act_layer: type[nn.Module] = nn.SiLU):
        super().__init__()
        branch = max(16, out_channels // len(in_channels))
        self.projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, branch, 1, bias=False), nn.BatchNorm2d(branch), act_layer())
            for c in in_channels)
        self.mix = nn.Sequential(
            nn.Conv2d(branch * len(in_channels), out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels), act_layer())

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        # Fuse at the middle input's resolution: finer maps are average-pooled down, coarser ones
        # upsampled, so the fused map keeps spatial extent (4x4 for B0 at 28x28) for Grad-CAM.
        size = features[len(features) // 2].shape[-2:]
        projected = []
        for project, f in zip(self.projections, features):
            f = project(f)
            f = F.adaptive_avg_pool2d(f, size) if f.shape[-1] >= size[-1] else F.interpolate(
                f, size=size, mode="bilinear", align_corners=False)
            projected.append(f)
        return self.mix(torch.cat(projected, dim=1))


ATTENTION_LAYERS: dict[str, type[nn.Module] | None] = {
    "none": None,
    "se": SqueezeExcite,
    "cbam": CBAM,
}

"""Encoders for contrastive training: torchvision ResNets, a small CPU-friendly CNN, an MLP head.

``build_encoder(name, small_images)`` returns ``(backbone, feature_dim)``; the backbone maps
``[N, 3, H, W]`` to ``[N, feature_dim]``. For small images (32-64 px) the ResNet stem's 7x7
stride-2 conv and max-pool would throw away most of the resolution, so it is replaced with a
3x3 stride-1 conv (as SimCLR does on CIFAR).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops.layers.torch import Reduce
from torch import nn

__all__ = ["ENCODERS", "ProjectionHead", "build_encoder", "list_encoders"]


def _resnet(arch: str, small_images: bool) -> tuple[nn.Module, int]:
    from torchvision import models  # heavy import, only when a ResNet is asked for

    net = getattr(models, arch)(weights=None)
    feature_dim = net.fc.in_features
    net.fc = nn.Identity()
    if small_images:
        net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
    return net, feature_dim


def _conv_block(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _small_cnn(small_images: bool) -> tuple[nn.Module, int]:
    """Four conv layers (32-64-128-256 channels), global average pool; fast on CPU at 32 px."""
    first_stride = 1 if small_images else 2
    net = nn.Sequential(
        _conv_block(3, 32, first_stride),
        _conv_block(32, 64, 2),
        _conv_block(64, 128, 2),
        _conv_block(128, 256, 2),
        Reduce("n c h w -> n c", "mean"),
    )
    return net, 256


ENCODERS: dict[str, Callable[[bool], tuple[nn.Module, int]]] = {
    "resnet18": lambda small: _resnet("resnet18", small),
    "resnet50": lambda small: _resnet("resnet50", small),
    "small_cnn": _small_cnn,
}


def list_encoders() -> list[str]:
    """Names ``build_encoder`` accepts."""
    return sorted(ENCODERS)


def build_encoder(name: str, small_images: bool = False) -> tuple[nn.Module, int]:
    """A freshly initialised backbone and its output width."""
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {list_encoders()}")
    return ENCODERS[name](small_images)


class ProjectionHead(nn.Module):
    """MLP from backbone features to the contrastive space: (Linear-BN-ReLU) x (layers-1), Linear."""

    def __init__(
        self, in_dim: int, hidden_dim: int = 2048, out_dim: int = 128, num_layers: int = 2
    ):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers, dim = [], in_dim
        for _ in range(num_layers - 1):
            layers += [
                nn.Linear(dim, hidden_dim, bias=False),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
            ]
            dim = hidden_dim
        layers.append(nn.Linear(dim, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

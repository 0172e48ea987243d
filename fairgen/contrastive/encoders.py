"""Encoders for contrastive training: a small CPU-friendly CNN, any torchvision or timm
architecture (trained from scratch), an MLP head.

``build_encoder(name, small_images)`` returns ``(backbone, feature_dim)``; the backbone maps
``[N, 3, H, W]`` to ``[N, feature_dim]``. Names: ``small_cnn``, ``resnet18``, ``resnet50``, any
torchvision classification model (``torchvision:convnext_tiny``, or the bare name), or
``timm:NAME`` (needs ``pip install 'fairgen[models]'``). A torchvision model's last Linear layer
is replaced by the identity. For small images (32-64 px) a ResNet stem's 7x7 stride-2 conv and
max-pool would throw away most of the resolution, so it is replaced with a 3x3 stride-1 conv (as
SimCLR does on CIFAR).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from einops.layers.torch import Reduce
from torch import nn

__all__ = ["ENCODERS", "ProjectionHead", "build_encoder", "check_encoder_name", "list_encoders"]


def _torchvision(arch: str, small_images: bool) -> tuple[nn.Module, int]:
    from torchvision import models  # heavy import, only when a torchvision model is asked for

    net = models.get_model(arch, weights=None)
    feature_dim = _drop_last_linear(net, arch)
    if (
        small_images
        and isinstance(getattr(net, "conv1", None), nn.Conv2d)
        and hasattr(net, "maxpool")
    ):
        net.conv1 = nn.Conv2d(
            3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False
        )
        net.maxpool = nn.Identity()
    return net, feature_dim


def _drop_last_linear(net: nn.Module, arch: str) -> int:
    """Replace the classifier (the last ``nn.Linear`` registered) by the identity; its input
    width."""
    last = None
    for parent in net.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.Linear):
                last = (parent, name, child)
    if last is None:
        raise ValueError(
            f"encoder {arch!r}: {type(net).__name__} has no Linear classifier to remove"
        )
    parent, name, child = last
    setattr(parent, name, nn.Identity())
    return child.in_features


def _timm(arch: str) -> tuple[nn.Module, int]:
    try:
        import timm
    except ImportError:
        from ..checks import MissingExtraError

        raise MissingExtraError(
            f"encoder 'timm:{arch}' needs timm: pip install 'fairgen[models]'"
        ) from None
    net = timm.create_model(arch, pretrained=False, num_classes=0)
    return net, net.num_features


def _torchvision_names() -> set[str]:
    from torchvision import models

    return set(models.list_models(module=models))


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
    "resnet18": lambda small: _torchvision("resnet18", small),
    "resnet50": lambda small: _torchvision("resnet50", small),
    "small_cnn": _small_cnn,
}


def list_encoders() -> list[str]:
    """The built-in names (torchvision:NAME and timm:NAME are accepted too)."""
    return sorted(ENCODERS)


def check_encoder_name(name) -> str:
    """``name`` if ``build_encoder`` can build it, else a ValueError saying what is accepted."""
    if not isinstance(name, str):
        raise ValueError(f"encoder must be a name (str), got {name!r}")
    if name in ENCODERS or (name.startswith("timm:") and len(name) > 5):
        return name
    arch = name.removeprefix("torchvision:")
    if arch not in _torchvision_names():
        raise ValueError(
            f"unknown encoder {name!r}; choose one of {list_encoders()}, a torchvision "
            "classification "
            "model (torchvision:NAME, e.g. torchvision:convnext_tiny) or timm:NAME"
        )
    return name


def build_encoder(name: str, small_images: bool = False) -> tuple[nn.Module, int]:
    """A freshly initialised backbone and its output width."""
    check_encoder_name(name)
    if name in ENCODERS:
        return ENCODERS[name](small_images)
    if name.startswith("timm:"):
        return _timm(name.removeprefix("timm:"))
    return _torchvision(name.removeprefix("torchvision:"), small_images)


class ProjectionHead(nn.Module):
    """MLP from backbone features to the contrastive space: (Linear-BN-ReLU) x (layers-1),
    Linear."""

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

"""Boundary checks for the image contract: float tensors [N, 3, H, W] in [0, 1]."""

from __future__ import annotations

import torch


def check_images(images, argument: str = "images") -> None:
    """Raise a ValueError naming ``argument`` unless it is a floating [N, 3, H, W] tensor."""
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{argument} must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{argument} must have shape [N, 3, H, W], got {list(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{argument} must be floating point in [0, 1], got dtype {images.dtype}")

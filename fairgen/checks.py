"""Boundary checks: the image contract (finite float tensors [N, 3, H, W] in [0, 1]), and the
error for a missing optional dependency."""

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
    if images.numel() and not bool(((images >= 0) & (images <= 1)).all()):  # NaN fails both tests
        finite = images[torch.isfinite(images)]
        if finite.numel() < images.numel():
            raise ValueError(f"{argument} contains NaN or infinite values")
        raise ValueError(
            f"{argument} must lie in [0, 1], got values in [{float(finite.min()):.3g}, {float(finite.max()):.3g}] "
            "(convert [-1, 1] images with (x + 1) / 2 and [0, 255] images with x / 255)"
        )


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the pip extra that brings it."""

"""The Generator protocol: what every data source in fairgen looks like from outside."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


@runtime_checkable
class Generator(Protocol):
    """A latent-to-image model.

    Images are float32 ``[N, 3, H, W]`` in ``[0, 1]`` on ``device``. ``num_classes == 0`` means
    unconditional (``y`` is ignored and may be ``None``). ``latent_space`` names the space that
    steering works in, and ``checksum`` is the SHA-256 of the weights (cards pin it). Optional:
    ``latent_prior`` (a ``steering.LatentPrior`` or its dict: ``scale`` times a standard normal
    truncated to ``[-bound, bound]``; absent means ``N(0, I)``), which confirmed flips stay inside.
    """

    name: str
    latent_dim: int
    num_classes: int
    resolution: int
    latent_space: str
    checksum: str
    device: torch.device

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents ``[n, latent_dim]`` from the generator's prior."""
        ...

    def synthesize(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Map latents (and class indices ``y`` ``[n]`` int64) to images in ``[0, 1]``.

        Differentiable in ``z`` when ``z`` requires grad (latent walks are learned through it);
        otherwise no autograd graph is built. A generator that cannot be differentiated makes
        ``fairgen.walks`` say so.
        """
        ...


def check_latents(z: torch.Tensor, latent_dim: int, argument: str = "z") -> None:
    """Raise a clear ValueError unless ``z`` is a finite floating [n, latent_dim] tensor."""
    if not isinstance(z, torch.Tensor):
        raise ValueError(f"{argument} must be a torch.Tensor, got {type(z).__name__}")
    if not z.is_floating_point():
        raise ValueError(f"{argument} must be a floating-point tensor, got dtype {z.dtype}")
    if z.ndim != 2 or z.shape[1] != latent_dim:
        raise ValueError(f"{argument} must have shape [n, {latent_dim}], got {list(z.shape)}")
    if not torch.isfinite(z).all():
        raise ValueError(f"{argument} contains NaN or infinite values")


def check_classes(y: torch.Tensor | None, n: int, num_classes: int, argument: str = "y") -> None:
    """Raise a clear ValueError unless ``y`` holds ``n`` class indices in [0, num_classes)."""
    if num_classes == 0:
        return
    if y is None:
        raise ValueError(f"{argument} is required: this generator is class-conditional")
    if not isinstance(y, torch.Tensor) or y.dtype not in (torch.int64, torch.int32):
        raise ValueError(f"{argument} must be an int64 tensor of class indices")
    if y.shape != (n,):
        raise ValueError(f"{argument} must have shape [{n}], got {list(y.shape)}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(
            f"{argument} holds class indices outside [0, {num_classes}): "
            f"min {int(y.min())}, max {int(y.max())}"
        )


PROTOCOL_ATTRIBUTES = (
    "name",
    "latent_dim",
    "num_classes",
    "resolution",
    "checksum",
    "device",
    "sample_latents",
    "synthesize",
)


def check_generator(obj, source: str):
    """``obj`` if it meets the Generator protocol; else a ValueError naming ``source`` and what is missing."""
    missing = [a for a in PROTOCOL_ATTRIBUTES if not hasattr(obj, a)]
    if missing:
        raise ValueError(
            f"{source} returned {type(obj).__name__}, which lacks {missing} of the Generator protocol "
            f"(see fairgen.generators.Generator)"
        )
    for attribute in ("latent_dim", "num_classes", "resolution"):
        value = getattr(obj, attribute)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{source}: {attribute} must be a non-negative int, got {value!r}")
    if not isinstance(obj.checksum, str) or not obj.checksum:
        raise ValueError(
            f"{source}: checksum must be a non-empty string (the SHA-256 of the weights; cards pin it)"
        )
    return obj

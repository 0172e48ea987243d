"""The Generator protocol: what every data source in fairgen looks like from outside."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from plumbing.validation import check_int


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
    """``obj`` if it meets the Generator protocol; else a ValueError naming ``source`` and what is
    missing."""
    missing = [a for a in PROTOCOL_ATTRIBUTES if not hasattr(obj, a)]
    if missing:
        raise ValueError(
            f"{source} returned {type(obj).__name__}, which lacks {missing} of the Generator "
            "protocol "
            f"(see fairgen.generators.Generator)"
        )
    for attribute in ("latent_dim", "num_classes", "resolution"):
        check_int(getattr(obj, attribute), f"{source}: {attribute}", 0)
    if not isinstance(obj.checksum, str) or not obj.checksum:
        raise ValueError(
            f"{source}: checksum must be a non-empty string (the SHA-256 of the weights; cards pin "
            "it)"
        )
    return obj

"""Pixel labelers for the face GAN (``face-gan-64``): a protected attribute and a target to keep.

* ``face:lightness`` (protected): the mean luma of the central face patch (rows 26-42, columns
  22-42 at 64 px, scaled for other sizes), 1 = dark (the minority), 0 = light;
* ``face:background`` (a target for ``--keep-labeler``): the mean luma of the two top corners
  (rows 0-10, columns 0-8 and 56-64 at 64 px), 1 = light background, 0 = dark; about balanced.

Both are exact functions of the pixels, so every label is ground truth for the image it reads.
Also importable as entry points: ``fairgen.labelers.face:face_lightness`` and
``fairgen.labelers.face:background_lightness``.
"""

from __future__ import annotations

import torch
from einops import reduce

from .base import Labeler
from .registry import register_labeler_scheme

LUMA = (0.299, 0.587, 0.114)  # Rec. 601 weights of R, G, B

# Measured on 20,000 prior samples of face-gan-64 (seed 12345, `benchmarks/face_gan.py` draws its
# own):
# face-patch luma quantiles 5/10/15/20/50% = 0.109/0.145/0.172/0.196/0.313; below 0.18 holds 16.7%.
FACE_DARK_BELOW = 0.18
# Top-corner luma median 0.369 on the same samples; at or above 0.37 holds 49.8%. Dark faces are
# commoner on dark backgrounds (20.7% vs 12.6%), so keeping the background while balancing the
# face is a real constraint, not a free one.
BACKGROUND_LIGHT_FROM = 0.37
FACE_VALUES = ["light", "dark"]
BACKGROUND_VALUES = ["dark", "light"]


def _luma(images: torch.Tensor) -> torch.Tensor:
    """``[N, H, W]`` luma of ``[N, 3, H, W]`` images in [0, 1]."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape [N, 3, H, W], got {list(images.shape)}")
    weights = torch.tensor(LUMA, dtype=images.dtype, device=images.device)
    return torch.einsum("nchw,c->nhw", images, weights)


def _span(start: int, stop: int, size: int) -> slice:
    """Pixel span ``start:stop`` defined at 64 px, scaled to ``size`` (at least one pixel)."""
    low = start * size // 64
    return slice(low, max(low + 1, stop * size // 64))


def face_patch_luma(images: torch.Tensor) -> torch.Tensor:
    """Mean luma ``[N]`` of the central face patch."""
    luma = _luma(images)
    h, w = luma.shape[-2:]
    return reduce(luma[:, _span(26, 42, h), _span(22, 42, w)], "n h w -> n", "mean")


def background_luma(images: torch.Tensor) -> torch.Tensor:
    """Mean luma ``[N]`` of the two top corners (background, above the head's sides)."""
    luma = _luma(images)
    h, w = luma.shape[-2:]
    rows = _span(0, 10, h)
    left, right = luma[:, rows, _span(0, 8, w)], luma[:, rows, _span(56, 64, w)]
    return (reduce(left, "n h w -> n", "mean") + reduce(right, "n h w -> n", "mean")) / 2


def face_lightness(images: torch.Tensor) -> torch.Tensor:
    """1 where the face patch is dark (luma below ``FACE_DARK_BELOW``), else 0; int64 ``[N]``."""
    return (face_patch_luma(images) < FACE_DARK_BELOW).long()


def background_lightness(images: torch.Tensor) -> torch.Tensor:
    """1 where the background corners are light (luma at least ``BACKGROUND_LIGHT_FROM``), else
    0."""
    return (background_luma(images) >= BACKGROUND_LIGHT_FROM).long()


LABELERS = {
    "lightness": (face_lightness, FACE_VALUES),
    "background": (background_lightness, BACKGROUND_VALUES),
}


@register_labeler_scheme("face")
def face_labeler(attribute: str, generator=None, force: bool = False, device="cpu") -> Labeler:
    """``face:lightness`` or ``face:background``: pixel rules for face images (any generator's)."""
    if attribute not in LABELERS:
        raise ValueError(
            f"labeler: face:{attribute} is not a face labeler; the face labelers are "
            f"{', '.join('face:' + name for name in LABELERS)}"
        )
    fn, values = LABELERS[attribute]
    return Labeler(fn, f"face:{attribute}", values=list(values))

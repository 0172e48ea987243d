"""The image edits a latent walk learns to imitate: differentiable, batched, one alpha per image.

Each edit maps images ``[N, 3, H, W]`` in [0, 1] and steps ``alpha [N]`` to the edited images and
a validity mask ``[N, 1, H, W]`` (0 where the edit pulled pixels from outside the frame, so the
walk is not asked to invent them). ``alpha = 0`` is the identity. Units:

* ``zoom``: log2 of the scale factor about the image centre (1 = twice as large);
* ``shift_x`` / ``shift_y``: fraction of the image side, right / down;
* ``rotate``: radians, counter-clockwise as displayed, about the image centre;
* ``hue``: turns of the colour wheel (rotation about the grey axis of RGB);
* ``brightness``: added to every channel.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from plumbing.validation import check_images

# Default alpha ranges: sizeable edits that a generator can plausibly follow at the frame's scale.
DEFAULT_ALPHAS = {
    "zoom": (-0.3, 0.3),
    "shift_x": (-0.12, 0.12),
    "shift_y": (-0.12, 0.12),
    "rotate": (-math.pi / 4, math.pi / 4),
    "hue": (-0.1, 0.1),
    "brightness": (-0.2, 0.2),
}
TRANSFORMATIONS = tuple(DEFAULT_ALPHAS)
_VALID = (
    0.999  # a pixel counts as inside the frame when at least this much of it was sampled inside
)


def _geometric(images: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Resample ``images`` through affine maps ``theta [N, 2, 3]`` (output -> input, normalised)."""
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    edited = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    inside = F.grid_sample(
        torch.ones_like(images[:, :1]),
        grid,
        mode="bilinear",
        padding_mode="zeros",
        align_corners=False,
    )
    return edited, (inside > _VALID).to(images)


def _affine(a11, a12, a21, a22, tx, ty) -> torch.Tensor:
    return rearrange(torch.stack([a11, a12, tx, a21, a22, ty], dim=1), "n (r c) -> n r c", r=2)


def zoom(images, alpha):
    inverse = torch.exp2(-alpha)  # output pixel p samples the input at p / scale
    zero = torch.zeros_like(alpha)
    return _geometric(images, _affine(inverse, zero, zero, inverse, zero, zero))


def shift_x(images, alpha):
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    return _geometric(
        images, _affine(one, zero, zero, one, -2 * alpha, zero)
    )  # normalised coords span 2


def shift_y(images, alpha):
    one, zero = torch.ones_like(alpha), torch.zeros_like(alpha)
    return _geometric(images, _affine(one, zero, zero, one, zero, -2 * alpha))


def rotate(images, alpha):
    # normalised coords have y pointing down, so a counter-clockwise turn on screen samples the
    # input at R(alpha) p in these coordinates
    cos, sin, zero = torch.cos(alpha), torch.sin(alpha), torch.zeros_like(alpha)
    return _geometric(images, _affine(cos, -sin, sin, cos, zero, zero))


def hue(images, alpha):
    """Rodrigues rotation of every RGB value about the grey axis by ``2 pi alpha``."""
    angle = 2 * math.pi * alpha
    cos, sin = rearrange(torch.cos(angle), "n -> n 1 1"), rearrange(torch.sin(angle), "n -> n 1 1")
    axis = torch.full((3,), 1 / math.sqrt(3), dtype=images.dtype, device=images.device)
    cross = torch.tensor(
        [[0.0, -1.0, 1.0], [1.0, 0.0, -1.0], [-1.0, 1.0, 0.0]],
        dtype=images.dtype,
        device=images.device,
    ) / math.sqrt(3)
    eye = torch.eye(3, dtype=images.dtype, device=images.device)
    matrix = cos * eye + sin * cross + (1 - cos) * torch.outer(axis, axis)
    edited = torch.einsum("nij,njhw->nihw", matrix, images).clamp(0, 1)
    return edited, torch.ones_like(images[:, :1])


def brightness(images, alpha):
    return (images + rearrange(alpha, "n -> n 1 1 1")).clamp(0, 1), torch.ones_like(images[:, :1])


EDITS = {
    "zoom": zoom,
    "shift_x": shift_x,
    "shift_y": shift_y,
    "rotate": rotate,
    "hue": hue,
    "brightness": brightness,
}


def check_transformation(name, argument: str = "transformation") -> str:
    if name not in EDITS:
        raise ValueError(f"{argument} must be one of {list(TRANSFORMATIONS)}, got {name!r}")
    return name


def check_alpha_range(name: str, bounds) -> tuple[float, float]:
    """A finite, non-empty ``(low, high)`` range for ``name``'s alpha."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise ValueError(
            f"alpha range of {name!r} must be a pair (low, high) of numbers, got {bounds!r}"
        ) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ValueError(f"alpha range of {name!r} must be finite, got ({low}, {high})")
    if not low < high:
        raise ValueError(f"alpha range of {name!r} is empty: low {low} must be below high {high}")
    return low, high


def apply_edit(
    name: str, images: torch.Tensor, alpha: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edited, mask)`` for transformation ``name`` with one step per image (see module
    docstring)."""
    check_transformation(name)
    check_images(images, "images")
    alpha = torch.as_tensor(alpha, dtype=images.dtype, device=images.device)
    if alpha.shape != (len(images),):
        raise ValueError(
            f"alpha must have shape [{len(images)}] (one step per image), got {list(alpha.shape)}"
        )
    return EDITS[name](images, alpha)

"""SimCLR-style augmentation of a whole batch on its device, with per-sample random parameters.

``augment(images, recipe, generator)`` applies, in SimCLR's order: random resized crop and
horizontal flip (folded into one affine sampling grid, one ``grid_sample`` call per batch),
colour jitter (brightness, contrast, saturation, hue), random greyscale and gaussian blur with a
per-sample sigma (one grouped, separable convolution). Every random number for a batch comes
from a single ``torch.rand(N, 13)`` draw on the given ``torch.Generator``, so the output is a
pure function of (images, recipe, generator state), and sample ``i`` always gets column ``i``.

Why pure torch and not kornia or ``torchvision.transforms.v2``: torchvision's transforms draw
one set of parameters per call, so per-sample randomness means a Python loop over images (or
over small groups), which is slow on a GPU and ties the result to the loop order. Kornia does
batch this, but it is one more dependency with its own random-state handling; the operations
here are a few dozen lines of tensor code that keep the batch on its device, never sync with
the host, and are deterministic given our generator — which is what a shareable stream needs.

Known, documented differences from torchvision: the crop samples (scale, log-ratio) once and
clamps the box to the image instead of rejection-sampling; colour jitter runs in the fixed
order brightness, contrast, saturation, hue (torchvision shuffles it per call); resizing is
bilinear without antialiasing.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

from plumbing.validation import check_images, is_int, is_number

from .records import from_plain_dict

__all__ = [
    "AugmentRecipe",
    "PRESETS",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_hue",
    "adjust_saturation",
    "augment",
    "get_recipe",
    "gaussian_blur",
    "hsv_to_rgb",
    "rgb_to_grayscale",
    "rgb_to_hsv",
]

# Columns of the per-sample uniform draw; fixed so a sample's parameters never depend on which
# operations a recipe enables.
_SCALE, _RATIO, _CX, _CY, _FLIP, _JITTER, _B, _C, _S, _H, _GREY, _BLUR, _SIGMA = range(13)
_NUM_DRAWS = 13
_LUMA = (0.2989, 0.587, 0.114)  # the weights torchvision uses


@dataclass(frozen=True)
class AugmentRecipe:
    """Probabilities and ranges of every augmentation; plain data, JSON-serialisable.

    ``crop=False`` keeps the whole image (only resized to ``out_size``). Jitter strengths follow
    torchvision: a factor is drawn from ``[max(0, 1 - s), 1 + s]``; the hue shift from
    ``[-hue, hue]`` (fraction of a turn, at most 0.5). The blur kernel is
    ``blur_kernel_fraction`` of the output side, rounded to an odd size of at least 3.
    """

    crop: bool = True
    crop_scale: tuple[float, float] = (0.08, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip_p: float = 0.5
    jitter_p: float = 0.8
    brightness: float = 0.4
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.1
    grey_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    blur_kernel_fraction: float = 0.1

    def __post_init__(self):
        if not isinstance(self.crop, bool):
            raise ValueError(f"crop must be True or False, got {self.crop!r}")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "crop":
                continue
            pair = f.name in ("crop_scale", "crop_ratio", "blur_sigma")
            numbers = value if pair and isinstance(value, tuple | list) else [value]
            if (pair and len(numbers) != 2) or not all(is_number(x) for x in numbers):
                expected = "a pair of numbers (low, high)" if pair else "a number"
                raise ValueError(f"{f.name} must be {expected}, got {value!r}")
        for name in ("crop_scale", "crop_ratio", "blur_sigma"):
            value = getattr(self, name)
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        lo, hi = self.crop_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.crop_ratio
        if not 0 < lo <= hi:
            raise ValueError(f"crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        for name in ("flip_p", "jitter_p", "grey_p", "blur_p"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("brightness", "contrast", "saturation"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.hue <= 0.5:
            raise ValueError(f"hue must be in [0, 0.5], got {self.hue}")
        if not 0 < self.blur_kernel_fraction <= 1:
            raise ValueError(
                f"blur_kernel_fraction must be in (0, 1], got {self.blur_kernel_fraction}"
            )

    def to_dict(self) -> dict:
        """Plain dict (pairs as lists) that ``json.dumps`` accepts."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> AugmentRecipe:
        """Inverse of ``to_dict``; unknown keys are an error, missing keys take defaults."""
        return from_plain_dict(cls, data, "augment recipe")

    @property
    def is_identity(self) -> bool:
        """True when the recipe never changes an image (apart from a resize)."""
        return (
            not self.crop
            and self.flip_p == 0
            and self.jitter_p == 0
            and self.grey_p == 0
            and self.blur_p == 0
        )


PRESETS: dict[str, AugmentRecipe] = {
    # SimCLR (Chen et al. 2020) ImageNet recipe.
    "simclr": AugmentRecipe(),
    # For 32 px images: milder crops and colour, no blur (SimCLR drops blur on CIFAR).
    "light": AugmentRecipe(
        crop_scale=(0.35, 1.0), brightness=0.4, contrast=0.4, saturation=0.2, hue=0.05, blur_p=0.0
    ),
    "none": AugmentRecipe(crop=False, flip_p=0.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0),
}


def get_recipe(recipe: str | AugmentRecipe | dict) -> AugmentRecipe:
    """A recipe from a preset name, a dict (``to_dict`` form) or a recipe."""
    if isinstance(recipe, AugmentRecipe):
        return recipe
    if isinstance(recipe, dict):
        return AugmentRecipe.from_dict(recipe)
    if isinstance(recipe, str) and recipe in PRESETS:
        return PRESETS[recipe]
    raise ValueError(
        f"recipe must be an AugmentRecipe, a dict or one of {sorted(PRESETS)}, got {recipe!r}"
    )


# ---------------------------------------------------------------- per-sample colour operations


def _per_sample(factor: torch.Tensor) -> torch.Tensor:
    return rearrange(factor, "n -> n 1 1 1")


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma (torchvision's rounding), ``[N, 1, H, W]``."""
    r, g, b = images.unbind(1)
    return rearrange(_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b, "n h w -> n 1 h w")


def adjust_brightness(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Scale each image by its ``factor[n]``."""
    return (images * _per_sample(factor)).clamp(0, 1)


def adjust_contrast(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its mean grey level."""
    mean = rgb_to_grayscale(images).mean(dim=(1, 2, 3), keepdim=True)
    f = _per_sample(factor)
    return (f * images + (1 - f) * mean).clamp(0, 1)


def adjust_saturation(images: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """Blend each image with its own greyscale version."""
    f = _per_sample(factor)
    return (f * images + (1 - f) * rgb_to_grayscale(images)).clamp(0, 1)


def rgb_to_hsv(images: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """RGB in [0, 1] -> HSV with every channel in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = images.unbind(1)
    maxc, minc = images.amax(1), images.amin(1)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp_min(eps), torch.zeros_like(maxc))
    safe = delta.clamp_min(eps)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2 + rc - bc, 4 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    return torch.stack((hue, sat, maxc), dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """Inverse of ``rgb_to_hsv``: channel c is ``v - v s clamp(min(k, 4 - k), 0, 1)``."""
    h, s, v = (rearrange(t, "n h w -> n 1 h w") for t in hsv.unbind(1))
    offsets = torch.tensor((5.0, 3.0, 1.0), device=hsv.device, dtype=hsv.dtype)
    k = (rearrange(offsets, "c -> 1 c 1 1") + h * 6) % 6
    return v - v * s * torch.minimum(k, 4 - k).clamp(0, 1)


def adjust_hue(images: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Rotate each image's hue by ``shift[n]`` turns (in [-0.5, 0.5])."""
    hsv = rgb_to_hsv(images)
    hue = (hsv[:, :1] + _per_sample(shift)) % 1.0
    return hsv_to_rgb(torch.cat((hue, hsv[:, 1:]), dim=1)).clamp(0, 1)


def gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """Blur image ``n`` with an isotropic gaussian of ``sigma[n]`` pixels (separable, grouped
    conv)."""
    n, c, h, w = images.shape
    radius = kernel_size // 2
    taps = torch.arange(kernel_size, device=images.device, dtype=images.dtype) - radius
    kernel = torch.exp(
        -(rearrange(taps, "k -> 1 k") ** 2) / (2 * rearrange(sigma, "n -> n 1") ** 2)
    )
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    kernel = repeat(kernel, "n k -> (n c) 1 k", c=c)
    x = rearrange(images, "n c h w -> 1 (n c) h w")
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, rearrange(kernel, "g 1 k -> g 1 k 1"), groups=n * c)
    x = F.conv2d(x, rearrange(kernel, "g 1 k -> g 1 1 k"), groups=n * c)
    return rearrange(x, "1 (n c) h w -> n c h w", n=n)


# ---------------------------------------------------------------- the batch augmentation


def _uniform(u: torch.Tensor, low: float, high: float) -> torch.Tensor:
    return low + (high - low) * u


def _crop_flip_grid(u: torch.Tensor, recipe: AugmentRecipe, in_hw, out_hw) -> torch.Tensor:
    """Sampling grid ``[N, h, w, 2]`` for each sample's crop box, mirrored if flipped."""
    in_h, in_w = in_hw
    ones = torch.ones_like(u[:, 0])
    if recipe.crop:
        area = _uniform(u[:, _SCALE], *recipe.crop_scale)
        log_lo, log_hi = math.log(recipe.crop_ratio[0]), math.log(recipe.crop_ratio[1])
        ratio = torch.exp(_uniform(u[:, _RATIO], log_lo, log_hi))
        # Box half-sizes as fractions of the image: area * H * W pixels with width / height = ratio.
        half_w = torch.sqrt(area * ratio * in_h / in_w).clamp(max=1.0)
        half_h = torch.sqrt(area / ratio * in_w / in_h).clamp(max=1.0)
        cx = (2 * u[:, _CX] - 1) * (1 - half_w)
        cy = (2 * u[:, _CY] - 1) * (1 - half_h)
    else:
        half_w, half_h, cx, cy = ones, ones, 0 * ones, 0 * ones
    sign = torch.where(u[:, _FLIP] < recipe.flip_p, -ones, ones)
    zeros = torch.zeros_like(ones)
    theta = rearrange(
        torch.stack((sign * half_w, zeros, cx, zeros, half_h, cy), dim=1), "n (r c) -> n r c", r=2
    )
    return F.affine_grid(theta, [u.shape[0], 3, *out_hw], align_corners=False)


def _out_hw(out_size, images: torch.Tensor) -> tuple[int, int]:
    if out_size is None:
        return tuple(images.shape[-2:])
    if is_int(out_size):
        out_size = (out_size, out_size)
    if (
        not isinstance(out_size, tuple | list)
        or len(out_size) != 2
        or not all(isinstance(s, int) and s > 0 for s in out_size)
    ):
        raise ValueError(
            f"out_size must be None, a positive int or (height, width), got {out_size!r}"
        )
    return tuple(out_size)


def augment(
    images: torch.Tensor,
    recipe: AugmentRecipe | str | dict,
    generator: torch.Generator,
    out_size: int | tuple[int, int] | None = None,
) -> torch.Tensor:
    """Augment every image of ``[N, 3, H, W]`` independently; returns ``[N, 3, h, w]`` in [0, 1].

    Deterministic given the generator's state (which it advances by one ``[N, 13]`` draw). The
    generator may live on another device than ``images``; parameters are moved, not the batch.
    """
    recipe = get_recipe(recipe)
    check_images(images)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    out_hw = _out_hw(out_size, images)
    n = images.shape[0]
    u = torch.rand(n, _NUM_DRAWS, generator=generator, device=generator.device)
    u = u.to(device=images.device, dtype=images.dtype)
    if recipe.is_identity and out_hw == tuple(images.shape[-2:]):
        return images
    if n == 0:
        return images.new_empty(0, 3, *out_hw)

    grid = _crop_flip_grid(u, recipe, images.shape[-2:], out_hw)
    x = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.clamp(0, 1)

    if recipe.jitter_p > 0:
        jittered = adjust_brightness(
            x, _uniform(u[:, _B], max(0.0, 1 - recipe.brightness), 1 + recipe.brightness)
        )
        jittered = adjust_contrast(
            jittered, _uniform(u[:, _C], max(0.0, 1 - recipe.contrast), 1 + recipe.contrast)
        )
        jittered = adjust_saturation(
            jittered, _uniform(u[:, _S], max(0.0, 1 - recipe.saturation), 1 + recipe.saturation)
        )
        if recipe.hue > 0:
            jittered = adjust_hue(jittered, _uniform(u[:, _H], -recipe.hue, recipe.hue))
        x = torch.where(_per_sample(u[:, _JITTER] < recipe.jitter_p), jittered, x)

    if recipe.grey_p > 0:
        grey = rgb_to_grayscale(x).expand_as(x)
        x = torch.where(_per_sample(u[:, _GREY] < recipe.grey_p), grey, x)

    if recipe.blur_p > 0:
        side = min(out_hw)
        kernel_size = max(3, int(recipe.blur_kernel_fraction * side) // 2 * 2 + 1)
        if kernel_size < side:  # reflect padding needs the radius to fit inside the image
            blurred = gaussian_blur(x, _uniform(u[:, _SIGMA], *recipe.blur_sigma), kernel_size)
            x = torch.where(_per_sample(u[:, _BLUR] < recipe.blur_p), blurred, x)
    return x.clamp(0, 1)  # weighted sums (grey, blur) can overshoot 1 by a float rounding

"""The embedded world: a vectorised torch renderer of labelled images with controllable bias.

Every image is one coloured object (shape, hue, size, position, rotation) on a grey textured
background. All randomness lives in the recorded factors, so the same factors always give the
same pixels, at any resolution and on any device. A split's ``bias`` ties a protected factor to
the target factor (e.g. background texture to shape), standing in for a real biased dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from einops import rearrange, repeat

from plumbing.tables import cramers_v

SHAPES = ("circle", "square", "triangle", "cross")
TEXTURES = ("plain", "stripes", "dots", "checker")
COLOURS = ("red", "yellow", "green", "cyan", "blue", "magenta")
CATEGORICAL = {"shape": SHAPES, "texture": TEXTURES, "colour": COLOURS}
CONTINUOUS = ("hue", "size", "x", "y", "rotation")
FACTORS = tuple(CATEGORICAL) + CONTINUOUS
RESOLUTIONS = (16, 32, 64, 128, 256)

SIZE_RANGE = (0.2, 0.3)  # object radius, as a fraction of the image side
POSITION_RANGE = (0.35, 0.65)  # object centre, as a fraction of the image side
RENDER_PIXELS = 1 << 18  # pixels per rendering pass: keeps the temporaries in cache-friendly sizes


def _check_categorical(name: str, argument: str) -> None:
    if name not in CATEGORICAL:
        raise ValueError(f"{argument} must be one of {sorted(CATEGORICAL)}, got {name!r}")


def sample_factors(
    n: int,
    generator: torch.Generator,
    bias: float = 0.0,
    target: str = "shape",
    protected: str = "texture",
) -> dict[str, torch.Tensor]:
    """Draw the factors of ``n`` images (on the CPU, so they do not depend on the device).

    The target is uniform. With probability ``bias`` the protected factor takes the target's
    "own" value (``target_index % n_protected``), otherwise it is uniform, so Cramér's V between
    them equals ``bias`` in expectation. Every other factor is independent and uniform.
    """
    if not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive integer, got {n!r}")
    if not 0.0 <= bias <= 1.0:
        raise ValueError(f"bias must lie in [0, 1], got {bias!r}")
    _check_categorical(target, "target")
    _check_categorical(protected, "protected")
    if target == protected:
        raise ValueError(f"target and protected must differ, both are {target!r}")

    def uniform(lo=0.0, hi=1.0):
        return lo + (hi - lo) * torch.rand(n, generator=generator, dtype=torch.float64)

    def categorical(k):
        return torch.randint(k, (n,), generator=generator)

    factors = {name: categorical(len(values)) for name, values in CATEGORICAL.items()}
    tied = uniform() < bias
    own = factors[target] % len(CATEGORICAL[protected])
    factors[protected] = torch.where(tied, own, factors[protected])
    # hue sits inside its colour bin, away from the bin edges, so colour bins are unambiguous
    factors["hue"] = (factors["colour"] + uniform(0.2, 0.8)) / len(COLOURS)
    factors["size"] = uniform(*SIZE_RANGE)
    factors["x"] = uniform(*POSITION_RANGE)
    factors["y"] = uniform(*POSITION_RANGE)
    factors["rotation"] = uniform(0.0, 2 * math.pi)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in factors.items()}


# ---------------------------------------------------------------- signed distances (unit shapes)


def _sd_box(px, py, hx, hy):
    qx, qy = px.abs() - hx, py.abs() - hy
    outside = torch.sqrt(qx.clamp(min=0) ** 2 + qy.clamp(min=0) ** 2)
    return outside + torch.maximum(qx, qy).clamp(max=0)


def _sd_triangle(px, py, r=1.0):
    """Equilateral triangle with circumradius ~r, pointing up (exact Euclidean distance)."""
    k = math.sqrt(3.0)
    px = px.abs() - r * k / 2
    py = py + r / 2
    fold = px + k * py > 0
    px, py = (
        torch.where(fold, (px - k * py) / 2, px),
        torch.where(fold, (-k * px - py) / 2, py),
    )
    px = px - px.clamp(-r * k, 0.0)
    return -torch.sqrt(px**2 + py**2) * torch.sign(py)


def _shape_distances(px, py):
    """Signed distance of every shape at object-frame coordinates; stacked as [S, ...]."""
    circle = torch.sqrt(px**2 + py**2) - 0.95
    square = _sd_box(px, py, 0.75, 0.75)
    triangle = _sd_triangle(px, py)
    cross = torch.minimum(_sd_box(px, py, 0.95, 0.33), _sd_box(px, py, 0.33, 0.95))
    return torch.stack([circle, square, triangle, cross])


# ---------------------------------------------------------------- backgrounds


def _coverage(distance, pixel):
    """Anti-aliased coverage of the region where ``distance < 0``."""
    return (0.5 - distance / pixel).clamp(0.0, 1.0)


def _background(texture, u, v, pixel):
    """Grey level of each texture at image coordinates; the texture index picks one per image."""
    stripe_period, dot_period, checker_period = 0.2, 1 / 6, 0.25
    diag = (u + v) / math.sqrt(2)
    phase = torch.remainder(diag / stripe_period, 1.0)
    stripes = _coverage((phase - 0.5).abs() - 0.25, pixel / stripe_period)
    du = torch.remainder(u / dot_period, 1.0) - 0.5
    dv = torch.remainder(v / dot_period, 1.0) - 0.5
    dots = _coverage(torch.sqrt(du**2 + dv**2) - 0.28, pixel / dot_period)
    cu = _coverage(
        (torch.remainder(u / checker_period, 1.0) - 0.5).abs() - 0.25, pixel / checker_period
    )
    cv = _coverage(
        (torch.remainder(v / checker_period, 1.0) - 0.5).abs() - 0.25, pixel / checker_period
    )
    checker = cu * (1 - cv) + cv * (1 - cu)
    plain = torch.full_like(stripes, 0.5)
    patterns = torch.stack([plain, 0.3 + 0.4 * stripes, 0.3 + 0.4 * dots, 0.3 + 0.4 * checker])
    return patterns[texture, torch.arange(len(texture), device=texture.device)]  # [N, H, W]


def hsv_to_rgb(h, s, v):
    """Vectorised HSV -> RGB for tensors of the same shape; returns [..., 3]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=-1)
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return v[..., None] - v[..., None] * s[..., None] * ramp


def render(factors: dict[str, torch.Tensor], resolution: int = 32, device="cpu") -> torch.Tensor:
    """Render factors to float32 images ``[N, 3, resolution, resolution]`` in [0, 1] on
    ``device``."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {resolution!r}")
    missing = [name for name in FACTORS if name not in factors]
    if missing:
        raise ValueError(f"factors is missing {missing}; expected all of {list(FACTORS)}")
    device = torch.device(device)
    n = len(factors["shape"])
    chunk = max(1, RENDER_PIXELS // resolution**2)
    chunks = []
    for start in range(0, n, chunk):
        part = {k: v[start : start + chunk].to(device) for k, v in factors.items()}
        chunks.append(_render_chunk(part, resolution, device))
    return torch.cat(chunks)


def _render_chunk(f, resolution, device):
    n = len(f["shape"])
    pixel = 1.0 / resolution
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) * pixel
    u = repeat(axis, "w -> n h w", n=n, h=resolution)
    v = repeat(axis, "h -> n h w", n=n, w=resolution)
    # object frame: translate, rotate by -rotation, scale by 1/size (y points up)
    col = lambda t: rearrange(t.float(), "n -> n 1 1")  # noqa: E731
    dx, dy = u - col(f["x"]), col(f["y"]) - v
    cos, sin = torch.cos(col(f["rotation"])), torch.sin(col(f["rotation"]))
    size = col(f["size"])
    px, py = (cos * dx + sin * dy) / size, (-sin * dx + cos * dy) / size
    distances = _shape_distances(px, py) * size  # back to image units
    index = repeat(f["shape"], "n -> 1 n h w", h=resolution, w=resolution)
    alpha = _coverage(distances.gather(0, index)[0], pixel)
    grey = _background(f["texture"], u, v, pixel)
    colour = hsv_to_rgb(
        f["hue"].float(),
        torch.full_like(f["hue"], 0.85).float(),
        torch.full_like(f["hue"], 0.95).float(),
    )
    colour = rearrange(colour, "n c -> n c 1 1")
    alpha, grey = rearrange(alpha, "n h w -> n 1 h w"), rearrange(grey, "n h w -> n 1 h w")
    return (grey * (1 - alpha) + colour * alpha).clamp(0, 1).contiguous()


# ---------------------------------------------------------------- samples and splits


@dataclass
class WorldSample:
    """Images with their factors, and the bias settings they were drawn with."""

    images: torch.Tensor
    factors: dict[str, torch.Tensor]
    target: str
    protected: str
    bias: float

    def __len__(self) -> int:
        return len(self.images)

    def labels(self, name: str) -> torch.Tensor:
        """The integer labels of a categorical factor (CPU tensor)."""
        _check_categorical(name, "name")
        return self.factors[name]

    def cramers_v(self) -> float:
        """Measured association between this sample's target and protected factors."""
        return cramers_v(self.factors[self.target].numpy(), self.factors[self.protected].numpy())

    def to_dataframe(self):
        """The factors as a pandas DataFrame, categorical factors by name."""
        import pandas as pd

        frame = pd.DataFrame({k: v.numpy() for k, v in self.factors.items()})
        for name, values in CATEGORICAL.items():
            frame[name] = pd.Categorical.from_codes(frame[name], values)
        return frame


@dataclass(frozen=True)
class World:
    """A source of labelled images: ``World(resolution=32).sample(1000, seed=0, bias=0.9)``."""

    resolution: int = 32
    target: str = "shape"
    protected: str = "texture"

    def __post_init__(self):
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution!r}")
        _check_categorical(self.target, "target")
        _check_categorical(self.protected, "protected")

    @property
    def num_classes(self) -> int:
        return len(CATEGORICAL[self.target])

    def sample_factors(self, n: int, seed: int = 0, bias: float = 0.0) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(int(seed))
        return sample_factors(n, generator, bias, self.target, self.protected)

    def render(self, factors, device="cpu") -> torch.Tensor:
        return render(factors, self.resolution, device)

    def sample(self, n: int, seed: int = 0, bias: float = 0.0, device="cpu") -> WorldSample:
        """``n`` images whose protected factor follows the target with strength ``bias``."""
        factors = self.sample_factors(n, seed, bias)
        return WorldSample(self.render(factors, device), factors, self.target, self.protected, bias)

    def splits(self, n_train: int, n_test: int, bias: float, seed: int = 0, device="cpu"):
        """A biased training split and a balanced test split (independent seeds)."""
        seeds = np.random.SeedSequence(seed).generate_state(2)
        return {
            "train": self.sample(n_train, int(seeds[0]), bias, device),
            "test": self.sample(n_test, int(seeds[1]), 0.0, device),
        }

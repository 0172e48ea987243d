"""The generator's latent prior: what it is, where it lives, and moves that keep it exactly.

A generator may declare its prior with an optional ``latent_prior`` attribute, a ``LatentPrior``
(or a dict with its fields): latents are ``scale`` times i.i.d. standard normals truncated to
``[-bound, bound]`` (``bound=None``: not truncated). BigGAN's prior at truncation ``t`` is
``LatentPrior(scale=t, bound=2.0)``; a generator that declares nothing is taken as ``N(0, I)``.

*Inside the prior* means two things (``in_prior_support``): in its support (inside the box
``[-scale * bound, scale * bound]`` of a truncated prior) and in its typical set (the latent's norm
within ``k`` standard deviations of the mean norm of the generator's own prior draws; a latent far
from that shell is one the generator never saw). ``prior_mix`` moves a latent to
``cos(t) g + sin(t) e`` in the prior's Gaussian coordinates ``g`` (``e`` a fresh standard normal):
if the anchor is a prior draw, so is the result, exactly, truncation included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

BAND_DRAWS = 8192  # prior draws that place the typical set's norm band
BAND_K = 4.0  # the band's half-width in standard deviations of the prior draws' norms


@dataclass(frozen=True)
class LatentPrior:
    """``scale`` times i.i.d. standard normals truncated to ``[-bound, bound]`` (``bound=None``:
    none)."""

    scale: float = 1.0
    bound: float | None = None

    def __post_init__(self):
        if not (
            isinstance(self.scale, int | float) and math.isfinite(self.scale) and self.scale > 0
        ):
            raise ValueError(f"latent_prior scale must be a finite number > 0, got {self.scale!r}")
        if self.bound is not None and not (
            isinstance(self.bound, int | float) and math.isfinite(self.bound) and self.bound > 0
        ):
            raise ValueError(
                f"latent_prior bound must be None or a finite number > 0, got {self.bound!r}"
            )

    @property
    def box(self) -> float | None:
        """The half-width of the support box in latent units (None: unbounded)."""
        return None if self.bound is None else self.scale * self.bound

    def _tail(self) -> torch.Tensor:
        return torch.special.ndtr(torch.tensor(-float(self.bound), dtype=torch.float64))

    def to_gaussian(self, z: torch.Tensor) -> torch.Tensor:
        """The standard-normal coordinates of prior latents (float64)."""
        x = z.double() / self.scale
        if self.bound is None:
            return x
        tail = self._tail()
        u = (torch.special.ndtr(x.clamp(-self.bound, self.bound)) - tail) / (1 - 2 * tail)
        return torch.special.ndtri(u.clamp(1e-15, 1 - 1e-15))

    def from_gaussian(self, g: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
        """Latents of standard-normal coordinates; inside the box exactly (also after the cast)."""
        if self.bound is None:
            return (g * self.scale).to(dtype)
        tail = self._tail()
        x = torch.special.ndtri(tail + torch.special.ndtr(g) * (1 - 2 * tail)) * self.scale
        edge = torch.tensor(self.box, dtype=dtype)
        if float(edge) > self.box:  # the largest value of this dtype that does not exceed the box
            edge = torch.nextafter(edge, torch.zeros((), dtype=dtype))
        return x.to(dtype).clamp(-float(edge), float(edge))


def latent_prior(generator) -> LatentPrior:
    """The prior a generator declares (``latent_prior`` attribute), else ``N(0, I)``."""
    declared = getattr(generator, "latent_prior", None)
    if declared is None:
        return LatentPrior()
    if isinstance(declared, LatentPrior):
        return declared
    if isinstance(declared, dict):
        unknown = sorted(set(declared) - {"scale", "bound"})
        if unknown:
            raise ValueError(
                f"generator latent_prior has unknown fields {unknown} (expected scale, bound)"
            )
        return LatentPrior(**declared)
    raise ValueError(
        "generator latent_prior must be a steering.LatentPrior or a dict, got "
        f"{type(declared).__name__}"
    )


@dataclass(frozen=True)
class PriorSupport:
    """The box (None: unbounded) and the typical set's band of latent norms ``[low, high]``."""

    box: float | None
    low: float
    high: float

    def contains(self, z: torch.Tensor) -> torch.Tensor:
        """A bool mask ``[N]``: which latents lie inside the box and the norm band."""
        flat = z.detach().flatten(1).float()
        norm = flat.norm(dim=1)
        inside = (norm >= self.low) & (norm <= self.high)
        if self.box is not None:
            inside &= flat.abs().amax(1) <= self.box
        return inside.cpu()


def prior_support(
    generator, draws: int = BAND_DRAWS, k: float = BAND_K, seed: int = 0
) -> PriorSupport:
    """The support box the generator declares and the norm band of its own prior draws (mean +- k
    std)."""
    z = generator.sample_latents(draws, generator=torch.Generator().manual_seed(seed))
    norm = z.detach().flatten(1).double().norm(dim=1).cpu()
    mean, std = float(norm.mean()), float(norm.std())
    return PriorSupport(latent_prior(generator).box, max(0.0, mean - k * std), mean + k * std)


def in_prior_support(
    generator, z: torch.Tensor, support: PriorSupport | None = None
) -> torch.Tensor:
    """Which latents ``z`` lie inside ``generator``'s prior: its support box and its typical set."""
    return (support or prior_support(generator)).contains(z)


def prior_mix(
    prior: LatentPrior,
    z: torch.Tensor,
    rho: torch.Tensor,
    generator: torch.Generator | None = None,
    basis: torch.Tensor | None = None,
    within: torch.Tensor | None = None,
) -> torch.Tensor:
    """``rho g + sqrt(1 - rho^2) e`` in the prior's Gaussian coordinates, back in latent units.

    ``z [N, ...]``, ``rho [N]`` (1: the anchor, 0: a fresh prior draw); keeps the prior exactly.
    With an orthonormal ``basis [d, r]`` (of the flattened latent), rows where ``within [N]`` is
    true mix only their component in its span and keep the rest (still exact: under an isotropic
    Gaussian the two components are independent).
    """
    g = prior.to_gaussian(z).flatten(1)
    r = rho.double()[:, None]
    out = r * g + (1 - r * r).clamp(min=0).sqrt() * torch.randn(
        g.shape, generator=generator, dtype=torch.float64
    )
    if basis is not None and within is not None and bool(within.any()):
        b = basis.double()
        inside = g[within] @ b  # [n, r]
        e = torch.randn(inside.shape, generator=generator, dtype=torch.float64)
        ri = r[within]
        out[within] = g[within] + ((ri - 1) * inside + (1 - ri * ri).clamp(min=0).sqrt() * e) @ b.T
    return prior.from_gaussian(out.view(g.shape[:1] + z.shape[1:]), z.dtype)

"""View recipes: how the V latents of one multiview sample are made from its anchor latent.

Kinds of view (any mix, at least two):

* ``"anchor"``: the anchor latent itself (the view differs only by augmentation);
* ``"neighbour"``: a gaussian latent neighbour ``z + sigma * w`` with ``w`` a standard normal
  truncated to ``[-truncate, truncate]`` (the paper's multiview positives; sigma 0.2–1.0);
* ``"flip"``: the anchor's counterfactual twin from an eraser card — protected value changed,
  class kept — so the positive pair disagrees exactly on the protected attribute.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange

from .records import from_plain_dict

VIEW_KINDS = ("anchor", "neighbour", "flip")


@dataclass(frozen=True)
class ViewRecipe:
    """Which views to make (one entry per view) and the neighbour noise."""

    kinds: tuple[str, ...] = ("neighbour", "neighbour")
    sigma: float = 0.5
    truncate: float = 2.0

    def __post_init__(self):
        if isinstance(self.kinds, str):
            raise ValueError(f"kinds must be a list of view kinds, got the string {self.kinds!r}")
        kinds = tuple(self.kinds)
        object.__setattr__(self, "kinds", kinds)
        if len(kinds) < 2:
            raise ValueError(f"kinds must name at least 2 views (V >= 2), got {list(kinds)}")
        unknown = [k for k in kinds if k not in VIEW_KINDS]
        if unknown:
            raise ValueError(f"kinds must be among {VIEW_KINDS}, got {unknown}")
        for name in ("sigma", "truncate"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @property
    def num_views(self) -> int:
        return len(self.kinds)

    @property
    def needs_steerer(self) -> bool:
        return "flip" in self.kinds

    def to_dict(self) -> dict:
        return {**asdict(self), "kinds": list(self.kinds)}

    @classmethod
    def from_dict(cls, data: dict) -> ViewRecipe:
        return from_plain_dict(cls, data, "view recipe")


def truncated_normal(shape, truncate: float, generator: torch.Generator) -> torch.Tensor:
    """Standard normal draws truncated to [-truncate, truncate] (inverse-CDF, no rejection loop).

    The final clamp only absorbs rounding at the very ends (``ndtri(ndtr(-t))`` can land a hair
    outside ``-t``), so the bound holds exactly, also after the cast to float32.
    """
    low = torch.special.ndtr(torch.tensor(-truncate, dtype=torch.float64))
    u = torch.rand(shape, generator=generator, dtype=torch.float64)
    bound = torch.tensor(truncate, dtype=torch.float32)
    if float(bound) > truncate:  # the largest float32 that does not exceed truncate
        bound = torch.nextafter(bound, torch.zeros(()))
    return torch.special.ndtri(low + u * (1 - 2 * low)).float().clamp(-float(bound), float(bound))


def make_view_latents(
    z: torch.Tensor, y: torch.Tensor, recipe: ViewRecipe, generator: torch.Generator, steerer=None
) -> torch.Tensor:
    """View latents ``[B, V, d]`` for anchors ``z [B, d]`` (classes ``y``), drawn with ``generator``."""
    if recipe.needs_steerer and steerer is None:
        raise ValueError("the view recipe asks for 'flip' views, which need an eraser card (steerer)")
    views = []
    for kind in recipe.kinds:
        if kind == "anchor":
            views.append(z)
        elif kind == "neighbour":
            noise = truncated_normal(z.shape, recipe.truncate, generator).to(z)
            views.append(z + recipe.sigma * noise)
        else:
            views.append(steerer.flip(z, y, generator)[0].to(z))
    return rearrange(torch.stack(views), "v b d -> b v d")

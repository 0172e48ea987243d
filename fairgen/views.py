"""View recipes: how the V latents of one multiview sample are made from its anchor latent.

Kinds of view (any mix, at least two):

* ``"anchor"``: the anchor latent itself (the view differs only by augmentation);
* ``"neighbour"``: a gaussian latent neighbour ``z + sigma * w`` with ``w`` a standard normal
  truncated to ``[-truncate, truncate]`` (the paper's multiview positives; sigma 0.2–1.0);
* ``"flip"``: the anchor's counterfactual twin from an eraser card — protected value changed,
  class kept — so the positive pair disagrees exactly on the protected attribute;
* ``"sibling"``: a fresh, independent latent from N(0, I) with the anchor's class: another image
  of the same class or prompt (StableRep's multi-positives: several images of one caption);
* ``"renoise"``: a partial re-noising ``sqrt(1 - a) z + sqrt(a) e`` of the anchor with ``e`` from
  N(0, I) and ``a = renoise`` in (0, 1] (the diffusion analogue of a gaussian neighbour: for an
  initial noise ``z`` from N(0, I) the view stays exactly N(0, I), where ``z + sigma w`` grows);
* ``"walk"``: the anchor moved along ``walk_compose`` distinct learned walks from a walk card
  (zoom, shifts, rotation, hue, brightness), each with a uniform random alpha in its range (the
  paper's steered views); ``walk_transformations`` restricts the walks drawn from.

Views start from the (possibly steered) anchor, so steering and walks compose.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from einops import rearrange

from plumbing.validation import check_int, is_number

from .records import from_plain_dict

VIEW_KINDS = ("anchor", "neighbour", "sibling", "renoise", "flip", "walk")


@dataclass(frozen=True)
class ViewRecipe:
    """Which views to make (one entry per view), the neighbour noise, the re-noised share and the
    walks composed per walk view."""

    kinds: tuple[str, ...] = ("neighbour", "neighbour")
    sigma: float = 0.5
    truncate: float = 2.0
    walk_compose: int = 1
    walk_transformations: tuple[str, ...] | None = None
    renoise: float = 0.25

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
            if not is_number(value) or not value > 0:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not is_number(self.renoise) or not 0 < self.renoise <= 1:
            raise ValueError(f"renoise must be a number in (0, 1], got {self.renoise!r}")
        check_int(self.walk_compose, "walk_compose", 1)
        if self.walk_transformations is not None:
            names = self.walk_transformations
            if isinstance(names, str) or not names or not all(isinstance(t, str) for t in names):
                raise ValueError(
                    f"walk_transformations must be None or a non-empty list of names, got {names!r}"
                )
            object.__setattr__(self, "walk_transformations", tuple(names))
            if self.walk_compose > len(self.walk_transformations):
                raise ValueError(
                    f"walk_compose {self.walk_compose} exceeds the "
                    f"{len(self.walk_transformations)} "
                    "walk_transformations to choose from"
                )

    @property
    def num_views(self) -> int:
        return len(self.kinds)

    @property
    def needs_steerer(self) -> bool:
        return "flip" in self.kinds

    @property
    def needs_walks(self) -> bool:
        return "walk" in self.kinds

    def to_dict(self) -> dict:
        walks = None if self.walk_transformations is None else list(self.walk_transformations)
        data = {**asdict(self), "kinds": list(self.kinds), "walk_transformations": walks}
        if "renoise" not in self.kinds:  # cards without renoise views read as they always did
            del data["renoise"]
        return data

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


@dataclass
class ViewLatents:
    """View latents ``[B, V, d]``; with confirmed flips, which anchors got a confirmed twin in every
    'flip' view (``flip_confirmed [B]``; a missed anchor's flip view is the anchor itself)."""

    latents: torch.Tensor
    flip_confirmed: torch.Tensor | None = None

    @property
    def flip_missed(self) -> int:
        """Anchors without a confirmed twin (0 without confirmed flips)."""
        return 0 if self.flip_confirmed is None else int((~self.flip_confirmed).sum())


def make_view_latents(
    z: torch.Tensor,
    y: torch.Tensor,
    recipe: ViewRecipe,
    generator: torch.Generator,
    steerer=None,
    walks=None,
) -> torch.Tensor:
    """View latents ``[B, V, d]`` for anchors ``z [B, d]`` (classes ``y``), drawn with
    ``generator``.

    ``steerer`` (an eraser card's steerer) makes 'flip' views, ``walks``
    (``fairgen.walks.LatentWalks``)
    makes 'walk' views.
    """
    return make_views(z, y, recipe, generator, steerer, walks).latents


def make_views(
    z: torch.Tensor,
    y: torch.Tensor,
    recipe: ViewRecipe,
    generator: torch.Generator,
    steerer=None,
    walks=None,
    flipper=None,
) -> ViewLatents:
    """Like ``make_view_latents``; with ``flipper`` (``steering.ConfirmedFlipper``) 'flip' views are
    labeler-confirmed twins inside the prior, and the anchors without one are reported, not
    dropped."""
    if recipe.needs_steerer and steerer is None and flipper is None:
        raise ValueError(
            "the view recipe asks for 'flip' views, which need an eraser card (steerer)"
        )
    if recipe.needs_walks and walks is None:
        raise ValueError("the view recipe asks for 'walk' views, which need a walk card (walks)")
    views, confirmed = [], None
    for kind in recipe.kinds:
        if kind == "anchor":
            views.append(z)
        elif kind == "neighbour":
            noise = truncated_normal(z.shape, recipe.truncate, generator).to(z)
            views.append(z + recipe.sigma * noise)
        elif kind == "sibling":
            views.append(torch.randn(z.shape, generator=generator).to(z))
        elif kind == "renoise":
            noise = torch.randn(z.shape, generator=generator).to(z)
            a = recipe.renoise
            views.append(math.sqrt(1 - a) * z + math.sqrt(a) * noise)
        elif kind == "walk":
            views.append(
                walks.random_walk(z, y, generator, recipe.walk_compose, recipe.walk_transformations)
            )
        elif flipper is not None:
            flips = flipper(z, y, generator)
            views.append(flips.twins.to(z))
            confirmed = flips.confirmed if confirmed is None else confirmed & flips.confirmed
        else:
            views.append(steerer.flip(z, y, generator).latents.to(z))
    return ViewLatents(rearrange(torch.stack(views), "v b d -> b v d"), confirmed)

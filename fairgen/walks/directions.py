"""LatentWalks: learned linear walks ``z -> z + alpha * w[t, class]``, one per transformation.

A frozen module holding the directions ``[T, K, d]`` (``K = 1`` for one walk shared by every
class, ``K = num_classes`` for one walk per class), the transformation names and their alpha
ranges. ``move`` takes a given step along one walk; ``random_walk`` makes a walk view: it picks
``compose`` distinct transformations per sample and a uniform alpha in each one's range.
"""

from __future__ import annotations

import torch
from torch import nn

from .edits import check_alpha_range, check_transformation


class LatentWalks(nn.Module):
    def __init__(self, directions: torch.Tensor, transformations, alpha_ranges: dict):
        super().__init__()
        if (
            not isinstance(directions, torch.Tensor)
            or directions.ndim != 3
            or not directions.is_floating_point()
        ):
            raise ValueError(
                "directions must be a floating tensor [transformations, classes or 1, latent_dim]"
            )
        if not torch.isfinite(directions).all():
            raise ValueError("directions contain NaN or infinite values")
        names = tuple(check_transformation(t, "transformations") for t in transformations)
        if len(names) != len(directions) or len(set(names)) != len(names):
            raise ValueError(
                f"transformations must name each of the {len(directions)} directions once, got "
                f"{list(names)}"
            )
        missing = [t for t in names if t not in alpha_ranges]
        if missing:
            raise ValueError(f"alpha_ranges has no range for {missing}")
        self.transformations = names
        self.alpha_ranges = {t: check_alpha_range(t, alpha_ranges[t]) for t in names}
        self.register_buffer("directions", directions.detach().float().contiguous())

    @property
    def latent_dim(self) -> int:
        return self.directions.shape[2]

    @property
    def per_class(self) -> bool:
        return self.directions.shape[1] > 1

    def index(self, transformation: str) -> int:
        if transformation not in self.transformations:
            raise ValueError(
                f"transformation must be one of the walks {list(self.transformations)}, got "
                f"{transformation!r}"
            )
        return self.transformations.index(transformation)

    def _rows(self, t: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """The direction of walk ``t[i]`` for the class of sample ``i``: ``[N, d]``."""
        if not self.per_class:
            return self.directions[t, 0]
        if y is None:
            raise ValueError("these walks were learned per class: y (class indices) is required")
        return self.directions[t, y.to(self.directions.device)]

    def move(
        self, z: torch.Tensor, y: torch.Tensor | None, transformation: str, alpha: torch.Tensor
    ) -> torch.Tensor:
        """``z + alpha * w`` along the named walk (one alpha per row of ``z``)."""
        self._check_latents(z)
        t = torch.full(
            (len(z),), self.index(transformation), dtype=torch.long, device=self.directions.device
        )
        step = torch.as_tensor(alpha, dtype=torch.float32).reshape(-1, 1)
        if len(step) != len(z):
            raise ValueError(f"alpha must hold one step per latent ({len(z)}), got {len(step)}")
        return z + (step.to(self.directions) * self._rows(t, y)).to(z)

    def random_walk(
        self,
        z: torch.Tensor,
        y: torch.Tensor | None,
        generator: torch.Generator,
        compose: int = 1,
        among: tuple[str, ...] | None = None,
    ) -> torch.Tensor:
        """Each latent moved along ``compose`` distinct random walks with uniform random alphas.

        ``among`` restricts the walks to a subset of the transformations. All draws come from
        ``generator`` (a CPU generator keeps the stream the same on every device).
        """
        self._check_latents(z)
        names = self.transformations if among is None else tuple(among)
        choices = torch.tensor([self.index(t) for t in names])
        if not 1 <= compose <= len(choices):
            raise ValueError(
                f"compose must lie in [1, {len(choices)}] (the walks to choose from), got {compose}"
            )
        n = len(z)
        picks = torch.rand(n, len(choices), generator=generator).argsort(dim=1)[
            :, :compose
        ]  # distinct per row
        t = choices[picks]  # [n, compose]
        low = torch.tensor([self.alpha_ranges[name][0] for name in self.transformations])
        high = torch.tensor([self.alpha_ranges[name][1] for name in self.transformations])
        alpha = low[t] + (high[t] - low[t]) * torch.rand(n, compose, generator=generator)
        moved = z
        for k in range(compose):
            moved = moved + (
                alpha[:, k : k + 1].to(self.directions)
                * self._rows(t[:, k].to(self.directions.device), y)
            ).to(z)
        return moved

    def _check_latents(self, z) -> None:
        if not isinstance(z, torch.Tensor) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = list(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(
                f"z must be a tensor [n, {self.latent_dim}] (the walks' latent size), got {shape}"
            )

    def extra_repr(self) -> str:
        return (
            f"transformations={list(self.transformations)}, per_class={self.per_class}, "
            f"latent_dim={self.latent_dim}"
        )

"""The embedded default's mapping network: latent ``z [N, 128]`` -> independent uniform scene codes.

As in a GAN's mapping network, no coordinate of ``z`` is an attribute: ``z`` is rotated, each
code reads its own 18-d block of the rotated latent through a small residual tanh network
(random weights fixed at construction, like a mapping network at initialisation), and a learned
monotone calibration (the code's empirical CDF under the prior, fitted by Monte Carlo) makes each
code uniform. A code is a nonlinear function of 18 latent directions, so attributes are read off
curved level sets, not half-spaces. The blocks are disjoint, so the codes are independent under
the prior: a categorical factor read from one code keeps exactly the distribution the recipe fitted.
"""

from __future__ import annotations

import torch
from einops import einsum
from torch import nn

N_LEVELS = 1025  # calibration table: the code's quantiles at evenly spaced probabilities


class MappingNetwork(nn.Module):
    """``forward(z [N, d]) -> u [N, num_codes]`` in [0, 1]; differentiable almost everywhere."""

    def __init__(
        self,
        latent_dim: int = 128,
        num_codes: int = 7,
        hidden: int = 4,
        strength: float = 1.0,
        gain: float = 2.0,
        seed: int = 0,
    ):
        super().__init__()
        block = latent_dim // num_codes
        if block < 2:
            raise ValueError(
                f"latent_dim {latent_dim} is too small for {num_codes} codes (>= 2 dims each)"
            )
        rng = torch.Generator().manual_seed(seed)
        rotation = torch.linalg.qr(
            torch.randn(latent_dim, latent_dim, generator=rng, dtype=torch.float64)
        )[0]
        projection = rotation[: num_codes * block].reshape(num_codes, block, latent_dim)
        linear = torch.nn.functional.normalize(torch.randn(num_codes, block, generator=rng), dim=1)
        inner = gain * torch.nn.functional.normalize(
            torch.randn(num_codes, hidden, block, generator=rng), dim=2
        )
        self.register_buffer(
            "projection", projection.float()
        )  # [codes, block, d]: disjoint rows of a rotation
        self.register_buffer("linear", linear)  # [codes, block]
        self.register_buffer("inner", inner)  # [codes, hidden, block]
        self.register_buffer("bias", torch.randn(num_codes, hidden, generator=rng))
        self.register_buffer(
            "outer", strength * torch.randn(num_codes, hidden, generator=rng) / hidden**0.5
        )
        self.register_buffer("levels", torch.linspace(-4, 4, N_LEVELS).repeat(num_codes, 1))

    @property
    def num_codes(self) -> int:
        return self.projection.shape[0]

    def raw_codes(self, z: torch.Tensor) -> torch.Tensor:
        """The uncalibrated codes ``[N, num_codes]``: linear part plus a residual tanh layer per
        block."""
        v = einsum(self.projection, z.float(), "c b d, n d -> n c b")
        hidden = torch.tanh(einsum(self.inner, v, "c h b, n c b -> n c h") + self.bias)
        return einsum(self.linear, v, "c b, n c b -> n c") + einsum(
            self.outer, hidden, "c h, n c h -> n c"
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return _cdf(self.levels, self.raw_codes(z))

    @torch.no_grad()
    def calibrate(self, n: int = 1 << 18, seed: int = 0) -> None:
        """Fit each code's CDF table on ``n`` prior draws, so that ``forward`` outputs uniform
        codes."""
        z = torch.randn(n, self.projection.shape[2], generator=torch.Generator().manual_seed(seed))
        codes = self.raw_codes(z).double()
        probabilities = torch.linspace(0, 1, N_LEVELS, dtype=torch.float64)
        table = torch.quantile(codes.T.contiguous(), probabilities, dim=1).T
        self.levels.copy_(table.float())


def _cdf(levels: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear CDF per column: ``levels [codes, L]`` (sorted), ``values [N, codes]`` ->
    [0, 1]."""
    n_levels = levels.shape[1]
    index = torch.searchsorted(levels.contiguous(), values.T.contiguous()).clamp(
        1, n_levels - 1
    )  # [codes, N]
    low, high = levels.gather(1, index - 1), levels.gather(1, index)
    frac = ((values.T - low) / (high - low).clamp(min=1e-12)).clamp(0, 1)
    return (((index - 1) + frac) / (n_levels - 1)).T

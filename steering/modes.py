"""Class-conditional latent steering: erase, balance, or flip a protected attribute before synthesis.

In a class-conditional generator the class input carries the difference *between* classes and
``z`` the variation *within* a class, along directions that can differ from class to class; a
pooled z-space eraser leaves the stream's bias unchanged (measured, issue #4). So everything here
is fitted per class, from labelled samples of that class:

* ``erase``: a per-class LEACE eraser; the protected attribute becomes linearly unreadable from
  the latent within each class (its coordinate collapses to the class mean).
* ``balance``: each sample draws a protected value independently of its class and its latent is
  transported into that value's region, keeping everything else: along the class's attribute
  direction by the exact 1-D optimal-transport (quantile) map between the two groups
  (``method="quantile"``), or by the Gaussian optimal-transport map between the groups' Gaussian
  fits (``method="gaussian"``).
* ``flip``: the same transport to a *different* value gives counterfactual twins.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from torch import nn

from plumbing.validation import check_probabilities

from .leace import LeaceEraser
from .ot import gaussian_ot_map

MODES = ("erase", "balance", "flip")
METHODS = ("quantile", "gaussian")
N_LEVELS = 129
MIN_GROUP = 10  # fewer labelled samples than this and a (class, value) group cannot be a target


class LatentSteerer(nn.Module):
    """Fit from ``(latents [N, d], classes [N], protected [N])``; steer with ``forward(z, y, rng)``."""

    def __init__(self, mode: str = "balance", method: str = "quantile", target_distribution=None):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.mode, self.method = mode, method
        self.target_distribution = (
            None if target_distribution is None else list(map(float, target_distribution))
        )

    # ------------------------------------------------------------ fitting

    def fit(
        self,
        latents,
        classes,
        protected,
        num_classes: int | None = None,
        num_values: int | None = None,
    ):
        z = torch.as_tensor(np.asarray(latents), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(classes), dtype=torch.int64)
        a = torch.as_tensor(np.asarray(protected), dtype=torch.int64)
        if z.ndim != 2 or not (len(z) == len(y) == len(a)):
            raise ValueError(
                f"latents [N, d], classes [N] and protected [N] must agree, got {list(z.shape)}, {list(y.shape)}, {list(a.shape)}"
            )
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or infinite values")
        C = num_classes or int(y.max()) + 1
        K = num_values or int(a.max()) + 1
        if K < 2:
            raise ValueError("protected must take at least two values")
        d = z.shape[1]
        self._check_target_distribution(K)
        present = torch.zeros(C, K, dtype=torch.bool)
        probe_w, probe_b = torch.zeros(C, K, d), torch.full((C, K), -1e4)
        f64 = dict(dtype=torch.float64)
        direction, centre = torch.zeros(C, d, **f64), torch.zeros(C, d, **f64)
        levels = torch.zeros(C, K, N_LEVELS, **f64)
        means = torch.zeros(C, K, d, **f64)
        covs = rearrange(torch.eye(d, **f64), "a b -> 1 1 a b").repeat(C, K, 1, 1)
        erasers = []
        for c in range(C):
            zc, ac = z[y == c], a[y == c]
            counts = torch.bincount(ac, minlength=K)
            present[c] = counts >= MIN_GROUP
            if present[c].sum() < 2:
                erasers.append(None)
                continue
            w, b = _fit_probe(zc, ac, present[c])
            probe_w[c], probe_b[c] = w, b
            centre[c] = zc.mean(0)
            direction[c] = _main_direction(w[present[c]].double())
            t = (zc - centre[c]) @ direction[c]
            quantile_levels = torch.linspace(0, 1, N_LEVELS, dtype=torch.float64)
            for k in torch.nonzero(present[c]).flatten().tolist():
                group = zc[ac == k]
                levels[c, k] = torch.quantile(t[ac == k], quantile_levels)
                means[c, k] = group.mean(0)
                covs[c, k] = torch.cov(group.T) + 1e-4 * torch.eye(d, **f64)
            keep = present[c][ac]
            erasers.append(
                LeaceEraser().fit(zc[keep].float(), ac[keep]) if self.mode == "erase" else None
            )
        for name, value in dict(
            present=present,
            probe_w=probe_w,
            probe_b=probe_b,
            direction=direction.float(),
            centre=centre.float(),
            levels=levels.float(),
            means=means.float(),
            covs=covs.float(),
        ).items():
            self.register_buffer(name, value)
        if self.mode == "erase":
            self._erasers = nn.ModuleList([e if e is not None else nn.Identity() for e in erasers])
        self.num_classes_, self.num_values_, self.dim_ = C, K, d
        return self

    def _check_target_distribution(self, K: int) -> None:
        if self.target_distribution is not None:
            check_probabilities(self.target_distribution, "target_distribution", K)

    def _check_fitted(self):
        if not hasattr(self, "present"):
            raise NotFittedError(
                "this LatentSteerer is not fitted yet: call fit(latents, classes, protected)"
            )

    # ------------------------------------------------------------ steering

    def predict_protected(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The protected value each latent stands for, by its class's linear probe."""
        self._check_fitted()
        scores = torch.einsum("nkd,nd->nk", self.probe_w[y], z.float()) + self.probe_b[y]
        return scores.argmax(1)

    def forward(
        self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Steer latents according to ``mode`` (balance and flip draw values with ``generator``)."""
        self._check_fitted()
        if self.mode == "erase":
            out = z.clone()
            for c in torch.unique(y).tolist():
                mask = y == c
                out[mask] = self._erasers[c](z[mask].float()).to(z.dtype)
            return out
        if self.mode == "balance":
            return self.transport(z, y, self.draw_values(y, generator))
        return self.flip(z, y, generator)[0]

    def draw_values(
        self, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Protected values drawn independently of the class (uniform or ``target_distribution``)."""
        self._check_fitted()
        K = self.num_values_
        p = (
            torch.full((K,), 1.0 / K)
            if self.target_distribution is None
            else torch.tensor(self.target_distribution)
        )
        probs = (
            p.to(y.device)[None, :] * self.present[y].float()
        )  # a class lacking a value cannot reach it
        probs = probs / probs.sum(1, keepdim=True)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    def flip(self, z, y, generator=None, values=None):
        """Counterfactual twins: each latent moved to a different protected value (random unless given)."""
        self._check_fitted()
        current = self.predict_protected(z, y)
        if values is None:
            others = self.present[y].float()
            others[torch.arange(len(y)), current] = 0
            values = torch.multinomial(
                others.clamp(min=0) + 1e-12 * (others.sum(1, keepdim=True) == 0),
                1,
                generator=generator,
            ).squeeze(1)
        return self.transport(z, y, values, current), values

    def transport(self, z, y, values, current=None) -> torch.Tensor:
        """Move each latent from its current protected value's region into ``values``' region."""
        self._check_fitted()
        current = self.predict_protected(z, y) if current is None else current
        if not bool(self.present[y, values].all()):
            raise ValueError(
                "values asks for a protected value that a class never showed in the fitting sample"
            )
        if self.method == "gaussian":
            return self._gaussian_transport(z, y, current, values)
        w = self.direction[y]
        t = ((z.float() - self.centre[y]) * w).sum(1)
        rank = _cdf(self.levels[y, current], t)
        t_new = _quantile(self.levels[y, values], rank)
        moved = z.float() + rearrange(t_new - t, "n -> n 1") * w
        same = current == values
        return torch.where(same[:, None], z.float(), moved).to(z.dtype)

    def _gaussian_transport(self, z, y, current, values):
        out = z.float().clone()
        pairs = torch.unique(torch.stack([y, current, values], 1), dim=0).tolist()
        for c, a, b in pairs:
            if a == b:
                continue
            mask = (y == c) & (current == a) & (values == b)
            A, _ = gaussian_ot_map(
                self.means[c, a], self.covs[c, a], self.means[c, b], self.covs[c, b]
            )
            A = A.to(out)
            out[mask] = self.means[c, b] + (out[mask] - self.means[c, a]) @ A.T
        return out.to(z.dtype)

    def as_transform(self, seed: int = 0):
        """A ``transform(z, y)`` for labelling/streams, with its own seeded random draws."""
        rng = torch.Generator().manual_seed(seed)

        def transform(z, y):
            return self.forward(z.cpu(), y.cpu(), rng).to(z.device)

        return transform


def _fit_probe(z, a, present):
    """Per-class multinomial logistic probe of the protected value (rows for absent values: -inf)."""
    keep = present[a]
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(z[keep].numpy(), a[keep].numpy())
    K, d = len(present), z.shape[1]
    w, b = torch.zeros(K, d), torch.full((K,), -1e4)
    coef, intercept = (
        torch.tensor(clf.coef_, dtype=torch.float32),
        torch.tensor(clf.intercept_, dtype=torch.float32),
    )
    classes = torch.as_tensor(clf.classes_)
    if len(classes) == 2:  # sklearn's binary form: one row for the positive class
        coef, intercept = (
            torch.cat([-coef / 2, coef / 2]),
            torch.cat([-intercept / 2, intercept / 2]),
        )
    w[classes], b[classes] = coef, intercept
    return w, b


def _main_direction(weights):
    """The unit direction of the probe's subspace that separates the groups most.

    Probe normals locate sharp boundaries far better than differences of group means do (a
    minority group has few samples). The sign is arbitrary: positions and quantile tables are
    both measured along it.
    """
    _, _, vh = torch.linalg.svd(weights - weights.mean(0), full_matrices=False)
    return vh[0]


def _cdf(levels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rank of ``t`` in each row's quantile table, in [0, 1] (linear between levels)."""
    n_levels = levels.shape[1]
    idx = (
        torch.searchsorted(levels.contiguous(), t[:, None].contiguous())
        .squeeze(1)
        .clamp(1, n_levels - 1)
    )
    lo, hi = (
        levels.gather(1, (idx - 1)[:, None]).squeeze(1),
        levels.gather(1, idx[:, None]).squeeze(1),
    )
    frac = ((t - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return ((idx - 1) + frac) / (n_levels - 1)


def _quantile(levels: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Each row's quantile table evaluated at ``rank`` in [0, 1]."""
    n_levels = levels.shape[1]
    position = rank.clamp(0, 1) * (n_levels - 1)
    lo = position.floor().long().clamp(max=n_levels - 2)
    frac = position - lo
    low = levels.gather(1, lo[:, None]).squeeze(1)
    high = levels.gather(1, (lo + 1)[:, None]).squeeze(1)
    return low * (1 - frac) + high * frac

"""Gaussian optimal transport between two latent populations.

For Gaussians N(mu_a, cov_a) and N(mu_b, cov_b) the map that moves mass from a to b with the
least mean squared displacement (the Brenier map) is affine,

    T(x) = mu_b + A (x - mu_a),
    A = cov_a^{-1/2} (cov_a^{1/2} cov_b cov_a^{1/2})^{1/2} cov_a^{-1/2},

and A is symmetric positive semi-definite (T is the gradient of a convex function). In fairgen
it moves latents of one group onto the statistics of another (a counterfactual flip that keeps
each latent's place within the population) rather than erasing the attribute.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from .probes import check_latents


def _psd_sqrt(S: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """Symmetric square root (or inverse square root) of a symmetric PSD matrix, via eigh."""
    L, V = torch.linalg.eigh((S + S.T) / 2)
    L = L.clamp_min(0)
    root = L.sqrt()
    if inverse:
        root = torch.where(root > 0, 1 / root, torch.zeros_like(root))
    return (V * root) @ V.T


def _as64(t, name: str, shape: tuple[int, ...]) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(t) if not isinstance(t, torch.Tensor) else t).to(torch.float64)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def gaussian_ot_map(mu_a, cov_a, mu_b, cov_b, ridge: float = 1e-9):
    """Optimal transport map from N(mu_a, cov_a) to N(mu_b, cov_b) as (A, b): T(x) = A x + b.

    Equivalently T(x) = mu_b + A (x - mu_a), so b = mu_b - A mu_a. Both covariances get the
    same ridge (`ridge` times their mean variance) before the square roots, so a singular
    cov_a stays invertible and a == b still gives exactly the identity. Inputs may be numpy or
    torch; the outputs are float64 of the type of `mu_a`.
    """
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    d = int(np.shape(mu_a)[0]) if np.ndim(mu_a) == 1 else -1
    if d < 1:
        raise ValueError(f"mu_a must be a non-empty vector [d], got shape {tuple(np.shape(mu_a))}")
    ma, ca = _as64(mu_a, "mu_a", (d,)), _as64(cov_a, "cov_a", (d, d))
    mb, cb = _as64(mu_b, "mu_b", (d,)), _as64(cov_b, "cov_b", (d, d))
    scale = max(float(torch.trace(ca)), float(torch.trace(cb))) / d
    eps = ridge * (scale if scale > 0 else 1.0)  # two point masses: a plain translation
    eye = torch.eye(d, dtype=torch.float64)
    ca, cb = ca + eps * eye, cb + eps * eye
    ra, ra_inv = _psd_sqrt(ca), _psd_sqrt(ca, inverse=True)
    A = ra_inv @ _psd_sqrt(ra @ cb @ ra) @ ra_inv
    A = (A + A.T) / 2
    b = mb - A @ ma
    if isinstance(mu_a, torch.Tensor):
        return A, b
    return A.numpy(), b.numpy()


class GaussianFit:
    """Mean and covariance of latents [N, d] (float64 torch tensors `mean_`, `cov_`)."""

    def fit(self, X) -> GaussianFit:
        Xt = check_latents(X).to(torch.float64)
        if Xt.shape[0] < 2:
            raise ValueError(f"X needs at least 2 rows to estimate a covariance, got {Xt.shape[0]}")
        self.mean_ = Xt.mean(0)
        self.cov_ = torch.cov(Xt.T).reshape(Xt.shape[1], Xt.shape[1])
        self.n_samples_ = Xt.shape[0]
        return self

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw n latents from the fitted Gaussian (float64, on the fit's device)."""
        if not hasattr(self, "mean_"):
            raise NotFittedError("this GaussianFit is not fitted yet; call fit(X) first")
        noise = torch.randn(
            int(n),
            self.mean_.shape[0],
            generator=generator,
            dtype=torch.float64,
            device=self.mean_.device,
        )
        return self.mean_ + noise @ _psd_sqrt(self.cov_)


class GaussianOTMap(nn.Module):
    """The Gaussian OT map from a source population to a target one, as a frozen Module.

    fit(X_source, X_target) fits a Gaussian to each and stores A_ [d, d], b_ [d]; forward /
    transform apply T(x) = A x + b. Saved like the erasers: state_dict + config / from_state.
    """

    def __init__(self, ridge: float = 1e-9):
        super().__init__()
        self.ridge = float(ridge)
        self.register_buffer("A_", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("b_", torch.zeros(0, dtype=torch.float64))

    def fit(self, X_source, X_target) -> GaussianOTMap:
        a, b = GaussianFit().fit(X_source), GaussianFit().fit(X_target)
        if a.mean_.shape != b.mean_.shape:
            raise ValueError(
                f"X_source and X_target must have the same d, got {a.mean_.shape[0]} and {b.mean_.shape[0]}"
            )
        A, shift = gaussian_ot_map(
            a.mean_.cpu(), a.cov_.cpu(), b.mean_.cpu(), b.cov_.cpu(), ridge=self.ridge
        )
        self.A_, self.b_ = A.to(a.mean_.device), shift.to(a.mean_.device)
        return self

    def _check_fitted(self):
        if self.A_.numel() == 0:
            raise NotFittedError(
                "this GaussianOTMap is not fitted yet; call fit(X_source, X_target) first"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if x.shape[-1] != self.b_.shape[0]:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the map was fitted on d={self.b_.shape[0]}"
            )
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        out = work @ self.A_.to(work).T + self.b_.to(work)
        return out.to(x.dtype)

    def transform(self, X):
        self._check_fitted()
        Xt = check_latents(X, d=int(self.b_.shape[0]))
        with torch.no_grad():
            out = self.forward(Xt)
        return out if isinstance(X, torch.Tensor) else out.cpu().numpy()

    def config(self) -> dict:
        return {"type": type(self).__name__, "params": {"ridge": self.ridge}, "info": {}}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: dict) -> GaussianOTMap:
        if config.get("type", cls.__name__) != cls.__name__:
            raise ValueError(f"config describes a {config.get('type')!r}, not a {cls.__name__!r}")
        if "A_" not in state or "b_" not in state:
            raise ValueError("state must hold 'A_' and 'b_' from state_dict()")
        A, b = state["A_"], state["b_"]
        if A.ndim != 2 or b.ndim != 1 or A.shape != (b.shape[0], b.shape[0]):
            raise ValueError(
                f"state 'A_' must be [d, d] and 'b_' [d], got {tuple(A.shape)} and {tuple(b.shape)}"
            )
        obj = cls(**config.get("params", {}))
        obj.A_, obj.b_ = A.to(torch.float64).clone(), b.to(torch.float64).clone()
        return obj

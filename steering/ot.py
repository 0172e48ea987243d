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

"""Conditional erasure: remove a protected attribute but keep a named target readable.

When the protected direction g is correlated with a target direction a (say, background
texture and object class in a biased world), projecting g out also removes part of a and the
downstream task suffers. Following the g-perp-a construction of latent-space de-biasing
(Ramaswamy et al., CVPR 2021), we first orthogonalise the protected subspace against the
target subspace A and remove only that part:

    G_perp = G - G A^T A,   x' = x - (x - mu) Q^T Q,   Q = orthonormal basis of G_perp.

Guarantee: the edit is orthogonal to A, so every linear score along A — in particular the
target probe's decision function — is unchanged, exactly. The trade-off: whatever of the
protected attribute is carried *inside* the target subspace stays (`protected_in_keep_`
reports how much of the protected subspace lies there, 0 = none, 1 = all); a protected probe
drops to the accuracy that the target coordinates alone allow, not necessarily to chance.
"""

from __future__ import annotations

import numpy as np

from .probes import check_labels, check_latents, orthonormal_rows, to_numpy64
from .projection import ERASER_KINDS, AffineEraser, probe_subspace


class ConditionalEraser(AffineEraser):
    """Remove `protected` while keeping `keep` (see module docstring).

    protected: name of the protected attribute (recorded in the card). keep: name, or list of
    names, of the target attribute(s) to preserve. kind, C, max_iter: how the directions of
    each attribute are found ("logreg", "svm" probes, or "means" for class-mean differences).

    After `fit`: `protected_subspace_` [rp, d], `keep_subspace_` [rk, d] (orthonormal, numpy)
    and `protected_in_keep_`, the share of the protected subspace inside the kept one.
    """

    def __init__(
        self,
        protected: str = "protected",
        keep: str | list[str] = "target",
        kind: str = "logreg",
        C: float = 1.0,
        max_iter: int = 1000,
    ):
        super().__init__()
        if kind not in ERASER_KINDS:
            raise ValueError(f"kind must be one of {ERASER_KINDS}, got {kind!r}")
        self.protected = str(protected)
        self.keep = keep if isinstance(keep, str) else [str(k) for k in keep]
        self.kind = kind
        self.C = float(C)
        self.max_iter = int(max_iter)

    def fit(self, X, y_protected, y_keep) -> ConditionalEraser:
        """X [N, d]; y_protected [N] ints; y_keep [N] ints, or [N, m] for m kept attributes."""
        Xt = check_latents(X)
        n = Xt.shape[0]
        y_p = check_labels(y_protected, n, name="y_protected")
        y_keep = y_keep.detach().cpu().numpy() if hasattr(y_keep, "detach") else np.asarray(y_keep)
        columns = [y_keep] if y_keep.ndim == 1 else list(y_keep.T) if y_keep.ndim == 2 else None
        if columns is None:
            raise ValueError(
                f"y_keep must be [N] or [N, m] integer labels, got shape {y_keep.shape}"
            )
        if isinstance(self.keep, list) and len(self.keep) != len(columns):
            raise ValueError(
                f"keep names {len(self.keep)} attributes but y_keep has {len(columns)} column(s)"
            )
        columns = [check_labels(c, n, name="y_keep") for c in columns]
        X = to_numpy64(Xt)
        G = probe_subspace(X, y_p, self.kind, self.C, self.max_iter)
        A = orthonormal_rows(
            np.vstack([probe_subspace(X, c, self.kind, self.C, self.max_iter) for c in columns])
        )
        G_perp = G - G @ A.T @ A
        Q = orthonormal_rows(G_perp, atol=1e-6)
        self._set_state(X.mean(axis=0), Q.T, Q, device=Xt.device)
        self.protected_subspace_, self.keep_subspace_ = G, A
        self.protected_in_keep_ = float(np.linalg.norm(G @ A.T) ** 2 / max(G.shape[0], 1))
        self.classes_ = np.unique(y_p)
        self.n_samples_ = n
        return self

    def fit_transform(self, X, y_protected, y_keep):
        return self.fit(X, y_protected, y_keep).transform(X)

    def _info(self) -> dict:
        info = super()._info()
        if hasattr(self, "protected_in_keep_"):
            info["protected_in_keep"] = self.protected_in_keep_
        return info

    def _set_info(self, info: dict) -> None:
        super()._set_info(info)
        if "protected_in_keep" in info:
            self.protected_in_keep_ = float(info["protected_in_keep"])

"""Projection erasers: remove a probe's directions, keeping the latent's mean along them.

The InterFaceGAN-style eraser (fit a probe, then collapse the latent's coordinate along each probe
direction to its mean rather than to zero, which would move every latent towards the origin when
the latent space is not centred), and the orthogonal eraser of the class-mean differences. A
baseline: the tests show where LEACE improves on it.
"""

from __future__ import annotations

import numpy as np

from plumbing.validation import check_labels, check_latents

from ..affine import AffineEraser
from ..probes import orthonormal_rows, to_numpy64
from .probes import PROBE_KINDS, LinearProbe


def mean_difference_subspace(X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Orthonormal basis [k - 1, d] of the class-mean differences (the span of
    Cov(x, onehot(y)))."""
    classes = np.unique(y)
    centroids = np.stack([X[y == c].mean(axis=0) for c in classes])
    return orthonormal_rows(centroids - X.mean(axis=0), rtol=1e-10)


def probe_subspace(X: np.ndarray, y: np.ndarray, kind: str, C: float, max_iter: int) -> np.ndarray:
    """Orthonormal basis of the directions that carry `y`: a probe's normals, or class means."""
    if kind == "means":
        return mean_difference_subspace(X, y)
    return LinearProbe(kind=kind, C=C, max_iter=max_iter).fit(X, y).subspace_


ERASER_KINDS = (*PROBE_KINDS, "means")


class ProjectionEraser(AffineEraser):
    """Project out a probe's subspace, collapsing the latent to its mean along it.

    x' = x - (x - mu) P with P = Q^T Q the orthogonal projector onto the probe subspace Q.

    kind: "logreg" or "svm" (the probe's normals, InterFaceGAN style), or "means" (the span of
    the class-mean differences: the *orthogonal* eraser that provably zeroes the
    cross-covariance with the labels, the baseline LEACE improves on). A probe normal is not
    the mean difference when the latent is anisotropic, so "logreg"/"svm" may leave linear
    information behind; use `steering.LeaceEraser` when that matters.
    """

    def __init__(self, kind: str = "logreg", C: float = 1.0, max_iter: int = 1000):
        super().__init__()
        if kind not in ERASER_KINDS:
            raise ValueError(f"kind must be one of {ERASER_KINDS}, got {kind!r}")
        self.kind = kind
        self.C = float(C)
        self.max_iter = int(max_iter)

    def fit(self, X, y) -> ProjectionEraser:
        Xt = check_latents(X)
        y = check_labels(y, Xt.shape[0])
        X = to_numpy64(Xt)
        Q = probe_subspace(X, y, self.kind, self.C, self.max_iter)
        self._set_state(X.mean(axis=0), Q.T, Q, device=Xt.device)
        self.classes_ = np.unique(y)
        self.n_samples_ = X.shape[0]
        return self

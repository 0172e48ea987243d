"""A small nonlinear probe on latents (what a fitted steerer leaves for a classifier to read),
and the numeric helpers probes and erasers share.

A probe is a classifier trained on raw latents to predict a label; its accuracy says how much of
the attribute is readable. The linear probe, whose normals say *where*, is a baseline
(`steering.baselines.LinearProbe`).
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.metrics import balanced_accuracy_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from plumbing.validation import check_labels, check_latents


def to_numpy64(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of a tensor (on the CPU), for scikit-learn."""
    return t.detach().to("cpu", torch.float64).numpy()


def orthonormal_rows(D: np.ndarray, rtol: float = 1e-8, atol: float = 0.0) -> np.ndarray:
    """An orthonormal basis `[r, d]` of the row space of `D`.

    Computed with an SVD so that (nearly) dependent rows give a smaller rank instead of noise:
    singular values below `rtol * largest` or below `atol` are dropped.
    """
    D = np.asarray(D, dtype=np.float64)
    if D.size == 0:
        return np.zeros((0, D.shape[-1]))
    _, s, vt = np.linalg.svd(D, full_matrices=False)
    keep = (s > rtol * s.max()) & (s > max(atol, np.finfo(np.float64).tiny))
    return vt[keep]


def _classification_scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    counts = np.unique(y_true, return_counts=True)[1]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # y_pred may contain classes absent in y_true
        bal = balanced_accuracy_score(y_true, y_pred)
    return {
        "accuracy": float(np.mean(y_true == y_pred)),
        "balanced_accuracy": float(bal),
        "majority": float(counts.max() / counts.sum()),
    }


# ---------------------------------------------------------------------------------------------
# probes


class MLPProbe:
    """A small MLP probe, to measure what a *linear* eraser leaves behind (nonlinear leakage).

    Inputs are standardised inside the probe (it helps the optimiser and, unlike for the
    linear probes, there are no directions to report). Same `fit` / `score` as `LinearProbe`.
    """

    def __init__(
        self,
        hidden: tuple[int, ...] = (64,),
        alpha: float = 1e-4,
        max_iter: int = 300,
        random_state: int = 0,
    ):
        hidden = tuple(int(h) for h in hidden)
        if not hidden or min(hidden) < 1:
            raise ValueError(
                f"hidden must be a non-empty tuple of positive layer widths, got {hidden}"
            )
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.hidden = hidden
        self.alpha = float(alpha)
        self.max_iter = int(max_iter)
        self.random_state = random_state

    def fit(self, X, y) -> MLPProbe:
        Xt = check_latents(X)
        y = check_labels(y, Xt.shape[0])
        mlp = MLPClassifier(
            hidden_layer_sizes=self.hidden,
            alpha=self.alpha,
            max_iter=self.max_iter,
            random_state=self.random_state,
        )
        self.model_ = make_pipeline(StandardScaler(), mlp)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.model_.fit(to_numpy64(Xt), y)
        self.classes_ = mlp.classes_
        self.n_features_in_ = Xt.shape[1]
        return self

    def predict(self, X) -> np.ndarray:
        if not hasattr(self, "model_"):
            raise NotFittedError("this MLPProbe is not fitted yet; call fit(X, y) first")
        return self.model_.predict(to_numpy64(check_latents(X, d=self.n_features_in_)))

    def score(self, X, y) -> dict[str, float]:
        pred = self.predict(X)
        return _classification_scores(check_labels(y, pred.shape[0], min_classes=1), pred)

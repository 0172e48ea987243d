"""Linear probes on latents: a classifier whose normals say where an attribute is read from.

A baseline (the projection eraser is built on it, and the tests measure LEACE against both). No
`StandardScaler` is used, so the normals live in the latent space itself, and an intercept is
always fitted because latent spaces need not be centred.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from plumbing.validation import check_labels, check_latents

from ..probes import MLPProbe, _classification_scores, orthonormal_rows, to_numpy64

PROBE_KINDS = ("logreg", "svm")


class LinearProbe:
    """A linear classifier on raw latents whose normals are the attribute's directions.

    kind: "logreg" (multinomial logistic regression, L2) or "svm" (linear SVM, one-vs-rest).
    C: inverse regularisation strength. max_iter: solver iterations.

    After `fit`: `classes_`, `coef_` [k or 1, d], `intercept_`, `directions_` (unit-norm
    probe normals [r, d]: one row for two classes; k rows for k > 2, mean-removed for the
    multinomial logreg whose k normals are only defined up to a shared vector, so they span
    k - 1 dimensions), and `subspace_`, an orthonormal basis of their span.
    """

    def __init__(
        self, kind: str = "logreg", C: float = 1.0, max_iter: int = 1000, random_state: int = 0
    ):
        if kind not in PROBE_KINDS:
            raise ValueError(f"kind must be one of {PROBE_KINDS}, got {kind!r}")
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        if int(max_iter) < 1:
            raise ValueError(f"max_iter must be >= 1, got {max_iter}")
        self.kind = kind
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.random_state = random_state

    def _make(self):
        if self.kind == "logreg":
            return LogisticRegression(
                C=self.C, max_iter=self.max_iter, random_state=self.random_state
            )
        return LinearSVC(
            C=self.C, max_iter=self.max_iter, dual="auto", random_state=self.random_state
        )

    def fit(self, X, y) -> LinearProbe:
        Xt = check_latents(X)
        y = check_labels(y, Xt.shape[0])
        X = to_numpy64(Xt)
        model = self._make()
        with warnings.catch_warnings():
            # Near-separable latents make the solvers run to max_iter; the normal is still usable.
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        self.model_ = model
        self.classes_ = model.classes_
        self.n_features_in_ = X.shape[1]
        self.coef_ = np.asarray(model.coef_, dtype=np.float64)
        self.intercept_ = np.asarray(model.intercept_, dtype=np.float64)
        D = self.coef_
        if D.shape[0] > 1 and self.kind == "logreg":
            D = D - D.mean(axis=0, keepdims=True)
        norms = np.linalg.norm(D, axis=1, keepdims=True)
        self.directions_ = D / np.where(norms > 0, norms, 1.0)
        self.subspace_ = orthonormal_rows(self.directions_)
        return self

    def _check_fitted(self):
        if not hasattr(self, "model_"):
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(X, y) first"
            )

    def decision_function(self, X) -> np.ndarray:
        self._check_fitted()
        return self.model_.decision_function(to_numpy64(check_latents(X, d=self.n_features_in_)))

    def predict(self, X) -> np.ndarray:
        self._check_fitted()
        return self.model_.predict(to_numpy64(check_latents(X, d=self.n_features_in_)))

    def score(self, X, y) -> dict[str, float]:
        """accuracy, balanced_accuracy and the majority-class rate of `y` (the trivial baseline)."""
        self._check_fitted()
        Xt = check_latents(X, d=self.n_features_in_)
        y = check_labels(y, Xt.shape[0], min_classes=1)
        return _classification_scores(y, self.model_.predict(to_numpy64(Xt)))


def probe_report(X_train, y_train, X_test, y_test, kind: str = "logreg", **probe_kwargs) -> dict:
    """Fit a probe on the training split and score it on both splits, as one flat dict.

    kind: "logreg", "svm" (a `LinearProbe`) or "mlp" (an `MLPProbe`). The test scores are the
    headline (accuracy, balanced_accuracy, majority); `train_accuracy` shows overfitting.
    """
    if kind in PROBE_KINDS:
        probe = LinearProbe(kind=kind, **probe_kwargs)
    elif kind == "mlp":
        probe = MLPProbe(**probe_kwargs)
    else:
        raise ValueError(f"kind must be one of {PROBE_KINDS + ('mlp',)}, got {kind!r}")
    probe.fit(X_train, y_train)
    test = probe.score(X_test, y_test)
    return {
        "kind": kind,
        **test,
        "train_accuracy": probe.score(X_train, y_train)["accuracy"],
        "n_train": int(len(y_train)),
        "n_test": int(len(y_test)),
    }

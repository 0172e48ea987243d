"""Linear (and small nonlinear) probes on latents: where does an attribute live?

A probe is a classifier trained on raw latents to predict a label. Its accuracy says how much
of the attribute is linearly readable; its normals (`directions_`) say *where* it is read from,
and the erasers in this package remove those directions. No `StandardScaler` is used for the
linear probes, so the normals live in the latent space itself (not a rescaled copy of it), and
an intercept is always fitted because latent spaces need not be centred.

The input checks shared by every estimator in `steering` live here too: they turn numpy or
torch input into a validated array and raise a `ValueError` naming the argument otherwise.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning, NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

PROBE_KINDS = ("logreg", "svm")


# ---------------------------------------------------------------------------------------------
# input checks shared by probes and erasers


def check_latents(X, name: str = "X", d: int | None = None) -> torch.Tensor:
    """Validate latents `[N, d]` (numpy or torch) and return them as a floating torch tensor.

    The tensor keeps its device; integer input becomes float64; float16/bfloat16 stay as given.
    Raises `ValueError` for wrong rank, empty input, a dimension other than `d`, or NaN/inf.
    """
    if isinstance(X, torch.Tensor):
        t = X
    else:
        try:
            t = torch.from_numpy(np.ascontiguousarray(np.asarray(X)))
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"{name} must be a numeric array or tensor [N, d]; got {type(X).__name__}"
            ) from err
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float64)
    if t.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D [N, d] (one latent per row), got shape {tuple(t.shape)}"
        )
    if t.shape[0] == 0 or t.shape[1] == 0:
        raise ValueError(
            f"{name} must have at least one row and one column, got shape {tuple(t.shape)}"
        )
    if d is not None and t.shape[1] != d:
        raise ValueError(f"{name} has {t.shape[1]} columns but this estimator was fitted on d={d}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return t


def check_labels(y, n: int, name: str = "y", min_classes: int = 2) -> np.ndarray:
    """Validate integer class labels `[n]` (numpy, torch or list) and return them as int64 numpy.

    Float labels are accepted when every value is a whole number (some labelers emit floats).
    Raises `ValueError` for a wrong shape or length, non-integral values, or fewer than
    `min_classes` distinct classes.
    """
    if isinstance(y, torch.Tensor):
        y = y.detach().cpu().numpy()
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D integer class labels [N], got shape {y.shape}")
    if y.shape[0] != n:
        raise ValueError(f"X has {n} rows but {name} has {y.shape[0]} labels; they must match")
    if y.dtype == bool:
        y = y.astype(np.int64)
    elif np.issubdtype(y.dtype, np.floating):
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError(f"{name} must hold integer class labels, got non-integral values")
        y = y.astype(np.int64)
    elif not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    y = y.astype(np.int64, copy=False)
    n_classes = np.unique(y).size
    if n_classes < min_classes:
        raise ValueError(
            f"{name} has {n_classes} distinct class(es); at least {min_classes} are needed to fit"
        )
    return y


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

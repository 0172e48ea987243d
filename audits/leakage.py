"""Leakage: how well a probe recovers a protected attribute from features, with honest error bars.

A representation "leaks" an attribute when a probe trained on part of the data predicts it on the
rest better than chance. We report balanced accuracy (so a skewed attribute cannot look leaky by
guessing its majority value) from repeated stratified k-fold cross-validation, with
  * a bootstrap 95% CI over the out-of-fold predictions (sampling variation of the evaluated rows),
  * a permutation-test p-value: the whole fit-and-score procedure rerun on shuffled labels.
Preprocessing (standardising, optional PCA) is fitted inside each training fold, never on held-out
rows, so nothing about the test fold leaks into the probe.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from ._checks import as_features, as_labels, check_positive_int, encode, percentile_ci

PROBES = ("linear", "mlp")


@dataclass(frozen=True)
class LeakageResult:
    """What a leakage probe found. `leaks` is the verdict: p <= alpha and the CI sits above chance.

    p <= alpha (not <) is the right rule for p = (1 + b) / (1 + m): under no leakage it still
    happens with probability at most alpha, and 19 permutations can then reach alpha = 0.05.
    """

    probe: str
    n_samples: int
    n_features: int
    n_classes: int
    balanced_accuracy: float  # mean over repeats of out-of-fold balanced accuracy
    ci_low: float
    ci_high: float
    accuracy: float  # plain accuracy, to compare with majority_accuracy
    chance: float  # balanced accuracy of any label-blind guess: 1 / n_classes
    majority_accuracy: float  # plain accuracy of always guessing the most common value
    p_value: float
    alpha: float
    n_splits: int
    n_repeats: int
    n_permutations: int
    n_bootstrap: int
    repeat_scores: tuple[float, ...]
    permutation_scores: tuple[float, ...]

    @property
    def leaks(self) -> bool:
        return bool(self.p_value <= self.alpha and self.ci_low > self.chance)

    def to_dict(self) -> dict:
        out = asdict(self)
        out["repeat_scores"] = list(self.repeat_scores)
        out["permutation_scores"] = list(self.permutation_scores)
        out["leaks"] = self.leaks
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row of the headline numbers (no per-repeat or permutation lists)."""
        row = {k: v for k, v in self.to_dict().items() if not isinstance(v, list)}
        return pd.DataFrame([row])


def leakage(
    features,
    protected,
    probe="linear",
    *,
    n_splits: int = 5,
    n_repeats: int = 3,
    n_permutations: int = 99,
    n_bootstrap: int = 1000,
    pca: int | float | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    max_iter: int = 1000,
) -> LeakageResult:
    """Cross-validated balanced accuracy of predicting `protected` [N] from `features` [N, d].

    probe: "linear" (logistic regression), "mlp" (one hidden layer of 64), or any unfitted
        scikit-learn classifier (used as given, cloned per fold; no scaler is added).
    pca: if set, PCA(n_components=pca) after the scaler, fitted inside each fold.
    n_permutations: refits on shuffled labels for the p-value; the smallest reachable p is
        1 / (1 + n_permutations), so p <= 0.01 needs 99 or more. Each permutation reruns
        the first repetition's folds, and the observed score it is compared with is that same
        repetition's score, so observed and null come from one identical procedure.
    Multiclass attributes are fine; chance is then 1 / k.
    """
    x = as_features(features, "features")
    y_raw = as_labels(protected, "protected", n=x.shape[0])
    n_splits = check_positive_int(n_splits, "n_splits", minimum=2)
    n_repeats = check_positive_int(n_repeats, "n_repeats")
    n_permutations = check_positive_int(n_permutations, "n_permutations", minimum=0)
    n_bootstrap = check_positive_int(n_bootstrap, "n_bootstrap")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    _, y = encode(y_raw, "protected", min_count=max(2, n_splits))
    k = int(y.max()) + 1
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    model = _make_probe(probe, pca, seed, len(y), int(np.bincount(y).min()), max_iter)

    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    folds = list(cv.split(x, y))
    repeats = [folds[r * n_splits : (r + 1) * n_splits] for r in range(n_repeats)]

    # Probe fits are small: extra BLAS threads only fight each other (10x slower on a busy box).
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # Probes on weak or shuffled signal often stop at max_iter; the score is still valid.
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = _FoldCache(model, x, repeats[0])
        preds = [first.predict(y)] + [_FoldCache(model, x, rep).predict(y) for rep in repeats[1:]]
        rng = np.random.default_rng(seed)
        perm_scores = np.empty(n_permutations)
        for i in range(n_permutations):
            shuffled = rng.permutation(y)
            perm_scores[i] = _balanced_accuracy(shuffled, first.predict(shuffled), k)

    preds = np.stack(preds)  # [n_repeats, N]
    repeat_scores = np.array([_balanced_accuracy(y, p, k) for p in preds])
    # p = (1 + #{null >= observed}) / (1 + n_perm); undefined (NaN) without permutations.
    p_value = float((1 + np.sum(perm_scores >= repeat_scores[0])) / (1 + n_permutations))
    if n_permutations == 0:
        p_value = float("nan")
    boot = _bootstrap_balanced_accuracy(y, preds, k, n_bootstrap, rng)
    ci_low, ci_high = percentile_ci(boot)
    counts = np.bincount(y, minlength=k)

    return LeakageResult(
        probe=probe if isinstance(probe, str) else type(probe).__name__,
        n_samples=int(x.shape[0]),
        n_features=int(x.shape[1]),
        n_classes=k,
        balanced_accuracy=float(repeat_scores.mean()),
        ci_low=ci_low,
        ci_high=ci_high,
        accuracy=float((preds == y).mean()),
        chance=1.0 / k,
        majority_accuracy=float(counts.max() / counts.sum()),
        p_value=p_value,
        alpha=float(alpha),
        n_splits=n_splits,
        n_repeats=n_repeats,
        n_permutations=n_permutations,
        n_bootstrap=n_bootstrap,
        repeat_scores=tuple(float(s) for s in repeat_scores),
        permutation_scores=tuple(float(s) for s in perm_scores),
    )


def _make_probe(probe, pca, seed, n_samples: int, smallest_class: int, max_iter: int = 1000) -> Pipeline:
    if isinstance(probe, str):
        if probe == "linear":
            clf = LogisticRegression(max_iter=max_iter)
        elif probe == "mlp":
            # lbfgs suits small sets (it fits XOR-like signal adam-with-early-stopping misses);
            # from 2000 rows, adam with early stopping on 10% of the training fold is cheaper.
            big = n_samples >= 2000 and smallest_class >= 50
            clf = MLPClassifier(
                hidden_layer_sizes=(64,),
                alpha=1e-3,
                solver="adam" if big else "lbfgs",
                early_stopping=big,
                max_iter=200,
                random_state=seed,
            )
        else:
            raise ValueError(
                f"probe must be one of {PROBES} or a scikit-learn classifier, got {probe!r}"
            )
        steps = [StandardScaler()]
        if pca is not None:
            steps.append(PCA(n_components=pca, random_state=seed))
        return make_pipeline(*steps, clf)
    if not (hasattr(probe, "fit") and hasattr(probe, "predict")):
        raise ValueError(
            f"probe must be one of {PROBES} or a scikit-learn classifier, got {probe!r}"
        )
    if pca is not None:
        return make_pipeline(PCA(n_components=pca, random_state=seed), probe)
    return make_pipeline(probe)


class _FoldCache:
    """One repetition's folds with the label-free steps (scaler, PCA) fitted once per training fold.

    Those steps never see labels, so reusing them across permutations is exactly the same
    procedure as refitting the whole pipeline; only the classifier is refitted per labeling.
    """

    def __init__(self, model: Pipeline, x: np.ndarray, folds):
        self.final = model.steps[-1][1]
        self.folds = []
        for train, test in folds:
            if len(model.steps) > 1:
                pre = clone(model[:-1]).fit(x[train])
                self.folds.append((train, test, pre.transform(x[train]), pre.transform(x[test])))
            else:
                self.folds.append((train, test, x[train], x[test]))

    def predict(self, y: np.ndarray) -> np.ndarray:
        """Out-of-fold predictions of a classifier refitted on labels y."""
        pred = np.empty_like(y)
        for train, test, x_train, x_test in self.folds:
            pred[test] = clone(self.final).fit(x_train, y[train]).predict(x_test)
        return pred


def _balanced_accuracy(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean per-class recall over the classes present in `truth`."""
    totals = np.bincount(truth, minlength=k)
    hits = np.bincount(truth[pred == truth], minlength=k)
    present = totals > 0
    return float(np.mean(hits[present] / totals[present]))


def _bootstrap_balanced_accuracy(y, preds, k, n_bootstrap, rng, max_cells: int = 4_000_000):
    """Balanced accuracy (mean over repeats) on rows resampled with replacement, vectorised."""
    n = y.shape[0]
    out = np.empty(n_bootstrap)
    chunk = max(1, max_cells // n)
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = rng.integers(0, n, size=(b, n))
        yb = y[idx]
        keys = yb + k * np.arange(b)[:, None]
        totals = np.bincount(keys.ravel(), minlength=b * k).reshape(b, k).astype(np.float64)
        score = np.zeros(b)
        for pred in preds:
            hits = np.bincount(keys[pred[idx] == yb], minlength=b * k).reshape(b, k)
            with np.errstate(invalid="ignore", divide="ignore"):
                score += np.nanmean(np.where(totals > 0, hits / totals, np.nan), axis=1)
        out[start : start + b] = score / len(preds)
    return out

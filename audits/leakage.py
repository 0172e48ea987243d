"""Leakage: how well a probe recovers a protected attribute from features, with honest error bars.

A representation "leaks" an attribute when a probe trained on part of the data predicts it on the
rest better than chance. We report balanced accuracy (so a skewed attribute cannot look leaky by
guessing its majority value) from repeated stratified k-fold cross-validation, with
  * a 95% CI from the corrected resampled t over the fold scores (``audits.intervals``), which
    accounts for refitting the probe on overlapping training rows, not only for which rows were
    evaluated,
  * a permutation-test p-value: the whole fit-and-score procedure rerun on shuffled labels.
Preprocessing (standardising, optional PCA) is fitted inside each training fold, never on held-out
rows, so nothing about the test fold leaks into the probe.

Speed: the label-free steps are fitted once per fold and shared by every permutation. The "lda"
probe (a linear discriminant with equal priors) is closed form: per fold, one Cholesky factor of
the training covariance serves every labeling, so a permutation costs a few matrix products,
batched over permutations. Other probes refit per permutation, in ``n_jobs`` threads.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from scipy.linalg import cho_factor, cho_solve
from sklearn.base import clone
from sklearn.decomposition import PCA
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import RepeatedStratifiedKFold
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from plumbing.validation import as_features, as_labels, check_int, encode

from .intervals import corrected_cv_interval

PROBES = ("linear", "lda", "mlp")
CI_METHOD = "corrected resampled t over fold scores (Nadeau & Bengio 2003)"


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
    seed: int
    ci_method: str
    repeat_scores: tuple[float, ...]
    fold_scores: tuple[float, ...]
    permutation_scores: tuple[float, ...]
    values: tuple = ()  # the attribute's values, in code order

    @property
    def leaks(self) -> bool:
        return bool(self.p_value <= self.alpha and self.ci_low > self.chance)

    @property
    def p_floor(self) -> float:
        """The smallest p-value the permutation test can give: 1 / (permutations + 1)."""
        return 1.0 / (self.n_permutations + 1)

    @property
    def conclusive(self) -> bool:
        """Whether "no leakage detected" could be said: the test can reach its level at all."""
        return self.n_permutations > 0 and self.p_floor <= self.alpha

    @property
    def verdict(self) -> str:
        """ "leaks", "no leakage detected", or "inconclusive: ..." when too few permutations were
        run
        for any p-value to fall to ``alpha`` (then not finding leakage says nothing)."""
        if self.leaks:
            return "leaks"
        if self.n_permutations == 0:
            return "inconclusive: no permutation test was run"
        if not self.conclusive:
            needed = math.ceil(1 / self.alpha - 1 - 1e-9)
            return (
                f"inconclusive: with {self.n_permutations} permutations the smallest possible p is "
                f"{self.p_floor:.3g} > alpha {self.alpha:g}; run at least {needed}"
            )
        return "no leakage detected"

    def to_dict(self) -> dict:
        out = asdict(self)
        for key in ("repeat_scores", "fold_scores", "permutation_scores", "values"):
            out[key] = [v.item() if hasattr(v, "item") else v for v in getattr(self, key)]
        out["leaks"] = self.leaks
        out["p_floor"] = self.p_floor
        out["verdict"] = self.verdict
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
    pca: int | float | None = None,
    alpha: float = 0.05,
    seed: int = 0,
    max_iter: int = 1000,
    n_jobs: int = 1,
    progress: bool = False,
) -> LeakageResult:
    """Cross-validated balanced accuracy of predicting `protected` [N] from `features` [N, d].

    probe: "linear" (logistic regression), "lda" (closed-form linear discriminant, equal priors,
        ridge 1e-3 on the standardised covariance; by far the fastest with permutations), "mlp"
        (one hidden layer of 64), or any unfitted scikit-learn classifier (used as given, cloned
        per fold; no scaler is added).
    pca: if set, PCA(n_components=pca) after the scaler, fitted inside each fold.
    n_permutations: refits on shuffled labels for the p-value; the smallest reachable p is
        1 / (1 + n_permutations), so p <= 0.01 needs 99 or more. Each permutation reruns
        the first repetition's folds, and the observed score it is compared with is that same
        repetition's score, so observed and null come from one identical procedure.
    n_jobs: threads for the refits (results do not depend on it).
    Multiclass attributes are fine; chance is then 1 / k.
    """
    x = as_features(features, "features")
    y_raw = as_labels(protected, "protected", n=x.shape[0])
    n_splits = check_int(n_splits, "n_splits", 2)
    n_repeats = check_int(n_repeats, "n_repeats", 1)
    n_permutations = check_int(n_permutations, "n_permutations", 0)
    n_jobs = check_int(n_jobs, "n_jobs", 1)
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    values, y = encode(y_raw, "protected", min_count=max(2, n_splits))
    k = int(y.max()) + 1
    if not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer, got {max_iter!r}")
    model = _make_probe(probe, pca, seed, len(y), int(np.bincount(y).min()), max_iter)

    cv = RepeatedStratifiedKFold(n_splits=n_splits, n_repeats=n_repeats, random_state=seed)
    folds = list(cv.split(x, y))
    repeats = [folds[r * n_splits : (r + 1) * n_splits] for r in range(n_repeats)]
    rng = np.random.default_rng(seed)
    shuffles = [
        rng.permutation(y) for _ in range(n_permutations)
    ]  # fixed before any work: same for any n_jobs

    # Small fits: extra BLAS threads only fight each other, so threads go to whole refits instead.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        # Probes on weak or shuffled signal often stop at max_iter; the score is still valid.
        warnings.simplefilter("ignore", ConvergenceWarning)
        cache = _LdaFolds if probe == "lda" else _FoldCache
        caches = [cache(model, x, rep, k) for rep in repeats]
        preds = np.stack([c.predict([y])[0] for c in caches])  # [n_repeats, N]
        perm_scores = np.empty(n_permutations)
        chunks = [
            list(range(i, min(i + _CHUNK, n_permutations)))
            for i in range(0, n_permutations, _CHUNK)
        ]
        bar = tqdm(
            total=n_permutations,
            desc="permutations",
            disable=not progress or not n_permutations,
            leave=False,
        )
        with bar, Parallel(n_jobs=n_jobs, prefer="threads") as parallel:
            jobs = (
                delayed(_score_shuffles)(caches[0], [shuffles[i] for i in chunk], k)
                for chunk in chunks
            )
            for chunk, scores in zip(chunks, parallel(jobs), strict=True):
                perm_scores[chunk] = scores
                bar.update(len(chunk))

    repeat_scores = np.array([_balanced_accuracy(y, p, k) for p in preds])
    fold_scores = np.array(
        [
            _balanced_accuracy(y[test], preds[r][test], k)
            for r, rep in enumerate(repeats)
            for _, test in rep
        ]
    )
    # p = (1 + #{null >= observed}) / (1 + n_perm); undefined (NaN) without permutations.
    p_value = float((1 + np.sum(perm_scores >= repeat_scores[0])) / (1 + n_permutations))
    if n_permutations == 0:
        p_value = float("nan")
    n_test = len(y) / n_splits
    ci_low, ci_high = corrected_cv_interval(fold_scores, n_train=len(y) - n_test, n_test=n_test)
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
        seed=int(seed),
        ci_method=CI_METHOD,
        repeat_scores=tuple(float(s) for s in repeat_scores),
        fold_scores=tuple(float(s) for s in fold_scores),
        permutation_scores=tuple(float(s) for s in perm_scores),
        values=tuple(v.item() if hasattr(v, "item") else v for v in values),
    )


_CHUNK = 16  # permutations handed to a thread at once (the lda probe batches them in one product)


def _score_shuffles(cache, shuffles, k) -> list[float]:
    return [
        _balanced_accuracy(s, p, k) for s, p in zip(shuffles, cache.predict(shuffles), strict=True)
    ]


def _make_probe(
    probe, pca, seed, n_samples: int, smallest_class: int, max_iter: int = 1000
) -> Pipeline:
    if isinstance(probe, str):
        if probe == "linear":
            clf = LogisticRegression(max_iter=max_iter)
        elif probe == "lda":
            clf = "lda"  # closed form, see _LdaFolds
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
        return Pipeline([*((type(s).__name__.lower(), s) for s in steps), ("probe", clf)])
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

    def __init__(self, model: Pipeline, x: np.ndarray, folds, k: int):
        self.final = model.steps[-1][1]
        self.folds = []
        for train, test in folds:
            if len(model.steps) > 1:
                pre = clone(model[:-1]).fit(x[train])
                self.folds.append((train, test, pre.transform(x[train]), pre.transform(x[test])))
            else:
                self.folds.append((train, test, x[train], x[test]))

    def predict(self, labelings) -> list[np.ndarray]:
        """Out-of-fold predictions of a classifier refitted on each labeling."""
        out = []
        for y in labelings:
            pred = np.empty_like(y)
            for train, test, x_train, x_test in self.folds:
                pred[test] = clone(self.final).fit(x_train, y[train]).predict(x_test)
            out.append(pred)
        return out


class _LdaFolds(_FoldCache):
    """The "lda" probe: nearest class mean in the metric of the training fold's covariance.

    score_c(x) = x' S^-1 m_c - m_c' S^-1 m_c / 2 with S the (ridged) covariance of the standardised
    training fold and m_c the class means: a linear discriminant with equal priors (the natural
    one for balanced accuracy). S depends on the features only, so one Cholesky factor per fold
    serves every labeling, and a batch of labelings is one pair of matrix products.
    """

    RIDGE = 1e-3

    def __init__(self, model: Pipeline, x: np.ndarray, folds, k: int):
        self.k = k
        self.folds = []
        for train, test in folds:
            pre = clone(model[:-1]).fit(x[train])
            x_train, x_test = pre.transform(x[train]), pre.transform(x[test])
            centre = x_train.mean(axis=0)
            x_train, x_test = x_train - centre, x_test - centre
            cov = x_train.T @ x_train / len(x_train)
            cov[np.diag_indices_from(cov)] += self.RIDGE * max(
                float(np.trace(cov)) / len(cov), 1e-12
            )
            self.folds.append((train, test, x_train, x_test, cho_factor(cov)))

    def predict(self, labelings) -> list[np.ndarray]:
        labels = np.stack(labelings)  # [P, N]
        pred = np.empty_like(labels)
        k = self.k
        for train, test, x_train, x_test, factor in self.folds:
            y = labels[:, train]  # [P, n]
            onehot = (y[:, :, None] == np.arange(k)).astype(x_train.dtype)  # [P, n, k]
            counts = onehot.sum(axis=1)  # [P, k]
            sums = onehot.transpose(0, 2, 1) @ x_train  # [P, k, d], one BLAS product per labeling
            means = (sums / np.maximum(counts, 1)[..., None]).reshape(
                -1, x_train.shape[1]
            )  # [P*k, d]
            weights = cho_solve(factor, means.T)  # [d, P*k]
            scores = x_test @ weights - 0.5 * np.sum(means * weights.T, axis=1)
            scores = scores.reshape(len(test), *counts.shape)  # [n_test, P, k]
            scores = np.where(
                counts[None] > 0, scores, -np.inf
            )  # a class absent from the fold is never predicted
            pred[:, test] = scores.argmax(axis=2).T
        return list(pred)


def _balanced_accuracy(truth: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Mean per-class recall over the classes present in `truth`."""
    totals = np.bincount(truth, minlength=k)
    hits = np.bincount(truth[pred == truth], minlength=k)
    present = totals > 0
    return float(np.mean(hits[present] / totals[present]))

"""Audits whose protected column is a labeler's estimate: rates and gaps corrected for its error.

When the sensitive labels come from a labeler (a classifier, CLIP) rather than from people, each
observed group mixes the true groups, and gaps between groups shrink or move. A small verified set
(items with both the labeler's output and the true value) estimates the misclassification matrix
``M[a, o] = P(labeler says o | true value a)``. Assuming the labeler's error is independent of
everything else audited given the true value (of the target and of the model's or probe's
prediction: "non-differential" error), the observed counts mix the true ones row by row,
``observed[o] = sum_a true[a] M[a, o]``, so ``true = observed M^-1``. This is done for every
(target, prediction) cell of the confusion counts (group fairness: selection rate, TPR, FPR, and
the demographic-parity and equalized-odds differences) and for the (probe prediction, value) table
of a leakage probe (its balanced accuracy against the true values).

Intervals come from a bootstrap over both samples at once: the audit's rows, and the verified items
(resampled within their strata, weighted by how many pooled items each stands for, as drawn by
``fairgen review``), so they widen when few items are verified. Gaps use the simultaneous max-t
bands of ``audits.intervals.max_abs_interval``; leakage a percentile interval. The verified set must
show the labeler's error on data like the audited (same kind of images); say so when it does not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from plumbing.validation import as_labels, check_int

from .fairness import _confusion, _gaps, _pairwise, _rates
from .intervals import max_abs_interval, percentile_ci

ASSUMPTION = (
    "labeler error independent of the target and of the predictions given the true value; "
    "the verified set shows the labeler's error on data like the audited"
)
MAX_CONDITION = 1e3  # a mixing matrix this close to singular cannot be undone (e.g. 50% accuracy)


@dataclass(frozen=True, eq=False)
class Verified:
    """Verified pairs: the true value and the labeler's output per item; optional ``weights``
    (pooled items each stands for) and ``strata`` (the groups they were drawn in)."""

    truth: np.ndarray
    output: np.ndarray
    weights: np.ndarray
    strata: np.ndarray

    @classmethod
    def of(cls, truth, output, k: int, weights=None, strata=None) -> Verified:
        truth = _codes(truth, "verified_truth", k)
        output = _codes(output, "verified_output", k, n=len(truth))
        w = np.ones(len(truth)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != truth.shape or not np.isfinite(w).all() or (w <= 0).any():
            raise ValueError(f"verified_weights must be {len(truth)} positive finite numbers")
        if strata is None:
            strata = np.zeros(len(truth), dtype=np.int64)
        strata = np.unique(as_labels(strata, "verified_strata", n=len(truth)), return_inverse=True)
        return cls(truth, output, w, strata[1].astype(np.int64))

    def matrix(self, k: int, index=None) -> np.ndarray:
        """``M[a, o]`` (rows: true values) from all items, or [B, k, k] from resampled ``index``
        [B, n] (one bootstrap replicate per row)."""
        if index is None:
            index = np.arange(len(self.truth))[None]
            return self.matrix(k, index)[0]
        b = len(index)
        keys = (np.arange(b)[:, None] * k + self.truth[index]) * k + self.output[index]
        counts = np.bincount(keys.ravel(), weights=self.weights[index].ravel(), minlength=b * k * k)
        counts = counts.reshape(b, k, k)
        with np.errstate(invalid="ignore", divide="ignore"):
            return counts / counts.sum(axis=2, keepdims=True)

    def resample(self, rng, n_bootstrap: int) -> np.ndarray:
        """Indices [B, n] of ``n_bootstrap`` resamples, each drawn within every stratum."""
        parts = []
        for s in range(int(self.strata.max()) + 1):
            members = np.flatnonzero(self.strata == s)
            parts.append(members[rng.integers(0, len(members), (n_bootstrap, len(members)))])
        return np.concatenate(parts, axis=1)


def misclassification(truth, output, k: int, weights=None) -> np.ndarray:
    """The labeler's misclassification matrix ``M[a, o] = P(output o | true value a)``."""
    return Verified.of(truth, output, k, weights).matrix(k)


def unmix(counts: np.ndarray, matrix: np.ndarray, axis: int = 0) -> np.ndarray:
    """True-value counts from counts by labeler output along ``axis``: ``observed M^-1``; NaN where
    ``matrix`` cannot be inverted. With a stack of matrices [B, k, k], ``counts`` is [B, ...] and
    ``axis`` counts within one replicate. A small cell may come out below 0: it is kept (clipping
    it at 0 would bias every rate near 0 or 1 and the intervals with it); the rates made from
    these counts are clipped to [0, 1] instead."""
    stacked = matrix.ndim == 3
    matrices = matrix if stacked else matrix[None]
    ok = np.isfinite(matrices).all(axis=(1, 2))
    ok[ok] = np.linalg.cond(matrices[ok]) <= MAX_CONDITION
    inverse = np.full(matrices.shape, np.nan)
    inverse[ok] = np.linalg.inv(matrices[ok])
    batch = counts if stacked else counts[None]
    moved = np.moveaxis(batch, axis + 1, -1)  # [B, ..., k]
    shape = moved.shape
    flat = moved.reshape(shape[0], -1, shape[-1]) @ inverse  # [B, cells, k]
    out = np.moveaxis(flat.reshape(shape), -1, axis + 1)
    return out if stacked else out[0]


@dataclass(frozen=True, eq=False)
class EstimatedFairness:
    """Group fairness with the protected column estimated by a labeler: corrected per-group rates
    (``by_group``, one row per true value) and the gaps, corrected and as the labeler sees them."""

    by_group: pd.DataFrame
    summary: dict
    matrix: np.ndarray  # the misclassification matrix M[a, o] used

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for key in ("equalized_odds_difference", "demographic_parity_difference"):
            for kind in ("uncorrected", "corrected"):
                rows.append(
                    {
                        "metric": key,
                        "protected column": "labeler output"
                        if kind == "uncorrected"
                        else "estimated truth (corrected)",
                        "value": self.summary[f"{kind}_{key}"],
                        "ci_low": self.summary[f"{kind}_{key}_ci_low"],
                        "ci_high": self.summary[f"{kind}_{key}_ci_high"],
                    }
                )
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {
            "summary": dict(self.summary),
            "by_group": self.by_group.reset_index().to_dict(orient="records"),
            "matrix": self.matrix.tolist(),
        }


def estimated_fairness(
    target,
    prediction,
    protected_estimate,
    verified_truth,
    verified_output,
    *,
    n_values: int | None = None,
    verified_weights=None,
    verified_strata=None,
    n_bootstrap: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> EstimatedFairness:
    """Selection rate, TPR and FPR per true group, and the DP / EO differences, corrected for the
    labeler's error. ``protected_estimate`` and the verified arrays hold value codes 0..k-1;
    ``target`` and ``prediction`` any labels (a binary target's positive class is its larger one;
    a multiclass target is one-vs-rest, max over classes, as in ``audits.group_fairness``)."""
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", 1)
    target = as_labels(target, "target")
    prediction = as_labels(prediction, "prediction", n=len(target))
    k = _value_count(n_values, protected_estimate, verified_truth, verified_output)
    observed = _codes(protected_estimate, "protected_estimate", k, n=len(target))
    verified = Verified.of(verified_truth, verified_output, k, verified_weights, verified_strata)
    matrix = _checked_matrix(verified, k)

    classes, codes = np.unique(np.concatenate([target, prediction]), return_inverse=True)
    t, p = codes[: len(target)], codes[len(target) :]
    c = len(classes)
    audited = [c - 1] if c == 2 else list(range(c))
    counts = _confusion(t, p, observed, k, c)  # [k outputs, c, c]
    rng = np.random.default_rng(seed)
    boot_counts = rng.multinomial(len(t), counts.ravel() / len(t), size=n_bootstrap).reshape(
        n_bootstrap, *counts.shape
    )
    boot_matrix = verified.matrix(k, verified.resample(rng, n_bootstrap))

    summary = {
        "n_audit": int(len(t)),
        "n_verified": int(len(verified.truth)),
        "n_values": k,
        "audited_classes": [_plain(classes[i]) for i in audited],
        "labeler_accuracy_verified": float(
            np.average(verified.truth == verified.output, weights=verified.weights)
        ),
        "assumption": ASSUMPTION,
        "n_bootstrap": n_bootstrap,
        "seed": int(seed),
        "ci_method": "bootstrap over audit rows and verified items (within strata); "
        "simultaneous max-t bands on every pairwise gap",
    }
    tables = {}
    for kind, point_counts, boot in (
        ("uncorrected", counts, boot_counts),
        ("corrected", unmix(counts, matrix), unmix(boot_counts, boot_matrix)),
    ):
        point, samples = _unit_rates(point_counts), _unit_rates(boot)
        dp, eo = _gaps(*(r[..., audited] for r in point))
        pairs = [_pairwise(r[..., audited]) for r in point]
        boot_pairs = [_pairwise(r[..., audited]) for r in samples]
        dp_ci = max_abs_interval(pairs[0], boot_pairs[0], level)
        eo_ci = max_abs_interval(
            np.concatenate(pairs[1:], axis=-1), np.concatenate(boot_pairs[1:], axis=-1), level
        )
        summary[f"{kind}_demographic_parity_difference"] = float(dp)
        summary[f"{kind}_demographic_parity_difference_ci_low"] = dp_ci[0]
        summary[f"{kind}_demographic_parity_difference_ci_high"] = dp_ci[1]
        summary[f"{kind}_equalized_odds_difference"] = float(eo)
        summary[f"{kind}_equalized_odds_difference_ci_low"] = eo_ci[0]
        summary[f"{kind}_equalized_odds_difference_ci_high"] = eo_ci[1]
        tables[kind] = (point_counts, point)
    corrected_counts, (sel, tpr, fpr) = tables["corrected"]
    by_group = pd.DataFrame({"n (estimated)": corrected_counts.sum(axis=(1, 2))})
    by_group.index.name = "true value"
    for i in audited:
        name = _plain(classes[i])
        by_group[f"selection_rate[{name}]"] = sel[:, i]
        by_group[f"tpr[{name}]"] = tpr[:, i]
        by_group[f"fpr[{name}]"] = fpr[:, i]
    return EstimatedFairness(by_group=by_group, summary=summary, matrix=matrix)


@dataclass(frozen=True, eq=False)
class EstimatedLeakage:
    """A leakage probe's balanced accuracy against the true values, corrected for the labeler's
    error, beside the one against the labeler's outputs (uncorrected)."""

    summary: dict
    matrix: np.ndarray

    def to_frame(self) -> pd.DataFrame:
        rows = [
            {
                "metric": "leakage balanced accuracy",
                "protected column": label,
                "value": self.summary[f"{kind}_balanced_accuracy"],
                "ci_low": self.summary[f"{kind}_ci_low"],
                "ci_high": self.summary[f"{kind}_ci_high"],
            }
            for kind, label in (
                ("uncorrected", "labeler output"),
                ("corrected", "estimated truth (corrected)"),
            )
        ]
        return pd.DataFrame(rows)

    def to_dict(self) -> dict:
        return {"summary": dict(self.summary), "matrix": self.matrix.tolist()}


def estimated_leakage(
    probe_prediction,
    protected_estimate,
    verified_truth,
    verified_output,
    *,
    n_values: int | None = None,
    verified_weights=None,
    verified_strata=None,
    n_bootstrap: int = 500,
    level: float = 0.95,
    seed: int = 0,
) -> EstimatedLeakage:
    """Balanced accuracy of a leakage probe's out-of-fold predictions (value codes, fitted on the
    labeler's outputs: ``out_of_fold_predictions``) against the true values, estimated by unmixing
    the (prediction, labeler output) table with the verified misclassification matrix."""
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", 1)
    k = _value_count(n_values, protected_estimate, verified_truth, verified_output)
    observed = _codes(protected_estimate, "protected_estimate", k)
    pred = _codes(probe_prediction, "probe_prediction", k, n=len(observed))
    verified = Verified.of(verified_truth, verified_output, k, verified_weights, verified_strata)
    matrix = _checked_matrix(verified, k)
    table = np.bincount(pred * k + observed, minlength=k * k).reshape(k, k).astype(np.float64)
    rng = np.random.default_rng(seed)
    boot = rng.multinomial(len(pred), table.ravel() / len(pred), size=n_bootstrap)
    boot = boot.reshape(n_bootstrap, k, k).astype(np.float64)
    boot_matrix = verified.matrix(k, verified.resample(rng, n_bootstrap))
    summary = {
        "n_audit": int(len(pred)),
        "n_verified": int(len(verified.truth)),
        "n_values": k,
        "chance": 1.0 / k,
        "assumption": ASSUMPTION,
        "n_bootstrap": n_bootstrap,
        "ci_method": "percentile bootstrap over audit rows and verified items (within strata)",
    }
    for kind, point, samples in (
        ("uncorrected", table, boot),
        ("corrected", unmix(table, matrix, axis=1), unmix(boot, boot_matrix, axis=1)),
    ):
        summary[f"{kind}_balanced_accuracy"] = float(_balanced_accuracy(point))
        low, high = percentile_ci(_balanced_accuracy(samples), level)
        summary[f"{kind}_ci_low"], summary[f"{kind}_ci_high"] = low, high
    return EstimatedLeakage(summary=summary, matrix=matrix)


def out_of_fold_predictions(features, labels, probe: str = "lda", n_splits: int = 5, seed: int = 0):
    """A leakage probe's out-of-fold predictions of ``labels`` (as given) from ``features``:
    the same probes and folds as ``audits.leakage`` (one repetition), for ``estimated_leakage``."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    from plumbing.validation import as_features, encode

    from .leakage import _FoldCache, _LdaFolds, _make_probe

    x = as_features(features, "features")
    values, y = encode(as_labels(labels, "labels", n=len(x)), "labels", min_count=n_splits)
    k = int(y.max()) + 1
    model = _make_probe(probe, None, seed, len(y), int(np.bincount(y).min()))
    folds = list(StratifiedKFold(n_splits, shuffle=True, random_state=seed).split(x, y))
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        cache = (_LdaFolds if probe == "lda" else _FoldCache)(model, x, folds, k)
        return values[cache.predict([y])[0]]


def _unit_rates(counts: np.ndarray):
    """``audits.fairness._rates`` clipped to [0, 1] (unmixed counts may be slightly negative)."""
    return tuple(np.clip(r, 0.0, 1.0) for r in _rates(counts))


def _balanced_accuracy(table: np.ndarray) -> np.ndarray:
    """Mean over true values (last axis) of the share predicted right, from [..., pred, true]."""
    hits = np.diagonal(table, axis1=-2, axis2=-1)
    totals = table.sum(axis=-2)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.clip(np.where(totals > 0, hits / totals, np.nan), 0.0, 1.0)
        return np.nanmean(recall, axis=-1)


def _checked_matrix(verified: Verified, k: int) -> np.ndarray:
    matrix = verified.matrix(k)
    missing = [a for a in range(k) if not np.isfinite(matrix[a]).all()]
    if missing:
        raise ValueError(
            f"verified set: no verified item has true value(s) {missing}; the labeler's error on "
            "them is unknown (verify items of every value)"
        )
    if np.linalg.cond(matrix) > MAX_CONDITION:
        raise ValueError(
            f"verified set: the labeler's misclassification matrix {np.round(matrix, 3).tolist()} "
            "is too close to singular to correct for (the labeler barely tells the values apart)"
        )
    return matrix


def _value_count(n_values, *arrays) -> int:
    if n_values is not None:
        return check_int(n_values, "n_values", 2)
    return max(2, max(int(np.max(np.asarray(a))) + 1 for a in arrays))


def _codes(values, name: str, k: int, n: int | None = None) -> np.ndarray:
    codes = as_labels(values, name, n=n)
    if codes.dtype.kind not in "iu" or codes.min() < 0 or codes.max() >= k:
        raise ValueError(f"{name} must hold value codes 0..{k - 1} (integers)")
    return codes.astype(np.int64)


def _plain(v):
    return v.item() if hasattr(v, "item") else v

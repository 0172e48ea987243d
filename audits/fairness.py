"""Group fairness of a linear probe for the target, disaggregated by a protected attribute.

We fit a standardised logistic regression for the target on train features, predict the test
split, and break its errors down by protected group with `fairlearn.metrics.MetricFrame`:
accuracy, and per target class (one-vs-rest) the selection rate, true-positive rate and
false-positive rate, each with the count it was computed from. Two headline gaps summarise them,
each with a 95% CI from simultaneous max-t bootstrap bands on every pairwise gap (test rows
resampled within each protected group; ``audits.intervals.max_abs_interval``). A gap is a
maximum over groups, so its plug-in estimate is biased upward and percentile or BCa intervals
of it under-cover (measured in tests/test_audits_intervals.py); the simultaneous bands cover
at least 95% and always contain the estimate:

* demographic-parity difference: largest gap in selection rate between groups;
* equalized-odds difference: largest gap in TPR or FPR between groups.

A binary target uses its second (larger) label as the positive class, as fairlearn does.
A multiclass target is treated one-vs-rest and the gap reported is the max over classes.

fairlearn's own rate functions return 0 when a group has no positives (or no negatives); we
pass NaN-safe ones instead, so an undefined rate shows as NaN, is named in the row's `note`
and in `summary["undefined_rates"]`, and is left out of the gaps rather than counted as 0.

A rate from fewer than ``MIN_COUNT`` positives (TPR) or negatives (FPR) moves in steps of 1/n:
one positive makes a TPR of 0 or 1, and so an equalized-odds difference of 1. Such groups are
named in the row's `note` and in `summary["small_groups"]`, and the report prints a warning.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from fairlearn.metrics import MetricFrame
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

from plumbing.validation import as_features, as_labels, check_int, encode

from .intervals import max_abs_interval

RATES = ("accuracy", "selection_rate", "tpr", "fpr")  # by_group columns that are rates
MIN_COUNT = (
    10  # positives / negatives below which a group's TPR / FPR is flagged as resting on few rows
)


@dataclass(frozen=True, eq=False)  # holds frames/arrays, which have no single ==
class FairnessResult:
    """Per-group rates (`by_group`, one row per protected value) and the headline gaps
    (`summary`)."""

    by_group: pd.DataFrame
    summary: dict
    overall: pd.Series | None = None  # the same metrics over all test rows

    def to_dict(self) -> dict:
        rows = self.by_group.reset_index().to_dict(orient="records")
        out = {"summary": dict(self.summary), "by_group": rows}
        if self.overall is not None:
            out["overall"] = self.overall.to_dict()
        return out

    @property
    def rates(self) -> pd.DataFrame:
        """The rate columns of ``by_group`` (accuracy, selection rate, TPR, FPR), no counts."""
        keep = [c for c in self.by_group.columns if c.startswith(RATES)]
        return self.by_group[keep].astype(float)

    def difference(self) -> pd.Series:
        """Per rate, the largest minus the smallest group value (NaN rates left out), as
        fairlearn's ``MetricFrame.difference()``."""
        return self.rates.max() - self.rates.min()

    def ratio(self) -> pd.Series:
        """Per rate, the smallest over the largest group value (1 = every group alike), as
        fairlearn's ``MetricFrame.ratio()``; NaN where the largest is 0."""
        high = self.rates.max()
        return (self.rates.min() / high.where(high > 0)).astype(float)

    def to_frame(self) -> pd.DataFrame:
        return self.by_group

    def long_table(self) -> pd.DataFrame:
        """One row per (group, target class): n, selection rate, TPR with n_pos, FPR with n_neg.

        The wide ``by_group`` table has five columns per class; this is the readable shape.
        """
        table = self.by_group
        rows = []
        for group, row in table.iterrows():
            for cls in self.summary["audited_classes"]:
                rows.append(
                    {
                        "group": group,
                        "class": cls,
                        "n": int(row["n"]),
                        "selection_rate": row[f"selection_rate[{cls}]"],
                        "tpr": row[f"tpr[{cls}]"],
                        "n_pos": int(row[f"n_pos[{cls}]"]),
                        "fpr": row[f"fpr[{cls}]"],
                        "n_neg": int(row[f"n_neg[{cls}]"]),
                    }
                )
        return pd.DataFrame(rows)


def group_fairness(
    train_features,
    train_target,
    test_features,
    test_target,
    test_protected,
    *,
    n_bootstrap: int = 500,
    seed: int = 0,
) -> FairnessResult:
    """Fit a linear probe for the target on train, audit its test predictions by protected group."""
    x_train = as_features(train_features, "train_features")
    x_test = as_features(test_features, "test_features")
    if x_train.shape[1] != x_test.shape[1]:
        raise ValueError(
            f"train_features and test_features must have the same width, got "
            f"{x_train.shape[1]} and {x_test.shape[1]}"
        )
    y_train = as_labels(train_target, "train_target", n=x_train.shape[0])
    y_test = as_labels(test_target, "test_target", n=x_test.shape[0])
    protected = as_labels(test_protected, "test_protected", n=x_test.shape[0])
    n_bootstrap = check_int(n_bootstrap, "n_bootstrap", 1)
    encode(y_train, "train_target")
    groups, g = encode(protected, "test_protected", min_count=2)

    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore", ConvergenceWarning)
        pred = probe.fit(x_train, y_train).predict(x_test)

    classes, codes = np.unique(np.concatenate([y_train, y_test]), return_inverse=True)
    t = codes[x_train.shape[0] :]
    p = np.searchsorted(classes, pred)
    audited = [len(classes) - 1] if len(classes) == 2 else list(range(len(classes)))

    by_group, overall = _by_group(t, p, pd.Series(groups[g], name="group"), classes, audited)
    sel, tpr, fpr = (
        by_group[[f"{rate}[{classes[c]}]" for c in audited]].to_numpy(dtype=float)
        for rate in ("selection_rate", "tpr", "fpr")
    )
    dp, eo = _gaps(sel, tpr, fpr)

    boot = _rates(_bootstrap_confusion(t, p, g, len(groups), len(classes), n_bootstrap, seed))
    point = _rates(_confusion(t, p, g, len(groups), len(classes)))
    pairwise = (
        [_pairwise(r[..., audited]) for r in point],
        [_pairwise(r[..., audited]) for r in boot],
    )
    dp_ci = max_abs_interval(pairwise[0][0], pairwise[1][0])
    eo_ci = max_abs_interval(
        np.concatenate(pairwise[0][1:], axis=-1), np.concatenate(pairwise[1][1:], axis=-1)
    )

    summary = {
        "n_test": int(len(t)),
        "n_groups": int(len(groups)),
        "groups": [_plain(v) for v in groups],
        "target_classes": [_plain(v) for v in classes],
        "audited_classes": [_plain(classes[c]) for c in audited],
        "aggregation": (
            f"binary target, positive class {_plain(classes[-1])!r}"
            if len(classes) == 2
            else "multiclass target, one-vs-rest per class, max over classes"
        ),
        "accuracy": float((p == t).mean()),
        "accuracy_difference": float(by_group["accuracy"].max() - by_group["accuracy"].min()),
        "demographic_parity_difference": float(dp),
        "demographic_parity_ci_low": dp_ci[0],
        "demographic_parity_ci_high": dp_ci[1],
        "equalized_odds_difference": float(eo),
        "equalized_odds_ci_low": eo_ci[0],
        "equalized_odds_ci_high": eo_ci[1],
        "n_bootstrap": n_bootstrap,
        "ci_method": "simultaneous max-t bootstrap bands on every pairwise gap, rows resampled "
        "within groups",
        "seed": int(seed),
        "undefined_rates": [
            f"{grp}: " + "; ".join(part for part in note.split("; ") if "undefined" in part)
            for grp, note in by_group["note"].items()
            if "undefined" in note
        ],
        "min_count": MIN_COUNT,
        "small_groups": _small_groups(by_group, classes, audited),
    }
    return FairnessResult(by_group=by_group, summary=summary, overall=overall)


def _count(y_true, y_pred) -> int:
    return int(len(y_true))


def _accuracy(y_true, y_pred) -> float:
    return float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))


def _selection_rate(y_true, y_pred) -> float:
    return float(np.mean(y_pred))


def _n_pos(y_true, y_pred) -> int:
    return int(np.sum(y_true))


def _n_neg(y_true, y_pred) -> int:
    return int(np.sum(~np.asarray(y_true)))


def _tpr(y_true, y_pred) -> float:
    """Share of positives predicted positive; NaN (not 0) when there are no positives."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    pos = y_true.sum()
    return float((y_true & y_pred).sum() / pos) if pos else float("nan")


def _fpr(y_true, y_pred) -> float:
    """Share of negatives predicted positive; NaN (not 0) when there are no negatives."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    neg = (~y_true).sum()
    return float((~y_true & y_pred).sum() / neg) if neg else float("nan")


def _by_group(t, p, group: pd.Series, classes, audited) -> pd.DataFrame:
    """The per-group table, every number from a MetricFrame, each rate next to its denominator."""
    frame = MetricFrame(
        metrics={"n": _count, "accuracy": _accuracy}, y_true=t, y_pred=p, sensitive_features=group
    )
    parts, overall = [frame.by_group], [frame.overall]
    for c in audited:
        mf = MetricFrame(
            metrics={
                "selection_rate": _selection_rate,
                "tpr": _tpr,
                "n_pos": _n_pos,
                "fpr": _fpr,
                "n_neg": _n_neg,
            },
            y_true=t == c,
            y_pred=p == c,
            sensitive_features=group,
        )
        parts.append(mf.by_group.rename(columns=lambda name, c=c: f"{name}[{classes[c]}]"))
        overall.append(mf.overall.rename(lambda name, c=c: f"{name}[{classes[c]}]"))
    table = pd.concat(parts, axis=1)
    for col in table.columns:
        if col == "n" or col.startswith(("n_pos", "n_neg")):
            table[col] = table[col].astype(int)
    table["note"] = [_undefined(row, classes, audited) for _, row in table.iterrows()]
    return table, pd.concat(overall)


def _undefined(row: pd.Series, classes, audited) -> str:
    notes = []
    for c in audited:
        name = classes[c]
        if np.isnan(row[f"tpr[{name}]"]):
            notes.append(f"tpr[{name}] undefined (no positives)")
        if np.isnan(row[f"fpr[{name}]"]):
            notes.append(f"fpr[{name}] undefined (no negatives)")
        for count, rate, what in (
            (f"n_pos[{name}]", "tpr", "positives"),
            (f"n_neg[{name}]", "fpr", "negatives"),
        ):
            if 0 < row[count] < MIN_COUNT:
                notes.append(f"{rate}[{name}] from only {int(row[count])} {what} (< {MIN_COUNT})")
    return "; ".join(notes)


def _small_groups(table: pd.DataFrame, classes, audited) -> list[str]:
    """Groups whose TPR or FPR of an audited class rests on 1 to MIN_COUNT - 1 rows."""
    out = []
    for group, row in table.iterrows():
        for c in audited:
            name = classes[c]
            for count, rate, what in (
                (f"n_pos[{name}]", "tpr", "positives"),
                (f"n_neg[{name}]", "fpr", "negatives"),
            ):
                if 0 < row[count] < MIN_COUNT:
                    out.append(f"{group}: {rate}[{_plain(name)}] from {int(row[count])} {what}")
    return out


def _group_range(rates: np.ndarray) -> np.ndarray:
    """Max minus min over groups (axis -2) of the defined rates; NaN where under 2 are defined."""
    finite = np.isfinite(rates)
    high = np.where(finite, rates, -np.inf).max(axis=-2)
    low = np.where(finite, rates, np.inf).min(axis=-2)
    return np.where(finite.sum(axis=-2) >= 2, high - low, np.nan)


def _gaps(sel, tpr, fpr) -> tuple[np.ndarray, np.ndarray]:
    """Demographic-parity and equalized-odds differences, max over audited classes (last axis)."""
    per_class_dp = _group_range(sel)
    per_class_eo = np.fmax(_group_range(tpr), _group_range(fpr))
    return _nanmax_last(per_class_dp), _nanmax_last(per_class_eo)


def _nanmax_last(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    best = np.where(finite, x, -np.inf).max(axis=-1)
    return np.where(finite.any(axis=-1), best, np.nan)


def _confusion(t, p, g, n_groups, k) -> np.ndarray:
    """Counts [G, k, k] of (group, true class, predicted class)."""
    keys = (g * k + t) * k + p
    return np.bincount(keys, minlength=n_groups * k * k).reshape(n_groups, k, k).astype(np.float64)


def _bootstrap_confusion(t, p, g, n_groups, k, n_bootstrap, seed, max_cells: int = 4_000_000):
    """Confusion counts [B, G, k, k] of test rows resampled within each group."""
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(g == i) for i in range(n_groups)]
    n = len(t)
    cell = t * k + p  # which (true, predicted) cell each row falls in
    confusion = np.empty((n_bootstrap, n_groups, k, k))
    chunk = max(1, max_cells // n)
    for start in range(0, n_bootstrap, chunk):
        b = min(chunk, n_bootstrap - start)
        idx = np.concatenate(
            [m[rng.integers(0, len(m), size=(b, len(m)))] for m in members], axis=1
        )
        keys = (np.arange(b)[:, None] * n_groups + g[idx]) * k * k + cell[idx]
        counts = np.bincount(keys.ravel(), minlength=b * n_groups * k * k)
        confusion[start : start + b] = counts.reshape(b, n_groups, k, k)
    return confusion


def _rates(confusion: np.ndarray):
    """Selection rate, TPR and FPR [..., G, k] from confusion counts [..., G, k, k]."""
    size = confusion.sum(axis=(-2, -1))[..., None]  # [..., G, 1]
    predicted = confusion.sum(axis=-2)  # [..., G, k] predicted as class c
    positives = confusion.sum(axis=-1)  # [..., G, k] truly class c
    hits = np.diagonal(confusion, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        sel = predicted / size
        tpr = np.where(positives > 0, hits / positives, np.nan)
        negatives = size - positives
        fpr = np.where(negatives > 0, (predicted - hits) / negatives, np.nan)
    return sel, tpr, fpr


def _pairwise(rates: np.ndarray) -> np.ndarray:
    """Every between-group difference of ``rates`` [..., G, c], flattened to [..., pairs * c]."""
    i, j = np.triu_indices(rates.shape[-2], k=1)
    diffs = rates[..., i, :] - rates[..., j, :]
    return diffs.reshape(*diffs.shape[:-2], -1)


def _plain(v):
    """numpy scalars to plain Python, so summaries serialise to JSON."""
    return v.item() if hasattr(v, "item") else v

"""Confidence intervals that cover what they claim: BCa bootstrap and the corrected resampled t.

* ``bca_interval``: the bias-corrected and accelerated bootstrap (Efron 1987). A gap such as the
  equalized-odds difference is a maximum over groups, so its plug-in estimate is biased upward and
  a plain percentile bootstrap is biased upward again; BCa shifts the percentiles by the measured
  bias (z0, from the share of bootstrap values below the estimate) and skew (the jackknife
  acceleration), so the interval sits around the estimate the way the sampling distribution does.
* ``corrected_cv_interval``: Nadeau & Bengio's (2003) corrected resampled t-interval over the
  fold scores of repeated k-fold cross-validation. Fold scores share training rows, so their plain
  variance understates the variance of the CV mean; the correction (1/J + n_test/n_train) accounts
  for the probe being refitted on overlapping data, not only for the sampling of evaluated rows.
* ``percentile_ci``: the plain percentile bootstrap (stream balance, where V is not a maximum).
"""

from __future__ import annotations

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t


def bca_interval(
    boot, estimate: float, jackknife, weights=None, level: float = 0.95
) -> tuple[float, float]:
    """BCa interval from bootstrap values ``boot`` and leave-one-out values ``jackknife``.

    Its ends are quantiles of ``boot``, so they stay inside the statistic's range.

    ``weights`` count how many rows share each jackknife value (rows in the same cell of a
    confusion table give the same leave-one-out statistic). Non-finite values are dropped;
    ``(nan, nan)`` when nothing finite is left.
    """
    boot = np.asarray(boot, dtype=np.float64)
    boot = boot[np.isfinite(boot)]
    if boot.size == 0 or not np.isfinite(estimate):
        return float("nan"), float("nan")
    # bias correction: how far the bootstrap distribution's median sits from the estimate
    share = (np.sum(boot < estimate) + 0.5 * np.sum(boot == estimate)) / boot.size
    share = np.clip(share, 0.5 / boot.size, 1 - 0.5 / boot.size)
    z0 = norm.ppf(share)
    # acceleration from the jackknife (skewness of the influence values)
    jack = np.asarray(jackknife, dtype=np.float64)
    w = np.ones_like(jack) if weights is None else np.asarray(weights, dtype=np.float64)
    keep = np.isfinite(jack) & (w > 0)
    jack, w = jack[keep], w[keep]
    a = 0.0
    if jack.size:
        d = np.sum(w * jack) / np.sum(w) - jack
        denom = np.sum(w * d**2) ** 1.5
        a = float(np.sum(w * d**3) / (6 * denom)) if denom > 0 else 0.0
    tail = (1 - level) / 2
    out = []
    for z in (norm.ppf(tail), norm.ppf(1 - tail)):
        q = norm.cdf(z0 + (z0 + z) / (1 - a * (z0 + z)))
        out.append(float(np.quantile(boot, np.clip(q, 0, 1))))
    return out[0], out[1]


def corrected_cv_interval(
    fold_scores,
    n_train: int,
    n_test: int,
    level: float = 0.95,
    bounds: tuple[float, float] = (0.0, 1.0),
) -> tuple[float, float]:
    """Corrected resampled t-interval for the mean of ``fold_scores`` (one per CV fit).

    ``n_train``/``n_test`` are the rows a fold's probe is fitted on / scored on. The interval is
    clipped to ``bounds`` (a balanced accuracy lies in [0, 1]).
    """
    scores = np.asarray(fold_scores, dtype=np.float64)
    scores = scores[np.isfinite(scores)]
    if scores.size < 2:
        return float("nan"), float("nan")
    j = scores.size
    variance = (1 / j + n_test / n_train) * scores.var(ddof=1)
    half = student_t.ppf(1 - (1 - level) / 2, df=j - 1) * np.sqrt(variance)
    mean = scores.mean()
    return float(max(bounds[0], mean - half)), float(min(bounds[1], mean + half))


def max_abs_interval(point, boot, level: float = 0.95, upper: float = 1.0) -> tuple[float, float]:
    """Interval for ``max_j |d_j|`` from simultaneous max-t bootstrap bands on every ``d_j``.

    ``point`` [J] are estimated differences (e.g. every pairwise gap in TPR and FPR between
    groups), ``boot`` [B, J] their bootstrap values. With ``c`` the ``level`` quantile of
    ``max_j |d*_j - d_j| / se_j``, all true ``d_j`` lie in ``d_j +- c se_j`` together with
    probability ``level`` (asymptotically), and then the true maximum lies in
    ``[max_j (|d_j| - c se_j), max_j (|d_j| + c se_j)]``. So the interval covers at least
    ``level`` even where a maximum over near-tied gaps makes percentile and BCa intervals fail,
    and it always contains the plug-in estimate. NaN entries (undefined rates) are left out.
    The interval is clipped to ``[0, upper]`` (a gap between rates is at most 1).
    """
    point = np.asarray(point, dtype=np.float64)
    boot = np.asarray(boot, dtype=np.float64).reshape(-1, point.size)
    keep = np.isfinite(point) & (np.isfinite(boot).mean(axis=0) > 0.5)
    if not keep.any():
        return float("nan"), float("nan")
    point, boot = point[keep], boot[:, keep]
    se = np.nanstd(boot, axis=0)
    se = np.where(se > 0, se, np.nan)
    ratio = np.abs(boot - point) / se
    seen = np.isfinite(ratio).any(axis=1)
    z = np.where(np.isfinite(ratio[seen]), ratio[seen], -np.inf).max(axis=1)
    c = float(np.quantile(z, level)) if z.size else 0.0
    se = np.nan_to_num(se)
    low = max(0.0, float(np.max(np.abs(point) - c * se)))
    high = min(float(upper), float(np.max(np.abs(point) + c * se)))
    return low, high


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval over the finite samples (NaN, NaN when there are none)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)

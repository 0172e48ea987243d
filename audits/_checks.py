"""Input checks shared by the audits: turn bad arrays into a ValueError that names the argument."""

from __future__ import annotations

import numpy as np


def as_features(x, name: str) -> np.ndarray:
    """A finite float64 matrix [N, d]; a 1-d array is read as d = 1."""
    try:
        x = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array [N, d]: {err}") from None
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array [N, d], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name} must not be empty, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = int((~np.isfinite(x)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values (in {bad} rows)")
    return x


def as_labels(y, name: str, n: int | None = None) -> np.ndarray:
    """A 1-d label array (any hashable values, no missing ones), optionally of length n."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be a 1-d array of labels, got shape {y.shape}")
    if y.size == 0:
        raise ValueError(f"{name} must not be empty")
    if n is not None and y.shape[0] != n:
        raise ValueError(f"{name} must have one label per row ({n}), got {y.shape[0]}")
    if y.dtype.kind == "f" and not np.isfinite(y).all():
        raise ValueError(f"{name} contains NaN or infinite labels")
    if y.dtype.kind == "O" and any(v is None for v in y):
        raise ValueError(f"{name} contains missing (None) labels")
    return y


def encode(y, name: str, min_count: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Map labels to codes 0..k-1 (sorted values); require k >= 2 and min_count rows per value."""
    values, codes, counts = np.unique(y, return_inverse=True, return_counts=True)
    if values.size < 2:
        raise ValueError(f"{name} is constant (only value {values[0]!r}); need at least 2 values")
    small = values[counts < min_count]
    if small.size:
        raise ValueError(
            f"{name} value(s) {small.tolist()} have fewer than {min_count} rows "
            f"(counts {dict(zip(values.tolist(), counts.tolist(), strict=True))}); each needs at least {min_count}"
        )
    return values, codes.astype(np.int64)


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def percentile_ci(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval over the finite samples (NaN, NaN when there are none)."""
    samples = np.asarray(samples, dtype=np.float64)
    samples = samples[np.isfinite(samples)]
    if samples.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(samples, [tail, 100 - tail])
    return float(low), float(high)

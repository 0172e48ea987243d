"""Association between two categorical labelings: contingency tables and Cramér's V (plain and
bias-corrected), shared by steering (fit reports), audits (stream balance) and the world."""

from __future__ import annotations

import numpy as np


def contingency_table(a, b, n_a: int | None = None, n_b: int | None = None) -> np.ndarray:
    """Counts of each (a, b) pair as an [n_a, n_b] integer array."""
    a = np.asarray(a, dtype=np.int64).ravel()
    b = np.asarray(b, dtype=np.int64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"a and b must have the same length, got {a.shape[0]} and {b.shape[0]}")
    if a.size == 0:
        raise ValueError("a and b must not be empty")
    if a.min() < 0 or b.min() < 0:
        raise ValueError("labels must be non-negative integers")
    n_a = int(a.max()) + 1 if n_a is None else n_a
    n_b = int(b.max()) + 1 if n_b is None else n_b
    table = np.zeros((n_a, n_b), dtype=np.int64)
    np.add.at(table, (a, b), 1)
    return table


def cramers_v(a, b) -> float:
    """Cramér's V between two categorical labelings (0 = independent, 1 = one determines the other).

    Uses the plain (not bias-corrected) statistic, so a population whose protected value equals
    the target's own value with probability rho (else uniform) has V = rho exactly.
    Rows or columns that never occur are dropped; a labeling with a single value gives 0.
    """
    table = contingency_table(a, b)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    k = min(table.shape) - 1
    if k == 0:
        return 0.0
    n = table.sum()
    expected = np.outer(table.sum(1), table.sum(0)) / n
    chi2 = ((table - expected) ** 2 / expected).sum()
    return float(np.sqrt(chi2 / (n * k)))


def cramers_v_corrected(a, b) -> float:
    """Bias-corrected Cramér's V (Bergsma 2013, J. Korean Stat. Soc. 42:323-328).

    Plain V is biased upwards at small n (two independent labelings of n samples score about
    sqrt((r-1)(c-1)/(n min(r-1, c-1))), not 0). The correction subtracts the chi-square's
    expectation under independence from phi^2 and shrinks the table's dimensions to match:
    phi2 = max(0, chi2/n - (r-1)(c-1)/(n-1)), r~ = r - (r-1)^2/(n-1), c~ = c - (c-1)^2/(n-1),
    V~ = sqrt(phi2 / min(r~ - 1, c~ - 1)). It is 0 for a single value or n < 2.
    """
    table = contingency_table(a, b)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    r, c = table.shape
    n = table.sum()
    if min(r, c) < 2 or n < 2:
        return 0.0
    expected = np.outer(table.sum(1), table.sum(0)) / n
    phi2 = ((table - expected) ** 2 / expected).sum() / n
    phi2 = max(0.0, phi2 - (r - 1) * (c - 1) / (n - 1))
    r_tilde, c_tilde = r - (r - 1) ** 2 / (n - 1), c - (c - 1) ** 2 / (n - 1)
    k = min(r_tilde - 1, c_tilde - 1)
    return float(np.sqrt(phi2 / k)) if k > 0 else 0.0

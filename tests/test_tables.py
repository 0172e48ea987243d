"""Bergsma's bias-corrected Cramér's V: calibrated on data with a known answer."""

import numpy as np
import pytest

from plumbing.tables import cramers_v, cramers_v_corrected


def test_independent_labels_at_small_n_score_near_zero():
    """64 independent samples (4 x 4): plain V is about 0.2, the corrected one about 0."""
    rng = np.random.default_rng(0)
    plain, corrected = [], []
    for _ in range(400):
        a, b = rng.integers(4, size=64), rng.integers(4, size=64)
        plain.append(cramers_v(a, b))
        corrected.append(cramers_v_corrected(a, b))
    assert np.mean(plain) > 0.18
    assert np.mean(corrected) < 0.06
    assert np.mean(corrected) < np.mean(plain) / 3


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_known_association_is_recovered_at_small_n(rho):
    """b equals a with probability rho (else uniform): the population V is rho."""
    rng = np.random.default_rng(1)
    values = []
    for _ in range(300):
        a = rng.integers(4, size=100)
        b = np.where(rng.random(100) < rho, a, rng.integers(4, size=100))
        values.append(cramers_v_corrected(a, b))
    assert np.mean(values) == pytest.approx(rho, abs=0.05)


def test_large_samples_agree_with_plain_v_and_edge_cases_are_zero():
    rng = np.random.default_rng(2)
    a = rng.integers(4, size=200_000)
    b = np.where(rng.random(len(a)) < 0.5, a, rng.integers(4, size=len(a)))
    assert cramers_v_corrected(a, b) == pytest.approx(cramers_v(a, b), abs=2e-3)
    assert cramers_v_corrected([0, 0, 0], [1, 2, 3]) == 0.0
    assert cramers_v_corrected([1], [2]) == 0.0

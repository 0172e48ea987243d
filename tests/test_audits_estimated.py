"""Audits with labeler-estimated sensitive labels: the correction recovers the exact-label values,
and its intervals cover them at their nominal rate on simulated data with a known confusion."""

from __future__ import annotations

import numpy as np
import pytest

from audits.estimated import (
    estimated_fairness,
    estimated_leakage,
    misclassification,
    out_of_fold_predictions,
    unmix,
)
from audits.fairness import _confusion, _gaps, _rates

CONFUSION = np.array([[0.85, 0.15], [0.15, 0.85]])  # P(labeler output | true value), 85% right


def _simulate(rng, n=4000, m=300, confusion=CONFUSION):
    """An audit sample (true group, target, prediction, labeler output) and m verified pairs.

    Minority share 30%; TPR 0.80 / 0.65 and FPR 0.10 / 0.20 by true group: EO difference 0.15."""
    a = (rng.random(n) < 0.3).astype(int)
    y = (rng.random(n) < 0.5).astype(int)
    rate = np.where(y == 1, np.where(a == 1, 0.65, 0.8), np.where(a == 1, 0.2, 0.1))
    p = (rng.random(n) < rate).astype(int)
    o = (rng.random(n) < confusion[a, 1]).astype(int)
    va = (rng.random(m) < 0.3).astype(int)
    vo = (rng.random(m) < confusion[va, 1]).astype(int)
    return a, y, p, o, va, vo


def _exact_eo(y, p, a) -> float:
    sel, tpr, fpr = (r[..., [1]] for r in _rates(_confusion(y, p, a, 2, 2)))
    return float(_gaps(sel, tpr, fpr)[1])


def test_unmixing_the_expected_counts_gives_the_true_counts_back():
    true = np.array([[30.0, 10.0, 5.0], [2.0, 40.0, 8.0]])  # [cells, true value]
    matrix = np.array([[0.8, 0.1, 0.1], [0.2, 0.7, 0.1], [0.05, 0.05, 0.9]])
    assert np.allclose(unmix(true @ matrix, matrix, axis=1), true)


def test_corrected_interval_covers_the_exact_label_value_at_its_nominal_rate():
    """Known 85% confusion, 4000 audit rows, 300 verified: 100 repetitions."""
    rng = np.random.default_rng(0)
    corrected = uncorrected = leak = 0
    reps = 100
    for r in range(reps):
        a, y, p, o, va, vo = _simulate(rng)
        s = estimated_fairness(y, p, o, va, vo, n_bootstrap=200, seed=r).summary
        exact = _exact_eo(y, p, a)
        key = "equalized_odds_difference"
        corrected += s[f"corrected_{key}_ci_low"] <= exact <= s[f"corrected_{key}_ci_high"]
        uncorrected += s[f"uncorrected_{key}_ci_low"] <= exact <= s[f"uncorrected_{key}_ci_high"]
        probe = np.where(rng.random(len(a)) < 0.75, a, 1 - a)  # a probe right 75% per value
        truth = 0.5 * ((probe[a == 0] == 0).mean() + (probe[a == 1] == 1).mean())
        lk = estimated_leakage(probe, o, va, vo, n_bootstrap=200, seed=r).summary
        leak += lk["corrected_ci_low"] <= truth <= lk["corrected_ci_high"]
    assert corrected / reps >= 0.9  # measured 100/100 (the max-gap band is conservative)
    assert leak / reps >= 0.88  # measured 95/100 for a 95% interval
    assert uncorrected / reps <= 0.5  # the labeler's own groups shrink the gap: measured 31/100


def test_correction_moves_the_estimate_to_the_exact_value():
    rng = np.random.default_rng(1)
    a, y, p, o, va, vo = _simulate(rng, n=20000, m=2000)
    s = estimated_fairness(y, p, o, va, vo, n_bootstrap=50).summary
    exact = _exact_eo(y, p, a)
    assert abs(s["corrected_equalized_odds_difference"] - exact) < 0.03
    assert s["uncorrected_equalized_odds_difference"] < exact - 0.04


def test_intervals_widen_with_fewer_verified_labels():
    rng = np.random.default_rng(2)
    a, y, p, o, _, _ = _simulate(rng, n=4000)
    widths = []
    for m in (50, 1000):
        va = (rng.random(m) < 0.3).astype(int)
        vo = (rng.random(m) < CONFUSION[va, 1]).astype(int)
        s = estimated_fairness(y, p, o, va, vo, n_bootstrap=300).summary
        widths.append(
            s["corrected_equalized_odds_difference_ci_high"]
            - s["corrected_equalized_odds_difference_ci_low"]
        )
    assert widths[0] > 1.3 * widths[1]


def test_weights_undo_a_verified_set_drawn_evenly_per_labeler_output():
    """Review draws as many items of each labeler output; weights (pool / drawn) give M back."""
    rng = np.random.default_rng(3)
    a = (rng.random(200_000) < 0.1).astype(int)
    o = (rng.random(len(a)) < CONFUSION[a, 1]).astype(int)
    picked = np.concatenate(
        [rng.choice(np.flatnonzero(o == v), 2000, replace=False) for v in (0, 1)]
    )
    weights = np.bincount(o, minlength=2)[o[picked]] / 2000
    weighted = misclassification(a[picked], o[picked], 2, weights=weights)
    plain = misclassification(a[picked], o[picked], 2)
    assert np.allclose(weighted, CONFUSION, atol=0.02)
    assert not np.allclose(plain, CONFUSION, atol=0.05)


def test_leakage_probe_predictions_come_out_of_fold():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(300, 5))
    labels = (x[:, 0] > 0).astype(int)
    pred = out_of_fold_predictions(x, labels)
    assert pred.shape == (300,) and 0.8 < (pred == labels).mean() < 1.0


def test_a_value_nobody_verified_or_a_labeler_at_chance_is_refused():
    y = p = o = np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match=r"no verified item has true value\(s\) \[1\]"):
        estimated_fairness(y, p, o, [0, 0, 0], [0, 1, 0])
    with pytest.raises(ValueError, match="too close to singular"):
        estimated_fairness(y, p, o, [0, 0, 1, 1], [0, 1, 0, 1])
    with pytest.raises(ValueError, match="protected_estimate must hold value codes 0..1"):
        estimated_fairness(y, p, [0, 1, 2, 0], [0, 1], [0, 1], n_values=2)

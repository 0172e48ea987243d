"""Coverage by simulation on data with a known answer: the intervals cover what they claim.

Measured (this file's settings, at nominal 95%): leakage CI covers chance on pure noise in ~96%
of seeds and the Bayes balanced accuracy of a Gaussian signal in ~97%; the EO / DP intervals
cover the population gaps in ~100% / ~97% of simulated test sets (simultaneous bands are
conservative by design), where percentile and BCa intervals of the same gaps cover 83-86% (EO)
and 36-75% (DP): a maximum over groups is biased upward.
"""

import numpy as np
import pytest
from scipy.stats import norm

from audits import group_fairness, leakage
from audits.intervals import bca_interval, corrected_cv_interval, max_abs_interval, percentile_ci

SIMS = 150
FAIRNESS_SIMS = 100


def test_leakage_ci_covers_chance_on_pure_noise_and_a_known_signal():
    noise = signal = 0
    mu = 0.5  # class means at -mu and +mu on one axis: Bayes balanced accuracy Phi(mu) = 0.691
    for seed in range(SIMS):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, 2, 200)
        r = leakage(rng.normal(size=(200, 5)), y, "lda", n_permutations=0, n_repeats=1, seed=seed)
        noise += r.ci_low <= 0.5 <= r.ci_high
        x = rng.normal(size=(200, 2))
        x[:, 0] += np.where(y == 1, mu, -mu)
        r = leakage(x, y, "lda", n_permutations=0, n_repeats=1, seed=seed)
        signal += r.ci_low <= norm.cdf(mu) <= r.ci_high
    assert noise / SIMS >= 0.91  # binomial sd at 150 draws is 0.018
    assert signal / SIMS >= 0.91


# four groups, binary target; the probe's test predictions are forced (features on the side of
# the prediction we want), so every group's population TPR / FPR is known
TPR = np.array([0.80, 0.78, 0.70, 0.75])
FPR = np.array([0.10, 0.12, 0.15, 0.10])
TRUE_EO = max(np.ptp(TPR), np.ptp(FPR))  # 0.10
TRUE_DP = np.ptp(0.5 * TPR + 0.5 * FPR)  # 0.025
TRAIN_X = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0] * 4)[:, None]
TRAIN_Y = (TRAIN_X[:, 0] > 0).astype(int)


def _simulated_test_set(seed, n=1000):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    t = (rng.random(n) < 0.5).astype(int)
    p = np.where(t == 1, rng.random(n) < TPR[g], rng.random(n) < FPR[g]).astype(int)
    return np.where(p == 1, 2.0, -2.0)[:, None], t, np.array(list("abcd"))[g]


def test_equalized_odds_and_parity_intervals_cover_the_population_gaps():
    eo = dp = inside = 0
    for seed in range(FAIRNESS_SIMS):
        test_x, t, g = _simulated_test_set(seed)
        s = group_fairness(TRAIN_X, TRAIN_Y, test_x, t, g, n_bootstrap=300, seed=seed).summary
        eo += s["equalized_odds_ci_low"] <= TRUE_EO <= s["equalized_odds_ci_high"]
        dp += s["demographic_parity_ci_low"] <= TRUE_DP <= s["demographic_parity_ci_high"]
        inside += (
            s["equalized_odds_ci_low"]
            <= s["equalized_odds_difference"]
            <= s["equalized_odds_ci_high"]
        )
    assert eo / FAIRNESS_SIMS >= 0.92  # binomial sd at 100 draws is 0.022
    assert dp / FAIRNESS_SIMS >= 0.90
    assert inside == FAIRNESS_SIMS  # the estimate always sits inside its interval


def test_max_abs_interval_contains_the_estimate_and_a_single_gap_is_near_nominal():
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(300):  # one difference of two means, true value 0.3: a plain two-sided CI
        a, b = rng.normal(0.3, 1, 400), rng.normal(0, 1, 400)
        boot = np.array([rng.choice(a, 400).mean() - rng.choice(b, 400).mean() for _ in range(200)])
        low, high = max_abs_interval([a.mean() - b.mean()], boot[:, None])
        assert low <= abs(a.mean() - b.mean()) <= high
        hits += low <= 0.3 <= high
    assert 0.90 <= hits / 300 <= 0.99


def test_bca_on_a_smooth_statistic_covers_near_nominal_and_corrects_a_shifted_bootstrap():
    rng = np.random.default_rng(1)
    hits = 0
    for _ in range(300):
        x = rng.exponential(1.0, 60)  # skewed: BCa's acceleration matters
        boot = np.array([rng.choice(x, 60).mean() for _ in range(400)])
        jack = (x.sum() - x) / 59
        low, high = bca_interval(boot, x.mean(), jack)
        hits += low <= 1.0 <= high
    assert 0.90 <= hits / 300 <= 0.99
    # a bootstrap sitting wholly above the estimate: percentile excludes it, BCa moves down to it
    boot = np.linspace(1.1, 2.0, 500)
    assert percentile_ci(boot)[0] > 1.0
    assert bca_interval(boot, 1.0, np.linspace(0.9, 1.1, 50))[0] == pytest.approx(1.1)


def test_corrected_cv_interval_is_wider_than_the_naive_one_and_clipped():
    scores = [0.6, 0.62, 0.58, 0.61, 0.59]
    low, high = corrected_cv_interval(scores, n_train=800, n_test=200)
    naive = 2.776 * np.std(scores, ddof=1) / np.sqrt(5)
    assert high - low > 2 * naive
    assert corrected_cv_interval([0.99, 1.0, 1.0, 0.98, 1.0], 800, 200)[1] == 1.0
    assert np.isnan(corrected_cv_interval([0.5], 800, 200)[0])


def test_a_gap_interval_never_leaves_zero_to_one():
    from audits.intervals import max_abs_interval

    rng = np.random.default_rng(0)
    point = np.array([0.95, -0.9])
    boot = point + rng.normal(
        scale=0.2, size=(500, 2)
    )  # wide bands: unclipped, the top would pass 1
    low, high = max_abs_interval(point, boot)
    assert 0.0 <= low <= 0.95 <= high == 1.0

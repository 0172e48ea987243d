"""Guarantees of audits.stream and audits.memorisation."""

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from audits import compare_streams, memorisation, stream_balance
from audits.memorisation import nearest_distances


def _rho_stream(k, rho, per_class):
    """Exact counts: attribute equals the class with probability rho, else uniform over k values."""
    classes, attrs = [], []
    for c in range(k):
        n_same = round(per_class * (rho + (1 - rho) / k))
        n_other = round(per_class * (1 - rho) / k)
        for a in range(k):
            m = n_same if a == c else n_other
            classes += [c] * m
            attrs += [a] * m
    return np.array(classes), np.array(attrs)


@settings(max_examples=12, deadline=None)
@given(k=st.integers(2, 4), rho=st.sampled_from([0.0, 0.25, 0.5, 0.75, 1.0]))
def test_cramers_v_recovers_the_known_dependence_of_a_constructed_stream(k, rho):
    classes, attrs = _rho_stream(k, rho, per_class=240)  # 240 divides evenly by 4k for these rho
    result = stream_balance(classes, attrs, n_bootstrap=20)
    assert result.cramers_v == pytest.approx(rho, abs=1e-9)
    expected_same = 240 * (rho + (1 - rho) / k)
    assert np.allclose(np.diag(result.counts.to_numpy()), expected_same)
    assert np.allclose(result.shares.sum(axis=1), 1.0)


def test_bootstrap_ci_covers_the_population_v_in_most_sampled_streams():
    n, k, rho = 600, 3, 0.3
    covered, widths = 0, []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        classes = rng.integers(0, k, n)
        attrs = np.where(rng.random(n) < rho, classes, rng.integers(0, k, n))
        result = stream_balance(classes, attrs, n_bootstrap=100, seed=seed)
        covered += result.ci_low <= rho <= result.ci_high
        widths.append(result.ci_high - result.ci_low)
    assert covered >= 16
    assert np.mean(widths) < 0.2


def test_ci_of_an_independent_stream_reaches_zero():
    rng = np.random.default_rng(1)
    result = stream_balance(rng.integers(0, 2, 1000), rng.integers(0, 2, 1000), n_bootstrap=200)
    assert result.cramers_v > 0  # plain V is biased upwards on a finite sample...
    assert result.ci_low == 0.0  # ...and the interval corrects for it


def test_ci_lies_in_zero_one_and_holds_the_estimate_for_exact_and_near_zero_streams():
    # an exactly balanced stream (V = 0: every resample lies above it) and a weak dependence
    exact = stream_balance(np.repeat(np.arange(4), 30), np.tile(np.arange(3), 40), n_bootstrap=100)
    assert exact.cramers_v == 0 and exact.ci_low == 0 and exact.ci_high >= 0
    rng = np.random.default_rng(3)
    for seed in range(5):
        cls = rng.integers(0, 4, 300)
        attr = np.where(rng.random(300) < 0.05, cls % 3, rng.integers(0, 3, 300))
        result = stream_balance(cls, attr, n_bootstrap=100, seed=seed)
        assert 0 <= result.ci_low <= result.cramers_v <= result.ci_high <= 1


def test_histograms_keep_original_labels_and_serialise():
    classes = np.array(["cat", "cat", "dog", "dog", "dog"])
    attrs = np.array(["grass", "sand", "sand", "sand", "grass"])
    result = stream_balance(classes, attrs, n_bootstrap=10)
    assert result.counts.loc["dog", "sand"] == 2
    assert list(result.counts.columns) == ["grass", "sand"]
    d = json.loads(json.dumps(result.to_dict()))
    assert d["counts"] == {"cat": {"grass": 1, "sand": 1}, "dog": {"grass": 1, "sand": 2}}


def test_compare_streams_ranks_a_biased_stream_above_a_balanced_one():
    rng = np.random.default_rng(2)
    classes = rng.integers(0, 2, 800)
    biased = np.where(rng.random(800) < 0.8, classes, rng.integers(0, 2, 800))
    balanced = rng.integers(0, 2, 800)
    table = compare_streams(
        {"raw": (classes, biased), "steered": (classes, balanced)}, n_bootstrap=50
    )
    assert list(table.index) == ["raw", "steered"]
    assert table.loc["raw", "ci_low"] > table.loc["steered", "ci_high"]


@pytest.mark.parametrize(
    "classes, attribute, match",
    [
        ([0, 1, 0, 1], [1, 1, 1, 1], "attribute is constant"),
        ([0, 0, 0, 0], [0, 1, 0, 1], "classes is constant"),
        ([0, 1, 0, 1], [0, 1, 0], "attribute must have one label per row"),
        ([0, 1, 0, 1], [0.0, 1.0, np.nan, 1.0], "attribute contains NaN"),
    ],
    ids=["constant-attribute", "constant-classes", "length", "nan"],
)
def test_stream_bad_inputs_raise_value_errors(classes, attribute, match):
    with pytest.raises(ValueError, match=match):
        stream_balance(np.array(classes), np.array(attribute), n_bootstrap=5)


def test_compare_streams_rejects_a_malformed_mapping():
    with pytest.raises(ValueError, match="streams must be a non-empty mapping"):
        compare_streams({})
    with pytest.raises(ValueError, match=r"streams\['raw'\] must be a \(classes, attribute\) pair"):
        compare_streams({"raw": np.zeros(3)})


# ---------------------------------------------------------------- memorisation


def _real(seed, n, d=8):
    return np.random.default_rng(seed).normal(size=(n, d))


def test_near_copies_of_training_points_are_flagged():
    train, held = _real(0, 400), _real(1, 200)
    rng = np.random.default_rng(2)
    copies = train[rng.integers(0, 400, 200)] + 0.01 * rng.normal(size=(200, 8))
    result = memorisation(copies, train, held)
    assert result.memorised
    assert result.near_copy_share == 1.0
    assert result.near_copy_ratio > 10
    assert result.mann_whitney_p < 1e-10 and result.closer_probability > 0.99


def test_fresh_samples_from_the_same_distribution_are_not_flagged():
    train, held = _real(0, 400), _real(1, 200)
    for seed in (3, 4, 5):
        result = memorisation(_real(seed, 200), train, held)
        assert not result.memorised, result
        assert 0.3 < result.closer_probability < 0.7


def test_a_partly_copying_generator_is_caught_by_its_excess_of_near_copies():
    train, held = _real(0, 400), _real(1, 200)
    rng = np.random.default_rng(6)
    gen = _real(7, 200)
    gen[:30] = train[:30] + 0.01 * rng.normal(size=(30, 8))  # 15% copies, the rest fresh
    result = memorisation(gen, train, held)
    assert result.fisher_p < result.alpha
    assert result.memorised
    assert result.near_copy_share >= 0.15


def test_given_threshold_counts_near_copies_at_or_below_it():
    train = np.zeros((3, 1))
    held = np.array([[1.0], [2.0], [3.0], [4.0]])
    gen = np.array([[0.5], [1.0], [2.5], [9.0]])
    result = memorisation(gen, train, held, threshold=1.0)
    assert result.threshold_rule == "given"
    assert result.near_copy_share == 2 / 4  # 0.5 and 1.0
    assert result.heldout_near_copy_share == 1 / 4
    assert result.near_copy_ratio == pytest.approx(2.0)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["n_generated"] == 4 and "q50" in d["generated_distance_quantiles"]


@settings(max_examples=15, deadline=None)
@given(
    nq=st.integers(1, 30),
    nr=st.integers(1, 30),
    d=st.integers(1, 5),
    max_cells=st.integers(1, 50),
    seed=st.integers(0, 1000),
)
def test_chunked_nearest_distances_equal_the_full_computation(nq, nr, d, max_cells, seed):
    rng = np.random.default_rng(seed)
    q, r = rng.normal(size=(nq, d)), rng.normal(size=(nr, d))
    full = np.sqrt(((q[:, None, :] - r[None, :, :]) ** 2).sum(-1)).min(axis=1)
    assert np.allclose(nearest_distances(q, r, max_cells=max_cells), full, atol=1e-9)


@pytest.mark.parametrize(
    "gen, train, held, threshold, match",
    [
        (
            np.zeros((5, 3)),
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            None,
            "generated_features must have the same width",
        ),
        (
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            np.zeros((1, 2)),
            None,
            "heldout_features needs at least 2 rows",
        ),
        (
            np.full((5, 2), np.nan),
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            None,
            "generated_features contains NaN",
        ),
        (
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            np.zeros((5, 2)),
            -1.0,
            "threshold must be a finite number >= 0",
        ),
    ],
    ids=["width", "tiny-heldout", "nan", "threshold"],
)
def test_memorisation_bad_inputs_raise_value_errors(gen, train, held, threshold, match):
    with pytest.raises(ValueError, match=match):
        memorisation(gen, train, held, threshold)

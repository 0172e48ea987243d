"""Guarantees of audits.leakage: calibrated at chance, sensitive to real leakage, clear errors."""

import json
import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.metrics import balanced_accuracy_score

from audits import LeakageResult, leakage
from audits.leakage import _balanced_accuracy

CHEAP = dict(n_repeats=1)


def _leaky(n, d, shift, seed, k=2):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    x = rng.normal(size=(n, d))
    x[:, :k] += shift * np.eye(k)[y]
    return x, y


def test_random_features_sit_at_chance_across_seeds():
    p_values, scores = [], []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        x, y = rng.normal(size=(120, 6)), rng.integers(0, 2, 120)
        result = leakage(x, y, n_permutations=19, seed=seed, **CHEAP)
        p_values.append(result.p_value)
        scores.append(result.balanced_accuracy)
        # p lives on the permutation grid (1 + j) / (1 + n_permutations)
        assert (result.p_value * 20) == pytest.approx(round(result.p_value * 20))
    assert sum(p > 0.05 for p in p_values) >= 8, p_values
    assert abs(np.mean(scores) - 0.5) < 0.05, scores


def test_features_carrying_the_attribute_are_detected():
    x, y = _leaky(240, 6, shift=1.5, seed=1)
    result = leakage(x, y, n_permutations=100, seed=0, **CHEAP)
    assert result.p_value < 0.01
    assert result.ci_low > result.chance == 0.5
    assert result.ci_low <= result.balanced_accuracy <= result.ci_high
    assert result.leaks


def test_multiclass_attribute_uses_one_over_k_chance_and_is_detected():
    x, y = _leaky(240, 6, shift=2.5, seed=2, k=3)
    labels = np.array(["red", "green", "blue"])[y]
    result = leakage(x, labels, n_permutations=19, seed=0, **CHEAP)
    assert result.n_classes == 3
    assert result.chance == pytest.approx(1 / 3)
    assert result.ci_low > 1 / 3
    assert result.p_value == pytest.approx(1 / 20)  # no permutation reached the observed score


def test_skewed_attribute_does_not_look_leaky_by_guessing_the_majority():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(200, 4))
    y = (rng.random(200) < 0.2).astype(int)
    result = leakage(x, y, n_permutations=19, seed=0, **CHEAP)
    assert result.majority_accuracy == pytest.approx(np.mean(y == 0))
    assert result.majority_accuracy > 0.7
    assert abs(result.balanced_accuracy - 0.5) < 0.1
    assert not result.leaks


def test_mlp_probe_finds_nonlinear_leakage_the_linear_probe_misses():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1, 1, size=(240, 2))
    y = (x[:, 0] * x[:, 1] > 0).astype(int)  # XOR: no linear direction carries it
    linear = leakage(x, y, "linear", n_permutations=2, seed=0, **CHEAP)
    mlp = leakage(x, y, "mlp", n_permutations=2, seed=0, **CHEAP)
    assert abs(linear.balanced_accuracy - 0.5) < 0.1
    assert mlp.balanced_accuracy > 0.85
    assert mlp.ci_low > linear.ci_high


def test_pca_option_keeps_only_the_leading_components():
    rng = np.random.default_rng(5)
    n = 240
    y = rng.integers(0, 2, n)
    shared = rng.normal(size=n)
    x = np.column_stack(
        [shared + 0.1 * rng.normal(size=n) for _ in range(4)] + [y + 0.5 * rng.normal(size=n)]
    )
    full = leakage(x, y, n_permutations=9, seed=0, **CHEAP)
    top1 = leakage(x, y, pca=1, n_permutations=9, seed=0, **CHEAP)
    assert full.balanced_accuracy > 0.75  # the last column carries y
    assert abs(top1.balanced_accuracy - 0.5) < 0.1  # the first component is the shared factor


def test_same_seed_gives_the_same_result():
    x, y = _leaky(120, 4, shift=1.0, seed=6)
    a = leakage(x, y, n_permutations=9, seed=7, **CHEAP)
    b = leakage(x, y, n_permutations=9, seed=7, **CHEAP)
    assert a == b


def test_result_serialises_to_json_and_one_row_frame():
    x, y = _leaky(100, 3, shift=1.0, seed=8)
    result = leakage(x, y, n_permutations=5, seed=0, **CHEAP)
    assert isinstance(result, LeakageResult)
    d = json.loads(json.dumps(result.to_dict()))
    assert d["balanced_accuracy"] == result.balanced_accuracy
    assert len(d["permutation_scores"]) == 5
    frame = result.to_frame()
    assert frame.shape[0] == 1
    assert frame.loc[0, "p_value"] == result.p_value


@settings(max_examples=30, deadline=None)
@given(st.data())
def test_balanced_accuracy_matches_sklearn(data):
    k = data.draw(st.integers(2, 4))
    n = data.draw(st.integers(4, 40))
    truth = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    pred = np.array(data.draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n)))
    assume(len(np.unique(truth)) > 1)
    # sklearn averages recall over the classes present in the truth, as we do
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns when pred has classes truth lacks
        expected = balanced_accuracy_score(truth, pred)
    assert _balanced_accuracy(truth, pred, k) == pytest.approx(expected)


def _good():
    x, y = _leaky(40, 3, shift=1.0, seed=9)
    return x, y


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda x, y: (x[:-1], y), "protected must have one label per row"),
        (
            lambda x, y: (np.where(np.arange(x.size).reshape(x.shape) == 0, np.nan, x), y),
            "features contains NaN",
        ),
        (lambda x, y: (x, np.zeros_like(y)), "protected is constant"),
        (lambda x, y: (x, np.r_[y[:-1], 7]), r"protected value\(s\) \[7\] have fewer than 5 rows"),
        (lambda x, y: (x.reshape(40, 3, 1), y), "features must be a 2-d array"),
    ],
    ids=["length", "nan", "constant", "tiny-group", "shape"],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(mutate, match):
    x, y = mutate(*_good())
    with pytest.raises(ValueError, match=match):
        leakage(x, y, n_permutations=1, **CHEAP)


def test_bad_options_raise_value_errors():
    x, y = _good()
    with pytest.raises(ValueError, match="probe must be one of"):
        leakage(x, y, probe="forest")
    with pytest.raises(ValueError, match="n_splits must be an integer >= 2"):
        leakage(x, y, n_splits=1)
    with pytest.raises(ValueError, match="alpha must be in"):
        leakage(x, y, alpha=1.5)


def test_too_few_permutations_to_reach_alpha_never_say_no_leakage():
    # with 9 permutations the smallest p is 0.1 > 0.05: a verdict of "no leakage" would be empty
    x, y = _leaky(200, 4, 3.0, seed=0)
    strong = leakage(x, y, probe="lda", n_permutations=9, **CHEAP)
    assert strong.balanced_accuracy > 0.9 and strong.p_value == pytest.approx(0.1)
    assert not strong.leaks and strong.p_floor == pytest.approx(0.1)
    assert strong.verdict.startswith(
        "inconclusive: with 9 permutations the smallest possible p is 0.1 > alpha 0.05"
    )
    assert "run at least 19" in strong.verdict
    rng = np.random.default_rng(1)
    blind = leakage(
        rng.normal(size=(100, 4)), rng.integers(0, 2, 100), probe="lda", n_permutations=9, **CHEAP
    )
    assert blind.verdict.startswith("inconclusive") and blind.to_dict()["verdict"] == blind.verdict
    assert (
        leakage(x, y, probe="lda", n_permutations=0, **CHEAP).verdict
        == "inconclusive: no permutation test was run"
    )
    enough = leakage(x, y, probe="lda", n_permutations=19, **CHEAP)
    assert enough.verdict == "leaks"
    null = leakage(
        rng.normal(size=(100, 4)), rng.integers(0, 2, 100), probe="lda", n_permutations=19, **CHEAP
    )
    assert null.verdict in (
        "no leakage detected",
        "leaks",
    )  # 19 permutations can reach 0.05: a real verdict
    from audits import AuditReport

    text = AuditReport().add("weak test", blind).to_markdown()
    assert "no leakage detected" not in text and "**inconclusive" in text


def test_the_no_leakage_verdict_is_calibrated_at_the_floor():
    # 19 permutations: p = 1/20 = alpha is reachable; under no leakage "leaks" comes at most ~alpha
    # of the time
    calls = []
    for seed in range(40):
        rng = np.random.default_rng(500 + seed)
        result = leakage(
            rng.normal(size=(60, 3)),
            rng.integers(0, 2, 60),
            probe="lda",
            n_permutations=19,
            seed=seed,
            **CHEAP,
        )
        calls.append(result.leaks)
    assert sum(calls) <= 6, sum(calls)  # expected 2 of 40 at alpha 0.05; 6 has binomial tail < 1%

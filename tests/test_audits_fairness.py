"""Guarantees of audits.fairness: MetricFrame numbers equal hand counts, gaps equal fairlearn's,
undefined rates show as NaN (never 0), bad inputs raise."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference

from audits import FairnessResult, group_fairness

# Train features that any logistic regression separates at 0 (binary) or at the one-hot centres
# (multiclass); test features placed on the side of the prediction we want, so every test
# prediction is known in advance and the rates can be counted by hand.


def _binary_setup(pred):
    train_x = np.array([-3.0, -2.0, -1.0, 1.0, 2.0, 3.0] * 4)[:, None]
    train_y = (train_x[:, 0] > 0).astype(int)
    test_x = np.where(np.asarray(pred) == 1, 2.0, -2.0)[:, None]
    return train_x, train_y, test_x


def _multiclass_setup(pred, k=3):
    centres = 4.0 * np.eye(k)
    train_y = np.repeat(np.arange(k), 10)
    train_x = centres[train_y] + np.random.default_rng(0).normal(scale=0.3, size=(len(train_y), k))
    return train_x, train_y, centres[np.asarray(pred)]


def test_by_group_rates_equal_a_hand_computation():
    #            group a (4 rows)  | group b (4 rows)
    y_true = np.array([1, 1, 0, 0, 1, 0, 0, 0])
    y_pred = np.array([1, 0, 1, 0, 1, 1, 1, 0])
    group = np.array(["a"] * 4 + ["b"] * 4)
    train_x, train_y, test_x = _binary_setup(y_pred)
    result = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=50)
    t = result.by_group
    # a: TP=1 FN=1 FP=1 TN=1 ; b: TP=1 FN=0 FP=2 TN=1
    assert t.loc["a", "n"] == 4 and t.loc["b", "n"] == 4
    assert t.loc["a", "accuracy"] == pytest.approx(2 / 4)
    assert t.loc["b", "accuracy"] == pytest.approx(2 / 4)
    assert t.loc["a", "selection_rate[1]"] == pytest.approx(2 / 4)
    assert t.loc["b", "selection_rate[1]"] == pytest.approx(3 / 4)
    assert t.loc["a", "tpr[1]"] == pytest.approx(1 / 2) and t.loc["a", "n_pos[1]"] == 2
    assert t.loc["b", "tpr[1]"] == pytest.approx(1 / 1) and t.loc["b", "n_pos[1]"] == 1
    assert t.loc["a", "fpr[1]"] == pytest.approx(1 / 2) and t.loc["a", "n_neg[1]"] == 2
    assert t.loc["b", "fpr[1]"] == pytest.approx(2 / 3) and t.loc["b", "n_neg[1]"] == 3
    s = result.summary
    assert s["accuracy"] == pytest.approx(4 / 8)
    assert s["demographic_parity_difference"] == pytest.approx(3 / 4 - 2 / 4)
    # equalized odds: max(|1 - 1/2|, |2/3 - 1/2|) = 1/2
    assert s["equalized_odds_difference"] == pytest.approx(1 / 2)
    assert s["undefined_rates"] == []


def test_binary_gaps_equal_fairlearn_and_sit_inside_their_ci():
    rng = np.random.default_rng(0)
    n = 300
    group = rng.choice(["f", "m", "x"], n)
    y_true = rng.integers(0, 2, n)
    y_pred = np.where(rng.random(n) < np.where(group == "f", 0.7, 0.4), 1, 0)
    train_x, train_y, test_x = _binary_setup(y_pred)
    s = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=300, seed=1).summary
    dp = demographic_parity_difference(y_true, y_pred, sensitive_features=group)
    eo = equalized_odds_difference(y_true, y_pred, sensitive_features=group)
    assert s["demographic_parity_difference"] == pytest.approx(dp)
    assert s["equalized_odds_difference"] == pytest.approx(eo)
    assert s["demographic_parity_ci_low"] < dp < s["demographic_parity_ci_high"]
    assert s["equalized_odds_ci_low"] < eo < s["equalized_odds_ci_high"]
    assert s["aggregation"].startswith("binary target, positive class 1")


def test_multiclass_gaps_are_the_max_over_one_vs_rest_classes():
    rng = np.random.default_rng(1)
    n = 240
    group = rng.integers(0, 2, n)
    y_true = rng.integers(0, 3, n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.integers(0, 3, n))
    y_pred[(group == 1) & (rng.random(n) < 0.3)] = 2  # group 1 gets class 2 more often
    train_x, train_y, test_x = _multiclass_setup(y_pred)
    result = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=100)
    dps, eos = [], []
    for c in range(3):
        dps.append(
            demographic_parity_difference(y_true == c, y_pred == c, sensitive_features=group)
        )
        eos.append(equalized_odds_difference(y_true == c, y_pred == c, sensitive_features=group))
    assert result.summary["demographic_parity_difference"] == pytest.approx(max(dps))
    assert result.summary["equalized_odds_difference"] == pytest.approx(max(eos))
    assert "one-vs-rest" in result.summary["aggregation"]
    for c in range(3):
        for rate in ("selection_rate", "tpr", "n_pos", "fpr", "n_neg"):
            assert f"{rate}[{c}]" in result.by_group.columns


def test_a_rate_with_no_denominator_is_nan_and_named_not_zero():
    # group b has no positives, so its TPR is undefined (fairlearn's own function would say 0)
    y_true = np.array([1, 0, 1, 0, 0, 0, 0])
    y_pred = np.array([1, 0, 0, 1, 1, 0, 0])
    group = np.array(["a", "a", "a", "a", "b", "b", "b"])
    train_x, train_y, test_x = _binary_setup(y_pred)
    result = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=50)
    assert math.isnan(result.by_group.loc["b", "tpr[1]"])
    assert result.by_group.loc["b", "n_pos[1]"] == 0
    assert "tpr[1] undefined (no positives)" in result.by_group.loc["b", "note"]
    assert (
        "undefined" not in result.by_group.loc["a", "note"]
    )  # a's rates are defined, from few rows (flagged)
    assert result.summary["undefined_rates"] == ["b: tpr[1] undefined (no positives)"]
    # the TPR gap has one defined group, so equalized odds falls back to the FPR gap: |1/2 - 1/3|
    assert result.summary["equalized_odds_difference"] == pytest.approx(1 / 2 - 1 / 3)


def test_result_is_deterministic_and_serialises():
    rng = np.random.default_rng(2)
    y_true, y_pred, group = rng.integers(0, 2, 60), rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    train_x, train_y, test_x = _binary_setup(y_pred)
    a = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=50, seed=3)
    b = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=50, seed=3)
    assert isinstance(a, FairnessResult)
    assert a.summary == b.summary
    pd.testing.assert_frame_equal(a.by_group, b.by_group)
    d = json.loads(json.dumps(a.to_dict()))
    assert len(d["by_group"]) == 2 and d["by_group"][0]["group"] == 0


@pytest.mark.parametrize(
    "change, match",
    [
        (
            dict(test_protected=np.array([0, 1] * 5 + [0])),
            "test_protected must have one label per row",
        ),
        (
            dict(test_protected=np.array([0] * 9 + [1])),
            r"test_protected value\(s\) \[1\] have fewer than 2 rows",
        ),
        (dict(test_protected=np.zeros(10, int)), "test_protected is constant"),
        (dict(train_features=np.full((24, 1), np.nan)), "train_features contains NaN"),
        (dict(test_features=np.zeros((10, 2))), "same width"),
        (dict(train_target=np.zeros(24, int)), "train_target is constant"),
        (dict(test_target=np.zeros(9, int)), "test_target must have one label per row"),
    ],
    ids=[
        "length",
        "singleton-group",
        "constant-group",
        "nan",
        "width",
        "constant-target",
        "target-length",
    ],
)
def test_bad_inputs_raise_value_errors_naming_the_argument(change, match):
    pred = np.array([0, 1] * 5)
    train_x, train_y, test_x = _binary_setup(pred)
    args = dict(
        train_features=train_x,
        train_target=train_y,
        test_features=test_x,
        test_target=pred,
        test_protected=np.array([0, 1] * 5),
    )
    args.update(change)
    with pytest.raises(ValueError, match=match):
        group_fairness(**args, n_bootstrap=10)


def test_a_gap_from_a_group_with_one_positive_carries_a_warning():
    # group b has a single positive: its TPR is 0 or 1, and the EO difference of 1 rests on that one
    # row
    y_true = np.array([1] * 30 + [0] * 30 + [1] + [0] * 29)
    y_pred = np.concatenate([y_true[:60], [0], np.zeros(29, dtype=int)])
    group = np.array(["a"] * 60 + ["b"] * 30)
    train_x, train_y, test_x = _binary_setup(y_pred)
    result = group_fairness(train_x, train_y, test_x, y_true, group, n_bootstrap=50)
    assert result.summary["equalized_odds_difference"] == pytest.approx(1.0)
    assert result.summary["small_groups"] == ["b: tpr[1] from 1 positives"]
    assert "tpr[1] from only 1 positives (< 10)" in result.by_group.loc["b", "note"]
    assert result.summary["equalized_odds_ci_high"] <= 1.0  # clipped to the range of a gap
    from audits import AuditReport

    text = AuditReport().add("f", result).to_markdown()
    assert "Warning: rates from few rows" in text and "b: tpr[1] from 1 positives" in text

"""Probes: they find the attribute's direction, report honest baselines, and reject bad input."""

import numpy as np
import pytest
import torch
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from plumbing.validation import check_labels, check_latents
from steering.baselines import LinearProbe, probe_report
from steering.leace import LeaceEraser
from steering.probes import MLPProbe, orthonormal_rows


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny solves are fastest single-threaded; on a shared CPU, BLAS threads spin and crawl."""
    with threadpool_limits(limits=1):
        yield


def shifted_data(n, d, k, seed, offset=5.0, scale=2.0):
    """Isotropic noise, class c shifted by `scale` along axis c, the whole cloud far from 0."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % k)
    X = rng.normal(size=(n, d)) + offset
    X[np.arange(n), y] += scale
    return X, y


@pytest.mark.parametrize("kind", ["logreg", "svm"])
def test_binary_probe_direction_matches_the_planted_one(kind):
    rng = np.random.default_rng(0)
    d = 6
    true = rng.normal(size=d)
    true /= np.linalg.norm(true)
    y = rng.integers(0, 2, 1500)
    X = rng.normal(size=(1500, d)) + np.outer(2 * y - 1, true) * 1.5 + 10.0  # far from the origin
    probe = LinearProbe(kind).fit(X, y)
    assert probe.directions_.shape == (1, d) and probe.subspace_.shape == (1, d)
    assert np.allclose(np.linalg.norm(probe.directions_, axis=1), 1.0)
    assert abs(probe.directions_[0] @ true) > 0.97  # isotropic noise: the normal is the shift
    scores = probe.score(X, y)
    assert scores["accuracy"] > 0.9  # the intercept absorbs the uncentred cloud


@pytest.mark.parametrize("kind, rank", [("logreg", 2), ("svm", 3)])
def test_multiclass_directions_span_the_class_shifts(kind, rank):
    d, k = 7, 3
    X, y = shifted_data(1800, d, k, seed=1)
    probe = LinearProbe(kind).fit(X, y)
    assert probe.directions_.shape == (k, d)
    # multinomial logreg normals are mean-removed (span k - 1 dims); one-vs-rest SVM keeps k
    assert probe.subspace_.shape == (rank, d)
    assert np.allclose(probe.subspace_ @ probe.subspace_.T, np.eye(rank), atol=1e-10)
    # Every class-mean difference (a 2-D span inside e0..e2) must lie in the probe subspace.
    means = np.stack([X[y == c].mean(0) for c in range(k)])
    diffs = means[1:] - means[0]
    diffs /= np.linalg.norm(diffs, axis=1, keepdims=True)
    assert np.linalg.norm(diffs @ probe.subspace_.T, axis=1).min() > 0.95
    assert probe.score(X, y)["accuracy"] > 0.8


def test_score_reports_majority_and_balanced_accuracy():
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.8).astype(int)  # 80 / 20, no signal in X
    X = rng.normal(size=(1000, 4))
    scores = LinearProbe().fit(X, y).score(X, y)
    assert scores["majority"] == pytest.approx(np.mean(y == 1))
    assert scores["accuracy"] == pytest.approx(
        scores["majority"], abs=0.02
    )  # predicts the majority
    assert scores["balanced_accuracy"] == pytest.approx(0.5, abs=0.05)


def test_probe_report_is_a_flat_dict_of_test_scores():
    X, y = shifted_data(800, 5, 2, seed=3)
    report = probe_report(X[:400], y[:400], X[400:], y[400:], kind="logreg")
    assert set(report) == {
        "kind",
        "accuracy",
        "balanced_accuracy",
        "majority",
        "train_accuracy",
        "n_train",
        "n_test",
    }
    assert report["n_train"] == 400 and report["n_test"] == 400
    assert report["accuracy"] > 0.8
    assert report["majority"] == pytest.approx(np.bincount(y[400:]).max() / 400)
    with pytest.raises(ValueError, match="kind"):
        probe_report(X, y, X, y, kind="forest")


def test_torch_and_numpy_inputs_give_the_same_probe():
    X, y = shifted_data(600, 4, 2, seed=4)
    a = LinearProbe().fit(X, y)
    b = LinearProbe().fit(torch.from_numpy(X).float(), torch.from_numpy(y))
    assert np.allclose(a.directions_, b.directions_, atol=1e-3)


def test_mlp_probe_sees_what_linear_erasure_leaves():
    # XOR of two signs (no linear signal) plus a linear shift that LEACE removes: afterwards a
    # linear probe is at chance, an MLP still reads the label.
    rng = np.random.default_rng(5)
    n = 1200
    X = rng.normal(size=(n, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    X[:, 2] += 1.5 * y
    Xe = LeaceEraser().fit(X, y).transform(X)
    tr, te = slice(0, 800), slice(800, None)
    before = probe_report(X[tr], y[tr], X[te], y[te], kind="logreg")
    linear = probe_report(Xe[tr], y[tr], Xe[te], y[te], kind="logreg")
    mlp = probe_report(Xe[tr], y[tr], Xe[te], y[te], kind="mlp", hidden=(32,), max_iter=400)
    assert before["accuracy"] > 0.7
    assert linear["accuracy"] < linear["majority"] + 0.05
    assert mlp["accuracy"] > 0.85


@pytest.mark.parametrize(
    "probe", [LinearProbe(), LinearProbe("svm"), MLPProbe(hidden=(8,), max_iter=50)]
)
def test_bad_inputs_raise_clear_errors(probe):
    X, y = shifted_data(100, 3, 2, seed=6)
    with pytest.raises(NotFittedError):  # a ValueError subclass
        probe.score(X, y)
    with pytest.raises(ValueError, match="must match"):
        probe.fit(X, y[:-1])
    with pytest.raises(ValueError, match="distinct class"):
        probe.fit(X, np.zeros(100, dtype=int))
    Xn = X.copy()
    Xn[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        probe.fit(Xn, y)
    with pytest.raises(ValueError, match="2-D"):
        probe.fit(X[:, 0], y)
    with pytest.raises(ValueError, match="integer"):
        probe.fit(X, y + 0.5)
    probe.fit(X, y)
    with pytest.raises(ValueError, match="d=3"):
        probe.score(X[:, :2], y)


def test_constructor_rejects_bad_parameters():
    with pytest.raises(ValueError, match="kind"):
        LinearProbe("tree")
    with pytest.raises(ValueError, match="C"):
        LinearProbe(C=0)
    with pytest.raises(ValueError, match="hidden"):
        MLPProbe(hidden=())


def test_input_helpers():
    t = check_latents(np.arange(6).reshape(3, 2))
    assert t.dtype == torch.float64 and t.shape == (3, 2)
    assert check_labels(np.array([0.0, 1.0, 1.0]), 3).dtype == np.int64
    with pytest.raises(ValueError, match="empty|at least one"):
        check_latents(np.zeros((0, 3)))
    Q = orthonormal_rows(np.array([[1.0, 0, 0], [2.0, 0, 0], [0, 1.0, 1.0]]))
    assert Q.shape == (2, 3) and np.allclose(Q @ Q.T, np.eye(2))

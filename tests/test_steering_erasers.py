"""LEACE and the projection baselines, and the Gaussian OT map: their guarantees."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from steering.baselines import (
    LinearProbe,
    ProjectionEraser,
    mean_difference_subspace,
    probe_report,
)
from steering.leace import LeaceEraser, LeaceFitter
from steering.ot import gaussian_ot_map


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """Tiny solves are fastest single-threaded; on a shared CPU, BLAS threads spin and crawl."""
    with threadpool_limits(limits=1):
        yield


SMALL = settings(max_examples=20, deadline=None)


def latents(n, d, k, seed, shift=2.0):
    """Anisotropic, uncentred latents whose class c is shifted along a random direction."""
    rng = np.random.default_rng(seed)
    y = rng.permutation(np.arange(n) % k)
    mix = rng.normal(size=(d, d)) / np.sqrt(d) + np.eye(d)
    shifts = rng.normal(size=(k, d)) * shift / np.sqrt(d)
    X = rng.normal(size=(n, d)) @ mix + shifts[y] + rng.normal(size=d) * 3
    return X, y


def cross_cov(X, y, k=None):
    """Cov(x, onehot(y)) on the given sample, [d, k]."""
    Z = np.eye(k or y.max() + 1)[y]
    return (X - X.mean(0)).T @ (Z - Z.mean(0)) / len(y)


def mean_sq_edit(X, Xe):
    return float(((np.asarray(Xe) - np.asarray(X)) ** 2).sum(1).mean())


def fit_any(name, X, y):
    """Fit each eraser in the family (LEACE and the projection baselines)."""
    return {
        "projection": ProjectionEraser,
        "projection-means": lambda: ProjectionEraser(kind="means"),
        "leace": LeaceEraser,
    }[name]().fit(X, y)


ALL = ["projection", "projection-means", "leace"]


# ---------------------------------------------------------------------------------------------
# the API every eraser shares


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize("k", [2, 4])
def test_types_and_dtypes_come_back_as_given(name, k):
    X, y = latents(400, 6, k, seed=k)
    eraser = fit_any(name, X, y)
    ref = eraser.transform(X)
    assert isinstance(ref, np.ndarray) and ref.dtype == np.float64 and ref.shape == X.shape
    out32 = eraser.transform(X.astype(np.float32))
    assert isinstance(out32, np.ndarray) and out32.dtype == np.float32
    assert np.allclose(out32, ref, atol=1e-4 * np.abs(ref).max())
    for dtype in (torch.float32, torch.float64):
        t = eraser.transform(torch.from_numpy(X).to(dtype))
        assert isinstance(t, torch.Tensor) and t.dtype == dtype
        assert np.allclose(t.double().numpy(), ref, atol=1e-4 * np.abs(ref).max())
    # forward is transform on tensors, and works on any leading shape [..., d]
    xt = torch.from_numpy(X)
    assert torch.equal(eraser(xt), eraser.transform(xt))
    assert torch.allclose(eraser(xt.reshape(4, 100, 6)).reshape(400, 6), eraser(xt))


@pytest.mark.parametrize("name", ALL)
def test_erasing_twice_is_erasing_once(name):
    X, y = latents(300, 5, 3, seed=7)
    eraser = fit_any(name, X, y)
    once = eraser.transform(X)
    assert np.allclose(eraser.transform(once), once, atol=1e-9)
    assert np.array_equal(type(eraser)(**eraser.config()["params"]).fit_transform(X, y), once)


@pytest.mark.parametrize("name", ALL)
def test_state_dict_and_config_round_trip_through_safetensors(name, tmp_path):
    X, y = latents(300, 5, 3, seed=8)
    eraser = fit_any(name, X, y)
    save_file(eraser.state_dict(), tmp_path / "eraser.safetensors")
    config = json.loads(json.dumps(eraser.config()))  # must be plain JSON
    restored = type(eraser).from_state(load_file(tmp_path / "eraser.safetensors"), config)
    xt = torch.from_numpy(X)
    assert torch.equal(restored(xt), eraser(xt))
    assert restored.config() == config
    # load_state_dict also works into a fresh, unfitted eraser of the same kind
    fresh = type(eraser)(**config["params"])
    fresh.load_state_dict(eraser.state_dict())
    assert torch.equal(fresh(xt), eraser(xt))
    with pytest.raises(ValueError, match="not a"):
        (LeaceEraser if name != "leace" else ProjectionEraser).from_state(
            eraser.state_dict(), config
        )
    with pytest.raises(ValueError, match="missing"):
        type(eraser).from_state({}, config)


@pytest.mark.parametrize("name", ALL)
def test_bad_inputs_raise_clear_errors(name):
    X, y = latents(120, 4, 2, seed=9)
    unfitted = type(fit_any(name, X, y))()
    with pytest.raises(NotFittedError):  # a ValueError subclass
        unfitted.transform(X)
    with pytest.raises(ValueError, match="must match"):
        fit_any(name, X, y[:-1])
    with pytest.raises(ValueError, match="distinct class"):
        fit_any(name, X, np.ones_like(y))
    Xn = X.copy()
    Xn[5, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        fit_any(name, Xn, y)
    eraser = fit_any(name, X, y)
    with pytest.raises(ValueError, match="NaN"):
        eraser.transform(Xn)
    with pytest.raises(ValueError, match="d=4"):
        eraser.transform(X[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        eraser.transform(X[0])


# ---------------------------------------------------------------------------------------------
# LEACE


@SMALL
@given(
    d=st.integers(1, 10),
    k=st.integers(2, 5),
    extra=st.integers(0, 40),
    seed=st.integers(0, 2**31 - 1),
    rank_cut=st.booleans(),
)
def test_leace_zeroes_the_cross_covariance(d, k, extra, seed, rank_cut):
    n = 2 * k + extra  # may be fewer samples than dimensions
    X, y = latents(n, d, k, seed)
    if rank_cut and d > 1:
        X[:, -1] = X[:, 0] * 2 - 1  # a rank-deficient covariance
    Xe = LeaceEraser().fit(X, y).transform(X)
    scale = max(1.0, np.abs(X).max())
    assert np.abs(cross_cov(Xe, y, k)).max() <= 1e-9 * scale
    # hence every class-conditional mean equals the overall mean
    for c in range(k):
        assert np.allclose(Xe[y == c].mean(0), Xe.mean(0), atol=1e-8 * scale)


@pytest.mark.parametrize("k, probs", [(2, None), (2, [0.7, 0.3]), (4, None)])
def test_leace_leaves_a_fresh_probe_at_the_majority_rate(k, probs):
    rng = np.random.default_rng(10)
    n, d = 3000, 8
    X, _ = latents(n, d, k, seed=11)
    y = rng.choice(k, size=n, p=probs)
    X = X + np.random.default_rng(12).normal(size=(k, d))[y] * 1.5  # plant a strong signal
    tr, te = slice(0, 2000), slice(2000, None)
    before = probe_report(X[tr], y[tr], X[te], y[te])
    eraser = LeaceEraser().fit(X[tr], y[tr])
    after = probe_report(eraser.transform(X[tr]), y[tr], eraser.transform(X[te]), y[te])
    assert before["accuracy"] > before["majority"] + 0.2
    # no better than a constant: at most the majority rate, and chance balanced accuracy
    assert after["accuracy"] <= after["majority"] + 0.02
    assert after["balanced_accuracy"] == pytest.approx(1 / k, abs=0.03)
    assert eraser.rank_ == k - 1


@SMALL
@given(d=st.integers(2, 8), k=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_leace_has_the_least_mean_squared_edit_among_valid_erasers(d, k, seed):
    X, y = latents(60 + 10 * d, d, k, seed)
    mu = X.mean(0)
    Xe = LeaceEraser().fit(X, y).transform(X)
    leace_cost = mean_sq_edit(X, Xe)
    # Alternative 1: orthogonal projection off the class-mean differences.
    ortho = ProjectionEraser(kind="means").fit(X, y).transform(X)
    # Alternative 2: a random oblique projection M = U (V^T U)^{-1} V^T fixing span(U) =
    # span(Sigma_xz).
    U = mean_difference_subspace(X, y).T
    V = np.random.default_rng(seed).normal(size=U.shape)
    M = U @ np.linalg.solve(V.T @ U, V.T)
    oblique = X - (X - mu) @ M.T
    scale = max(1.0, np.abs(X).max())
    for alternative in (ortho, oblique):
        assert np.abs(cross_cov(alternative, y, k)).max() <= 1e-8 * scale  # it is a valid eraser
        assert leace_cost <= mean_sq_edit(X, alternative) * (1 + 1e-9) + 1e-12
    # ... and LEACE's edit lies in the span of the class-mean differences.
    edit = Xe - X
    assert np.abs(edit - edit @ U @ U.T).max() <= 1e-8 * scale


def test_leace_beats_projections_where_the_latent_is_anisotropic():
    # Correlated noise: the probe normal is not the mean difference.
    rng = np.random.default_rng(13)
    n = 3000
    y = rng.integers(0, 2, n)
    X = (
        rng.normal(size=(n, 2)) @ np.linalg.cholesky([[1.0, 0.9], [0.9, 1.0]]).T
        + np.outer(y, [1.5, 0])
        + [3, -2]
    )
    Xt = X[:1500]
    fresh = {}
    for name, eraser in [
        ("probe", ProjectionEraser()),
        ("means", ProjectionEraser("means")),
        ("leace", LeaceEraser()),
    ]:
        eraser.fit(Xt, y[:1500])
        fresh[name] = probe_report(
            eraser.transform(Xt), y[:1500], eraser.transform(X[1500:]), y[1500:]
        )["accuracy"]
        fresh[name + "_cost"] = mean_sq_edit(Xt, eraser.transform(Xt))
    assert fresh["probe"] > 0.6  # removing the probe normal alone leaves the attribute readable
    assert fresh["means"] < 0.53 and fresh["leace"] < 0.53
    assert fresh["leace_cost"] < 0.7 * fresh["means_cost"]


def test_streaming_fit_equals_one_shot_fit():
    X, y = latents(500, 7, 3, seed=14)
    one = LeaceFitter(7, 3).update(X, y)
    stream = LeaceFitter(7, 3)
    rng = np.random.default_rng(15)
    cuts = np.sort(rng.choice(np.arange(1, 500), size=30, replace=False))
    for chunk in np.split(np.arange(500), cuts):  # includes batches of one
        stream.update(torch.from_numpy(X[chunk]).float(), torch.from_numpy(y[chunk]))
    X32 = X.astype(np.float32).astype(np.float64)  # the stream saw float32 latents
    one32 = LeaceFitter(7, 3).update(X32, np.eye(3)[y])  # one-hot rows are accepted too
    assert stream.n_ == 500
    assert torch.allclose(stream.mean_x_, one32.mean_x_, atol=1e-10)
    assert torch.allclose(stream.sigma_xx, one32.sigma_xx, atol=1e-9)
    assert torch.allclose(stream.sigma_xz, one32.sigma_xz, atol=1e-10)
    assert torch.allclose(stream.eraser().edit_matrix(), one32.eraser().edit_matrix(), atol=1e-8)
    # and the statistics are the textbook ones
    assert np.allclose(one.sigma_xx.numpy(), np.cov(X.T), atol=1e-10)
    assert np.allclose(one.sigma_xz.numpy(), cross_cov(X, y) * 500 / 499, atol=1e-10)
    fitted = LeaceEraser().fit(X, y)
    assert torch.allclose(
        fitted(torch.from_numpy(X)), one.eraser()(torch.from_numpy(X)), atol=1e-10
    )


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_leace_handles_rank_deficient_latents(dtype):
    rng = np.random.default_rng(16)
    n, r, d = 400, 3, 8
    y = rng.integers(0, 3, n)
    basis = rng.normal(size=(r, d))
    X = (rng.normal(size=(n, r)) + np.eye(3)[y] * 2) @ basis + 5.0  # rank 3 in R^8, constant offset
    X = X.astype(dtype)
    eraser = LeaceEraser().fit(X, y)
    Xe = eraser.transform(X).astype(np.float64)
    assert np.isfinite(Xe).all()
    assert (
        np.abs(cross_cov(Xe, y)).max() <= (1e-9 if dtype == np.float64 else 1e-5) * np.abs(X).max()
    )
    # the edit stays inside the data's affine subspace
    edit = Xe - X
    P = np.linalg.pinv(basis) @ basis
    assert np.abs(edit - edit @ P).max() <= 1e-6 * np.abs(X).max()
    assert eraser.rank_ == 2


def test_leace_fitter_rejects_bad_input():
    fitter = LeaceFitter(3, 2)
    with pytest.raises(ValueError, match="at least 2 samples"):
        fitter.eraser()
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fitter.update(np.zeros((4, 3)), [0, 1, 2, 1])
    with pytest.raises(ValueError, match="d=3"):
        fitter.update(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="must match"):
        fitter.update(np.zeros((4, 3)), [0, 1, 0])
    with pytest.raises(ValueError, match="shape"):
        fitter.update(np.zeros((4, 3)), np.zeros((4, 3)))
    fitter.update(np.random.default_rng(0).normal(size=(5, 3)), np.zeros(5, dtype=int))
    with pytest.raises(ValueError, match="one class"):
        fitter.eraser()
    with pytest.raises(ValueError, match="k must be"):
        LeaceFitter(3, 1)


# ---------------------------------------------------------------------------------------------
# projection


def test_projection_collapses_the_probe_coordinate_to_its_mean():
    X, y = latents(600, 6, 2, seed=17)
    eraser = ProjectionEraser().fit(X, y)
    Q = eraser.right_.numpy()
    Xe = eraser.transform(X)
    assert np.allclose(eraser.left_.numpy(), Q.T) and np.allclose(Q @ Q.T, np.eye(eraser.rank_))
    assert np.allclose(Xe @ Q.T, X.mean(0) @ Q.T)  # the removed coordinate is the mean for all
    edit = Xe - X
    assert np.allclose(edit - edit @ Q.T @ Q, 0, atol=1e-10)  # nothing else moves
    assert np.allclose(Xe.mean(0), X.mean(0))
    probe = LinearProbe().fit(X, y)
    assert np.ptp(probe.decision_function(Xe)) < 1e-6 * np.ptp(probe.decision_function(X))


# ---------------------------------------------------------------------------------------------
# Gaussian optimal transport


def random_gaussian(d, rng):
    B = rng.normal(size=(d, d))
    return rng.normal(size=d) * 3, B @ B.T / d + 0.1 * np.eye(d)


def test_ot_map_pushes_samples_of_a_onto_b():
    rng = np.random.default_rng(22)
    d = 5
    (mu_a, cov_a), (mu_b, cov_b) = random_gaussian(d, rng), random_gaussian(d, rng)
    Xa = rng.multivariate_normal(mu_a, cov_a, size=20000)
    # exact on the sample's own statistics
    mean, cov = torch.from_numpy(Xa.mean(0)), torch.cov(torch.from_numpy(Xa).T)
    A, b = gaussian_ot_map(mean, cov, torch.from_numpy(mu_b), torch.from_numpy(cov_b))
    pushed = torch.from_numpy(Xa) @ A.T + b
    assert torch.allclose(pushed.mean(0), torch.from_numpy(mu_b), atol=1e-8)
    assert torch.allclose(torch.cov(pushed.T), torch.from_numpy(cov_b), atol=1e-6)
    # and within sampling error for the true parameters
    A, b = gaussian_ot_map(mu_a, cov_a, mu_b, cov_b)
    assert isinstance(A, np.ndarray)
    pushed = Xa @ A.T + b
    assert np.allclose(pushed.mean(0), mu_b, atol=0.05)
    assert np.allclose(np.cov(pushed.T), cov_b, atol=0.05)
    assert np.allclose(A @ cov_a @ A, cov_b, atol=1e-6)
    assert np.allclose(mu_b + A @ (Xa[0] - mu_a), A @ Xa[0] + b)


@SMALL
@given(d=st.integers(1, 8), seed=st.integers(0, 2**31 - 1))
def test_ot_map_is_symmetric_psd_and_moves_least(d, seed):
    rng = np.random.default_rng(seed)
    (mu_a, cov_a), (mu_b, cov_b) = random_gaussian(d, rng), random_gaussian(d, rng)
    A, b = gaussian_ot_map(mu_a, cov_a, mu_b, cov_b)
    assert np.allclose(A, A.T)
    assert np.linalg.eigvalsh(A).min() >= -1e-10
    assert np.allclose(A @ cov_a @ A, cov_b, atol=1e-6 * np.abs(cov_b).max())

    # Another affine map pushing a onto b (Cholesky factors) moves mass at least as far.
    def cost(M):  # E||T(x) - x||^2 for x ~ N(mu_a, cov_a), T(x) = mu_b + M (x - mu_a)
        E = M - np.eye(d)
        return np.sum((mu_b - mu_a) ** 2) + np.trace(E @ cov_a @ E.T)

    chol = np.linalg.cholesky(cov_b) @ np.linalg.inv(np.linalg.cholesky(cov_a))
    assert np.allclose(chol @ cov_a @ chol.T, cov_b)
    assert cost(A) <= cost(chol) + 1e-9


@pytest.mark.parametrize("d", [1, 4])
def test_ot_map_is_the_identity_when_a_equals_b(d):
    rng = np.random.default_rng(23)
    mu, cov = random_gaussian(d, rng)
    cov[:, -1] = cov[-1, :] = 0.0  # singular: the ridge keeps it stable
    A, b = gaussian_ot_map(mu, cov, mu, cov)
    assert np.allclose(A, np.eye(d), atol=1e-8) and np.allclose(b, 0, atol=1e-7)


def test_ot_map_refuses_statistics_of_different_sizes():
    with pytest.raises(ValueError, match="cov_b"):
        gaussian_ot_map(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))

"""Erasers (projection, INLP, LEACE, conditional) and the Gaussian OT map: their guarantees."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file, save_file
from sklearn.exceptions import NotFittedError
from threadpoolctl import threadpool_limits

from steering.conditional import ConditionalEraser
from steering.inlp import INLPEraser
from steering.leace import LeaceEraser, LeaceFitter
from steering.ot import GaussianFit, GaussianOTMap, gaussian_ot_map
from steering.probes import LinearProbe, probe_report
from steering.projection import ProjectionEraser, mean_difference_subspace


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
    """Fit each eraser in the family (the conditional one keeps whether x_0 is above its median)."""
    if name == "conditional":
        keep = (X[:, 0] > np.median(X[:, 0])).astype(int)
        return ConditionalEraser("attr", "x0-high").fit(X, y, keep)
    return {
        "projection": ProjectionEraser,
        "projection-means": lambda: ProjectionEraser(kind="means"),
        "inlp": lambda: INLPEraser(max_iter=3),
        "leace": LeaceEraser,
    }[name]().fit(X, y)


ALL = ["projection", "projection-means", "inlp", "leace", "conditional"]


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
    unfitted = ConditionalEraser() if name == "conditional" else type(fit_any(name, X, y))()
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
    # Alternative 2: a random oblique projection M = U (V^T U)^{-1} V^T fixing span(U) = span(Sigma_xz).
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
# projection and INLP


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


def test_inlp_stops_when_a_fresh_probe_is_at_the_majority_rate():
    X, y = latents(2400, 10, 3, seed=18, shift=4.0)
    Xt, yt = X[1600:], y[1600:]
    eraser = INLPEraser(tol=0.02).fit(X[:1600], y[:1600])
    assert eraser.converged_ and eraser.n_iter_ >= 1
    assert eraser.history_[0] > eraser.majority_ + 0.3
    assert eraser.history_[-1] <= eraser.majority_ + 0.02
    assert len(eraser.history_) == eraser.n_iter_ + 1
    assert eraser.n_iter_ <= eraser.rank_ <= 2 * eraser.n_iter_
    Q = eraser.right_.numpy()
    assert np.allclose(Q @ Q.T, np.eye(eraser.rank_), atol=1e-10)
    after = probe_report(eraser.transform(X[:1600]), y[:1600], eraser.transform(Xt), yt)
    assert after["accuracy"] <= after["majority"] + 0.04


def test_inlp_max_iter_caps_the_rounds():
    X, y = latents(600, 8, 2, seed=19, shift=6.0)
    eraser = INLPEraser(max_iter=1).fit(X, y)
    assert eraser.n_iter_ == 1 and len(eraser.history_) == 2 and eraser.rank_ == 1
    assert INLPEraser(max_iter=0).fit(X, y).rank_ == 0
    with pytest.raises(ValueError, match="val_fraction"):
        INLPEraser(val_fraction=1.5)


# ---------------------------------------------------------------------------------------------
# conditional erasure


def correlated_attributes(n, seed):
    """Protected and target directions at cos 0.6, labels agreeing 70% of the time."""
    rng = np.random.default_rng(seed)
    d = 6
    a = np.eye(d)[0]
    g = 0.6 * a + 0.8 * np.eye(d)[1]
    y_keep = rng.integers(0, 2, n)
    y_prot = np.where(rng.random(n) < 0.7, y_keep, 1 - y_keep)
    X = rng.normal(size=(n, d)) + 2.5 * np.outer(y_keep, a) + 2.5 * np.outer(y_prot, g) + 4.0
    return X, y_prot, y_keep, a


def test_conditional_erasure_keeps_the_target_and_removes_the_rest_of_the_protected():
    X, y_p, y_k, a = correlated_attributes(4000, seed=20)
    tr, te = slice(0, 2500), slice(2500, None)
    eraser = ConditionalEraser("texture", "shape").fit(X[tr], y_p[tr], y_k[tr])
    Xe = eraser.transform(X)
    # The target probe's scores are untouched, exactly: the edit is orthogonal to its normal.
    target = LinearProbe().fit(X[tr], y_k[tr])
    assert np.allclose(target.decision_function(Xe), target.decision_function(X), atol=1e-9)
    keep_before = probe_report(X[tr], y_k[tr], X[te], y_k[te])["accuracy"]
    keep_after = probe_report(Xe[tr], y_k[tr], Xe[te], y_k[te])["accuracy"]
    assert keep_after >= keep_before - 0.01
    # The protected probe falls to what the target coordinates alone reveal about it.
    prot_before = probe_report(X[tr], y_p[tr], X[te], y_p[te])["accuracy"]
    prot_after = probe_report(Xe[tr], y_p[tr], Xe[te], y_p[te])["accuracy"]
    A = eraser.keep_subspace_
    oracle = probe_report(X[tr] @ A.T, y_p[tr], X[te] @ A.T, y_p[te])["accuracy"]
    assert prot_after < prot_before - 0.1
    assert prot_after == pytest.approx(oracle, abs=0.03)
    assert 0.02 < eraser.protected_in_keep_ < 0.6  # the overlap is reported, not hidden
    # The trade-off: plain LEACE on the protected label costs the target accuracy.
    leace = LeaceEraser().fit(X[tr], y_p[tr])
    Xl = leace.transform(X)
    assert probe_report(Xl[tr], y_k[tr], Xl[te], y_k[te])["accuracy"] < keep_after - 0.03


def test_conditional_with_several_kept_attributes():
    X, y_p, y_k, _ = correlated_attributes(800, seed=21)
    y_other = (X[:, 3] > 4).astype(int)
    eraser = ConditionalEraser("texture", ["shape", "size"]).fit(
        X, y_p, np.stack([y_k, y_other], 1)
    )
    assert eraser.keep_subspace_.shape[0] == 2 and eraser.rank_ == 1
    with pytest.raises(ValueError, match="column"):
        ConditionalEraser("texture", ["shape"]).fit(X, y_p, np.stack([y_k, y_other], 1))
    # A protected attribute that lies entirely inside the target subspace cannot be removed.
    assert ConditionalEraser().fit(X, y_k, y_k).rank_ == 0


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
    # exact on the fitted statistics
    fit = GaussianFit().fit(Xa)
    A, b = gaussian_ot_map(fit.mean_, fit.cov_, torch.from_numpy(mu_b), torch.from_numpy(cov_b))
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


def test_ot_module_round_trips_and_checks_input(tmp_path):
    rng = np.random.default_rng(24)
    Xa, Xb = rng.normal(size=(300, 3)), rng.normal(size=(300, 3)) * 2 + 1
    ot = GaussianOTMap().fit(Xa, Xb)
    out = ot.transform(Xa)
    assert isinstance(out, np.ndarray) and np.allclose(out.mean(0), Xb.mean(0))
    assert ot.transform(torch.from_numpy(Xa).float()).dtype == torch.float32
    save_file(ot.state_dict(), tmp_path / "ot.safetensors")
    back = GaussianOTMap.from_state(
        load_file(tmp_path / "ot.safetensors"), json.loads(json.dumps(ot.config()))
    )
    assert np.array_equal(back.transform(Xa), out)
    with pytest.raises(NotFittedError):
        GaussianOTMap().transform(Xa)
    with pytest.raises(ValueError, match="cov_b"):
        gaussian_ot_map(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="same d"):
        GaussianOTMap().fit(Xa, Xb[:, :2])
    assert GaussianFit().fit(Xb).sample(5, torch.Generator().manual_seed(0)).shape == (5, 3)

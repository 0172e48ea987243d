"""LEACE: least-squares linear concept erasure in closed form (Belrose et al., 2023).

Goal: edit latents x so that no linear probe can recover a label z better than a constant,
while moving x as little as possible. Linear guardedness is equivalent to a zero
cross-covariance Cov(x', onehot(z)) (equivalently, equal class-conditional means), and among
affine edits achieving it the smallest mean squared edit is

    x' = x - W^+ P W (x - mu),      W = Sigma^{-1/2} (pseudo-inverse when Sigma is singular),

with Sigma = Cov(x) and P the orthogonal projector onto the column space of W Sigma_xz.
In whitened coordinates this is an orthogonal projection; mapped back, the edit lies in the
span of the class-mean differences and is as short as possible there.

`LeaceFitter` accumulates the statistics batch by batch (Chan et al.'s pairwise co-moment
update), so latents can stream in from a generator; `eraser()` hands out a frozen
`LeaceEraser`. `LeaceEraser.fit(X, y)` is the one-shot, scikit-learn-style shortcut.
"""

from __future__ import annotations

import numpy as np
import torch

from plumbing.validation import check_labels, check_latents

from .affine import AffineEraser


def _default_rtol(d: int, k: int, dtype: torch.dtype) -> float:
    return 10.0 * max(d, k) * torch.finfo(dtype).eps


class LeaceFitter:
    """Streaming sufficient statistics for LEACE: means, Cov(x) and Cov(x, z).

    d: latent dimension. k: number of classes (labels are ints in [0, k), or soft / one-hot
    label rows [n, k]). dtype, device: where the statistics are accumulated (float64 unless
    memory says otherwise). rtol: eigenvalues of Cov(x) below rtol * the largest count as zero
    (rank-deficient latents); default 10 * max(d, k) * machine epsilon of `dtype`.
    """

    def __init__(
        self,
        d: int,
        k: int,
        dtype: torch.dtype = torch.float64,
        device=None,
        rtol: float | None = None,
    ):
        if int(d) < 1:
            raise ValueError(f"d must be >= 1, got {d}")
        if int(k) < 2:
            raise ValueError(f"k must be >= 2 (number of classes), got {k}")
        if dtype not in (torch.float32, torch.float64):
            raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        if rtol is not None and not 0 <= rtol < 1:
            raise ValueError(f"rtol must be in [0, 1) or None, got {rtol}")
        self.d, self.k, self.dtype, self.rtol = int(d), int(k), dtype, rtol
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        kw = dict(dtype=dtype, device=self.device)
        self.n_ = 0
        self.mean_x_ = torch.zeros(self.d, **kw)
        self.mean_z_ = torch.zeros(self.k, **kw)
        self.comoment_xx_ = torch.zeros(self.d, self.d, **kw)
        self.comoment_xz_ = torch.zeros(self.d, self.k, **kw)
        self._rows_sum_to_one = True

    def _labels(self, y, n: int) -> torch.Tensor:
        if (y.ndim if isinstance(y, torch.Tensor) else np.ndim(y)) == 2:
            z = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
            z = z.to(device=self.device, dtype=self.dtype)
            if z.shape != (n, self.k):
                raise ValueError(
                    f"y as label rows must have shape [{n}, {self.k}], got {tuple(z.shape)}"
                )
            if not bool(torch.isfinite(z).all()):
                raise ValueError("y contains NaN or infinite values")
            self._rows_sum_to_one &= bool(((z.sum(1) - 1).abs() <= 1e-6).all())
            return z
        y = check_labels(y, n, min_classes=1)
        if y.min() < 0 or y.max() >= self.k:
            raise ValueError(
                f"y must hold class indices in [0, {self.k}), got values in [{y.min()}, {y.max()}]"
            )
        idx = torch.as_tensor(y, device=self.device)
        return torch.nn.functional.one_hot(idx, self.k).to(self.dtype)

    @torch.no_grad()
    def update(self, x, y) -> LeaceFitter:
        """Add a batch: x [n, d] latents, y [n] class indices (or [n, k] label rows)."""
        x = check_latents(x, name="x", d=self.d).to(device=self.device, dtype=self.dtype)
        z = self._labels(y, x.shape[0])
        nb = x.shape[0]
        mx, mz = x.mean(0), z.mean(0)
        dx, dz = x - mx, z - mz
        n = self.n_ + nb
        delta_x, delta_z = mx - self.mean_x_, mz - self.mean_z_
        w = self.n_ * nb / n
        self.comoment_xx_ += dx.T @ dx + w * torch.outer(delta_x, delta_x)
        self.comoment_xz_ += dx.T @ dz + w * torch.outer(delta_x, delta_z)
        self.mean_x_ += delta_x * (nb / n)
        self.mean_z_ += delta_z * (nb / n)
        self.n_ = n
        return self

    @property
    def sigma_xx(self) -> torch.Tensor:
        """Sample covariance of x [d, d]."""
        return self.comoment_xx_ / max(self.n_ - 1, 1)

    @property
    def sigma_xz(self) -> torch.Tensor:
        """Sample cross-covariance of x with the one-hot labels [d, k]."""
        return self.comoment_xz_ / max(self.n_ - 1, 1)

    @torch.no_grad()
    def eraser(self) -> LeaceEraser:
        """The LEACE eraser for the statistics seen so far."""
        if self.n_ < 2:
            raise ValueError(
                f"LEACE needs at least 2 samples, got {self.n_}; call update(x, y) first"
            )
        if int((self.mean_z_ > 0).sum()) < 2:
            raise ValueError(
                "y: only one class has been seen; erasing a label needs at least 2 classes"
            )
        rtol = _default_rtol(self.d, self.k, self.dtype) if self.rtol is None else self.rtol
        sigma, sigma_xz = self.sigma_xx, self.sigma_xz
        if self._rows_sum_to_one:
            # One-hot columns sum to a constant, so one of them is redundant: dropping it keeps the
            # column space exactly and avoids a spurious rounding-error direction.
            sigma_xz = sigma_xz[:, :-1]
        L, V = torch.linalg.eigh(sigma)
        keep = L > rtol * L.max().clamp_min(torch.finfo(self.dtype).tiny)
        V, root = V[:, keep], L[keep].sqrt()
        W = (V / root) @ V.T  # Sigma^{-1/2} on the range of Sigma
        W_pinv = (V * root) @ V.T  # Sigma^{1/2}
        U, S, _ = torch.linalg.svd(W @ sigma_xz, full_matrices=False)
        U = U[:, S > rtol * S.max().clamp_min(torch.finfo(self.dtype).tiny)]
        eraser = LeaceEraser(rtol=self.rtol)
        eraser._set_state(self.mean_x_, W_pinv @ U, U.T @ W)
        eraser.n_samples_ = self.n_
        return eraser


class LeaceEraser(AffineEraser):
    """The frozen LEACE edit x' = x - W^+ P W (x - mu), stored as left_ = W^+ U, right_ = U^T W.

    Build it with `LeaceFitter(...).eraser()` (streaming) or `LeaceEraser().fit(X, y)`.
    rtol: see `LeaceFitter`.
    """

    def __init__(self, rtol: float | None = None):
        super().__init__()
        if rtol is not None and not 0 <= rtol < 1:
            raise ValueError(f"rtol must be in [0, 1) or None, got {rtol}")
        self.rtol = rtol

    def fit(self, X, y) -> LeaceEraser:
        """Fit on latents X [N, d] and integer labels y [N] (any label values; >= 2 classes)."""
        Xt = check_latents(X)
        y = check_labels(y, Xt.shape[0])
        classes, idx = np.unique(y, return_inverse=True)
        fitter = LeaceFitter(Xt.shape[1], len(classes), device=Xt.device, rtol=self.rtol)
        fitted = fitter.update(Xt, idx).eraser()
        self._set_state(fitted.mean_, fitted.left_, fitted.right_)
        self.classes_ = classes
        self.n_samples_ = Xt.shape[0]
        return self

"""Iterative nullspace projection (INLP, Ravfogel et al. 2020).

One probe's normal rarely carries all of an attribute: after projecting it out, a fresh probe
often finds another direction. INLP repeats probe -> project -> refit, accumulating the
directions in one orthonormal basis, until a fresh probe on held-out data is no better than
predicting the majority class (within `tol`), or `max_iter` rounds have run.

The final eraser is a single mean-keeping projection (see `ProjectionEraser`) onto the
complement of every direction found. It removes at least as many dimensions as there are
rounds, so it edits more than LEACE does; it is here as the classic, probe-driven baseline
and for probes (like the SVM) whose normals LEACE does not use.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import train_test_split

from .probes import (
    PROBE_KINDS,
    LinearProbe,
    check_labels,
    check_latents,
    orthonormal_rows,
    to_numpy64,
)
from .projection import AffineEraser


class INLPEraser(AffineEraser):
    """Iterative nullspace projection with a held-out stopping rule.

    kind, C, probe_max_iter: the probe refitted each round. max_iter: most rounds of removal.
    tol: stop once the held-out accuracy is <= majority rate + tol. val_fraction: share of the
    data (stratified) held out to judge the probes. random_state: seeds the split.

    After `fit`: `history_` (held-out probe accuracy before each round, and after the last
    one), `majority_` (held-out majority rate), `n_iter_` (rounds run), `converged_`.
    """

    def __init__(
        self,
        kind: str = "logreg",
        C: float = 1.0,
        max_iter: int = 20,
        tol: float = 0.02,
        val_fraction: float = 0.3,
        probe_max_iter: int = 1000,
        random_state: int = 0,
    ):
        super().__init__()
        if kind not in PROBE_KINDS:
            raise ValueError(f"kind must be one of {PROBE_KINDS}, got {kind!r}")
        if int(max_iter) < 0:
            raise ValueError(f"max_iter must be >= 0, got {max_iter}")
        if not tol >= 0:
            raise ValueError(f"tol must be >= 0, got {tol}")
        if not 0 < val_fraction < 1:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        self.kind = kind
        self.C = float(C)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.val_fraction = float(val_fraction)
        self.probe_max_iter = int(probe_max_iter)
        self.random_state = random_state

    def fit(self, X, y) -> INLPEraser:
        Xt = check_latents(X)
        y = check_labels(y, Xt.shape[0])
        X = to_numpy64(Xt)
        n, d = X.shape
        classes, counts = np.unique(y, return_counts=True)
        if counts.min() < 2:
            raise ValueError("y: every class needs at least 2 samples so that some can be held out")
        train, val = train_test_split(
            np.arange(n), test_size=self.val_fraction, stratify=y, random_state=self.random_state
        )
        mean = X.mean(axis=0)
        majority = np.unique(y[val], return_counts=True)[1].max() / len(val)
        Q = np.zeros((0, d))
        history, converged, rounds = [], False, 0
        for round_ in range(self.max_iter + 1):
            Xp = X - (X - mean) @ Q.T @ Q
            probe = LinearProbe(self.kind, C=self.C, max_iter=self.probe_max_iter).fit(
                Xp[train], y[train]
            )
            history.append(probe.score(Xp[val], y[val])["accuracy"])
            if history[-1] <= majority + self.tol:
                converged = True
                break
            if round_ == self.max_iter or Q.shape[0] >= d:
                break
            # The new probe was fitted on projected data; keep only what is new to the basis.
            new = probe.subspace_ - probe.subspace_ @ Q.T @ Q
            new = orthonormal_rows(new, atol=1e-6)
            if new.shape[0] == 0:
                break
            Q = np.vstack([Q, new])
            rounds += 1
        Q = orthonormal_rows(Q) if Q.shape[0] else Q
        self._set_state(mean, Q.T, Q, device=Xt.device)
        self.classes_ = classes
        self.n_samples_ = n
        self.history_ = [float(a) for a in history]
        self.majority_ = float(majority)
        self.n_iter_ = rounds
        self.converged_ = converged
        return self

    def fit_transform(self, X, y):
        return self.fit(X, y).transform(X)

    def _info(self) -> dict:
        info = super()._info()
        for name in ("history_", "majority_", "n_iter_", "converged_"):
            if hasattr(self, name):
                info[name.rstrip("_")] = getattr(self, name)
        return info

    def _set_info(self, info: dict) -> None:
        super()._set_info(info)
        for name in ("history", "majority", "n_iter", "converged"):
            if name in info:
                setattr(self, name + "_", info[name])

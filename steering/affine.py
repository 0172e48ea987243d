"""The shape every eraser shares (LEACE here, the projection baseline in `steering.baselines`):
a low-rank affine edit

    x' = x - (x - mean_) @ right_.T @ left_.T          (left_ [d, r], right_ [r, d])

fitted once and frozen in three buffers, so `state_dict()` round-trips through safetensors
and `from_state(state, config)` rebuilds it. For an orthogonal projection `left_ = Q.T`,
`right_ = Q` with `Q` an orthonormal basis [r, d] of the removed directions.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from plumbing.validation import check_latents

_STATE = ("mean_", "left_", "right_")


class FitTransformMixin:
    """``fit_transform(X, *labels)``: ``fit`` then ``transform`` of the same ``X``, written once
    (scikit-learn's ``TransformerMixin`` without its output wrapping)."""

    def fit_transform(self, X, *args, **kwargs):
        return self.fit(X, *args, **kwargs).transform(X)


class AffineEraser(FitTransformMixin, nn.Module):
    """Base class: a frozen low-rank affine edit of latents `[..., d]` (see module docstring).

    Subclasses implement `fit`; this class gives `forward` / `transform`, the saved state
    (`state_dict`, `config`, `from_state`) and input checks. `forward` is the hot path: it
    checks shapes only (no NaN scan, which would synchronise a GPU); `transform` is the
    checked boundary for numpy or torch input and returns the same type it was given.
    """

    def __init__(self):
        super().__init__()
        for name in _STATE:
            self.register_buffer(name, torch.zeros(0, dtype=torch.float64))

    # -- fitted state ---------------------------------------------------------------------------

    def _set_state(self, mean, left, right, device=None) -> None:
        mean, left, right = (
            t if isinstance(t, torch.Tensor) else torch.as_tensor(np.asarray(t))
            for t in (mean, left, right)
        )
        if mean.ndim != 1 or mean.numel() == 0:
            raise ValueError(
                f"state 'mean_' must be a non-empty vector [d], got shape {tuple(mean.shape)}"
            )
        d = mean.shape[0]
        if (
            left.ndim != 2
            or right.ndim != 2
            or left.shape[0] != d
            or right.shape[1] != d
            or left.shape[1] != right.shape[0]
        ):
            raise ValueError(
                f"state 'left_' must be [d, r] and 'right_' [r, d] with d={d}; got "
                f"{tuple(left.shape)} and {tuple(right.shape)}"
            )
        device = mean.device if device is None else device
        for name, t in zip(_STATE, (mean, left, right), strict=True):
            self._buffers[name] = (
                t.detach().to(device=device, dtype=torch.float64).contiguous().clone()
            )

    @property
    def is_fitted(self) -> bool:
        return self.mean_.numel() > 0

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise NotFittedError(
                f"this {type(self).__name__} is not fitted yet; call fit(...) first"
            )

    @property
    def dim_(self) -> int:
        self._check_fitted()
        return int(self.mean_.shape[0])

    @property
    def rank_(self) -> int:
        """Number of directions the eraser edits."""
        self._check_fitted()
        return int(self.right_.shape[0])

    def edit_matrix(self) -> torch.Tensor:
        """The `[d, d]` matrix M with x' = x - M (x - mean_) (float64)."""
        self._check_fitted()
        return self.left_ @ self.right_

    # -- applying -------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        if x.shape[-1] != self.mean_.shape[0]:
            raise ValueError(
                f"x has last dimension {x.shape[-1]} but the eraser was fitted on "
                f"d={self.mean_.shape[0]}"
            )
        work = x if x.dtype in (torch.float32, torch.float64) else x.float()
        mean, left, right = (
            t.to(device=work.device, dtype=work.dtype)
            for t in (self.mean_, self.left_, self.right_)
        )
        out = work - ((work - mean) @ right.T) @ left.T
        return out.to(x.dtype)

    def transform(self, X):
        """Erase `X` [N, d]: numpy in, numpy out; torch in, torch out (same dtype and device)."""
        self._check_fitted()
        Xt = check_latents(X, d=self.dim_)
        with torch.no_grad():
            out = self.forward(Xt)
        return out if isinstance(X, torch.Tensor) else out.cpu().numpy()

    # -- saving ---------------------------------------------------------------------------------

    def _params(self) -> dict:
        names = [p for p in inspect.signature(type(self).__init__).parameters if p != "self"]
        out = {}
        for name in names:
            value = getattr(self, name)
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    def _info(self) -> dict:
        """Learned, JSON-able metadata that is not a tensor (subclasses extend)."""
        info = {}
        if hasattr(self, "classes_"):
            info["classes"] = [int(c) for c in np.asarray(self.classes_).tolist()]
        if hasattr(self, "n_samples_"):
            info["n_samples"] = int(self.n_samples_)
        return info

    def _set_info(self, info: dict) -> None:
        if "classes" in info:
            self.classes_ = np.asarray(info["classes"], dtype=np.int64)
        if "n_samples" in info:
            self.n_samples_ = int(info["n_samples"])

    def config(self) -> dict:
        """JSON-able description: class name, `__init__` parameters and learned metadata."""
        return {"type": type(self).__name__, "params": self._params(), "info": self._info()}

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor], config: dict):
        """Rebuild a fitted eraser from `state_dict()` tensors and `config()`."""
        kind = config.get("type", cls.__name__)
        if kind != cls.__name__:
            raise ValueError(f"config describes a {kind!r}, not a {cls.__name__!r}")
        missing = [name for name in _STATE if name not in state]
        if missing:
            raise ValueError(
                f"state is missing {missing}; expected the keys {list(_STATE)} from state_dict()"
            )
        obj = cls(**config.get("params", {}))
        obj._set_state(*(state[name] for name in _STATE))
        obj._set_info(config.get("info", {}))
        return obj

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffers of an unfitted eraser are empty: resize them so `load_state_dict` works.
        for name in _STATE:
            if prefix + name in state_dict:
                incoming = state_dict[prefix + name]
                self._buffers[name] = torch.zeros(
                    incoming.shape, dtype=torch.float64, device=self._buffers[name].device
                )
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"d={self.dim_}, rank={self.rank_}" if self.is_fitted else "unfitted"

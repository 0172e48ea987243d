"""scikit-learn's conventions for steerers, as a mixin a steerer class inherits:
``get_params`` / ``set_params`` (the ``__init__`` parameters, read back from attributes of the
same name) and ``transform(latents, classes)`` (the steered latents, seeded). A fitted steerer is
frozen, so ``set_params`` works before ``fit`` only (``clone`` hands out an unfitted copy).

    class LatentSteerer(SklearnSteererMixin, Steerer): ...   (also ClassifierSteerer)

``fit`` keeps each steerer's own signature (latents, classes, protected labels), so a steerer is
not a drop-in sklearn estimator in a ``Pipeline``; ``sklearn.base.clone`` works on it, because
``get_params`` returns exactly the constructor's arguments.
"""

from __future__ import annotations

import inspect

import numpy as np
import torch


class SklearnSteererMixin:
    """``get_params``, ``set_params`` and ``transform`` for a steerer whose ``forward(z, y, rng)``
    returns steered latents."""

    @classmethod
    def _param_names(cls) -> list[str]:
        signature = inspect.signature(cls.__init__)
        return [
            name
            for name, p in signature.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    def get_params(self, deep: bool = True) -> dict:
        """The constructor's parameters and their current values (``deep`` is accepted and
        ignored: a steerer holds no nested estimators)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params):
        """Set constructor parameters by name (before ``fit``); returns the steerer."""
        names = self._param_names()
        for name, value in params.items():
            if name not in names:
                raise ValueError(
                    f"{type(self).__name__}.set_params: unknown parameter {name!r}; "
                    f"parameters are {names}"
                )
            setattr(self, name, value)
        return self

    @torch.no_grad()
    def transform(self, latents, classes=None, *, seed: int = 0) -> torch.Tensor:
        """Steered latents ``[N, d]`` for ``latents`` of classes ``classes`` (zeros when the
        generator is unconditional), with random draws from ``seed``."""
        z = torch.as_tensor(np.asarray(latents) if not torch.is_tensor(latents) else latents)
        if z.ndim != 2:
            raise ValueError(f"latents must be a [N, d] array, got shape {tuple(z.shape)}")
        if classes is None:
            y = torch.zeros(len(z), dtype=torch.int64)
        else:
            y = torch.as_tensor(np.asarray(classes) if not torch.is_tensor(classes) else classes)
            y = y.to(torch.int64)
            if y.shape != (len(z),):
                raise ValueError(
                    f"classes must hold one class per latent ({len(z)}), got shape {tuple(y.shape)}"
                )
        return self(z.float(), y, torch.Generator().manual_seed(seed))

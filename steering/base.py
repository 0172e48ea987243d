"""The steerer contract: a fit hands out a small frozen steerer that balances or flips latents.

In the spirit of EleutherAI's concept-erasure (a fitter hands out a frozen eraser) and
scikit-learn's ``base.py`` (one place for what every estimator shares):

* ``fit`` returns the steerer frozen: setting an attribute afterwards raises, and it pickles
  without the generator (a steerer that draws latents is given the draw function per call);
* ``balance`` / ``flip`` return a ``Steered`` (latents, requested values, the call's statistics);
  nothing about a call is stored on the steerer;
* ``config()`` (plain JSON) and ``tensors()`` are all a steering card holds;
  ``from_state(config, tensors)`` rebuilds the steerer from them, checking both;
* every class names its ``methods`` (registry names, ``steering.registry``), its ``modes`` and
  its ``guarantee``: ``"proposed"`` (latents moved by a model of the labeler) or
  ``"confirmed"`` (every kept sample labelled).
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

GUARANTEES = ("proposed", "confirmed")
MAX_CLASSES = (
    100_000  # BigGAN has 1000; a card claiming a million classes is refused, not allocated
)
MAX_VALUES = 1000  # values of one protected attribute
MAX_LATENT_DIM = 1 << 16


@dataclass(frozen=True)
class Steered:
    """What one ``balance``/``flip`` call gives: latents, the protected values they were steered to
    (None where the call did not choose them) and its statistics (draws, kept, reached, ...)."""

    latents: torch.Tensor
    values: torch.Tensor | None = None
    stats: dict = field(default_factory=dict)


class Steerer(nn.Module):
    """Base of every steerer: the frozen state, the mode dispatch, the shared checks."""

    methods: ClassVar[tuple[str, ...]] = ()  # registry names this class answers to
    modes: ClassVar[tuple[str, ...]] = ()
    guarantee: ClassVar[str] = "proposed"
    method: str | None = None  # the method of this steerer (one of ``methods``)
    fit_hint: ClassVar[str] = "call fit(latents, classes, protected)"

    # ------------------------------------------------------------ frozen after fit

    def __setattr__(self, name, value):
        if self.__dict__.get("_frozen") and name != "training":
            raise AttributeError(
                f"{type(self).__name__} is frozen after fit: cannot set {name!r} "
                "(fit or from_state hands out a new steerer)"
            )
        super().__setattr__(name, value)

    def __delattr__(self, name):
        if self.__dict__.get("_frozen"):
            raise AttributeError(
                f"{type(self).__name__} is frozen after fit: cannot delete {name!r}"
            )
        super().__delattr__(name)

    def __setstate__(self, state):  # unpickling sets attributes before the steerer is frozen again
        frozen = state.pop("_frozen", False)
        super().__setstate__(state)
        self.__dict__["_frozen"] = frozen

    def _freeze(self):
        self.__dict__["_frozen"] = True
        return self

    @property
    def fitted(self) -> bool:
        return bool(self.__dict__.get("_frozen"))

    def _check_fitted(self) -> None:
        if not self.fitted:
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet: {self.fit_hint}")

    def _check_unfitted(self) -> None:
        if self.fitted:
            raise ValueError(
                f"this {type(self).__name__} is fitted (and frozen); fit a new one instead"
            )

    @classmethod
    def check_mode(cls, mode) -> None:
        """A clear error unless this class offers ``mode``."""
        if mode not in cls.modes:
            offers = "/".join(cls.methods)
            raise ValueError(
                f"mode must be one of {cls.modes} for method {offers}, got {mode!r}"
                + (
                    ""
                    if mode != "erase"
                    else " (erase is latent-only: method quantile or gaussian)"
                )
            )

    # ------------------------------------------------------------ steering

    def balance(self, z, y, generator=None, sample_latents=None) -> Steered:
        """Latents whose protected value follows the target in every class."""
        raise ValueError(f"{type(self).__name__} does not balance latents")

    def flip(self, z, y, generator=None, values=None) -> Steered:
        """Counterfactual twins: each latent moved to another protected value (``values``, if
        given)."""
        raise ValueError(f"{type(self).__name__} does not flip latents")

    def erase(self, z, y) -> Steered:
        raise ValueError(f"{type(self).__name__} does not erase (erase is latent-only)")

    def forward(self, z, y, generator=None, sample_latents=None) -> torch.Tensor:
        """Steered latents by ``mode``. Random draws come from ``generator`` (a
        ``torch.Generator``), fresh latents (balance by rejection) from
        ``sample_latents(n, generator)`` (default N(0, I))."""
        self._check_fitted()
        if self.mode == "erase":
            return self.erase(z, y).latents
        if self.mode == "flip":
            return self.flip(z, y, generator).latents
        return self.balance(z, y, generator, sample_latents).latents

    def anchors(self, z, y, generator=None, sample_latents=None) -> torch.Tensor:
        """What a stream does to the anchors it draws: steers them, except in flip mode, whose flips
        are views of unsteered anchors."""
        return z if self.mode == "flip" else self(z, y, generator, sample_latents)

    def as_transform(self, seed: int = 0, sample_latents=None):
        """A ``transform(z, y)`` for labelling/streams, with its own seeded random draws."""
        rng = torch.Generator().manual_seed(seed)

        def transform(z, y):
            return self.forward(z.cpu(), y.cpu(), rng, sample_latents).to(z.device)

        return transform

    def expected_draws(self, class_probs=None) -> float:
        """Latent draws per kept sample (a transport keeps every draw)."""
        return 1.0

    def decode_joint(self, joint: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each attribute's value from joint values (one attribute: the values themselves)."""
        return {"protected": joint}

    def propose_twins(self, z, y, values, rho: float, candidates: int = 64, generator=None):
        """Another candidate twin per latent, or None: a steerer without a model of the labeler has
        nothing else to propose."""
        return None

    def flip_proposal(self):
        """What ``steering.confirmed_flips`` scores candidate twins with."""
        raise ValueError(
            "proposal must be a fitted ClassifierSteerer or ConfirmedSteerer, "
            f"got {type(self).__name__}"
        )

    # ------------------------------------------------------------ state (cards)

    def config(self) -> dict:
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @classmethod
    def tensor_dtypes(cls, config: dict) -> dict | None:
        """The safetensors dtype of each tensor a card must hold (None: not checked by name)."""
        return None

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> Steerer:
        raise NotImplementedError

    def summary(self) -> dict:
        """The few card fields a reader looks at first (the full config is under ``"steerer"``)."""
        names = getattr(self, "names_", None)
        return {
            "mode": self.mode,
            "num_classes": self.num_classes_,
            "num_values": self.num_values_,
            "latent_dim": self.dim_,
            **({"attributes": names} if names is not None else {}),
            "expected_draws_per_sample": self.expected_draws(),
        }

    # ------------------------------------------------------------ fitting from a generator

    @classmethod
    def fit_generator(
        cls,
        generator,
        labelers: dict,
        n: int,
        *,
        mode: str,
        method: str,
        seed: int,
        target_distribution,
        progress: bool,
        active: bool,
        keep_labeler,
    ):
        """Label samples of ``generator`` and fit; returns ``(steerer, labelled samples)``."""
        raise NotImplementedError


# ------------------------------------------------------------ shared checks


def check_distribution(p, k: int, what: str) -> torch.Tensor:
    """``p`` as ``k`` non-negative probabilities summing to 1 (float32), else a ValueError."""
    p = torch.as_tensor(np.asarray(p, dtype=np.float64)).flatten()
    if (
        len(p) != k
        or not torch.isfinite(p).all()
        or float(p.min()) < 0
        or not math.isclose(float(p.sum()), 1.0, abs_tol=1e-6)
    ):
        raise ValueError(
            f"{what} must be {k} non-negative probabilities summing to 1, got {p.tolist()}"
        )
    return p.float()


def target_table(names: list[str], num_values: list[int], p) -> torch.Tensor:
    """The joint target ``[J]`` over ``names``: uniform (``p=None``), a joint table, or
    ``{name: marginal}``."""
    shape = tuple(num_values)
    if p is None:
        return torch.full((math.prod(shape),), 1.0 / math.prod(shape))
    if isinstance(p, dict):
        unknown = sorted(set(p) - set(names))
        if unknown:
            raise ValueError(
                f"target_distribution names {unknown}, which are not protected attributes {names}"
            )
        marginals = [
            check_distribution(p.get(n, [1.0 / k] * k), k, f"target_distribution[{n!r}]")
            for n, k in zip(names, shape, strict=True)
        ]
        joint = marginals[0]
        for m in marginals[1:]:
            joint = torch.outer(joint, m).flatten()
        return joint
    table = torch.as_tensor(np.asarray(p, dtype=np.float64))
    if tuple(table.shape) not in (shape, (math.prod(shape),)):
        raise ValueError(
            f"target_distribution must have shape {list(shape)} (or be a dict of marginals), "
            f"got {list(table.shape)}"
        )
    return check_distribution(table.flatten(), math.prod(shape), "target_distribution")


def plain_target(p):
    """A target distribution as plain JSON (lists of floats, or a dict of them)."""
    if p is None or isinstance(p, dict):
        return None if p is None else {k: np.asarray(v, dtype=float).tolist() for k, v in p.items()}
    return np.asarray(p, dtype=float).tolist()


def check_config(config, required, counts: dict, where: str) -> dict:
    """A steerer's config from a card: a dict with the ``required`` fields, and each field of
    ``counts`` (``{field: upper bound}``) an integer in [1, bound] (a list of them for a list)."""
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a dict of the steerer's configuration")
    missing = [key for key in required if key not in config]
    if missing:
        raise ValueError(f"{where} lacks the field(s) {missing}")
    for key, high in counts.items():
        value = config[key]
        values = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise ValueError(f"{where}: {key!r} must list each attribute's number of values")
        for v in values:
            if not isinstance(v, numbers.Integral) or isinstance(v, bool) or not 1 <= v <= high:
                raise ValueError(
                    f"{where}: {key!r} must be an integer in [1, {high}] (or a list of them), "
                    f"got {_short(value)}"
                )
    return config


def check_tensors(tensors: dict, names, where: str) -> None:
    """A clear error when a card's tensors lack one the steerer needs."""
    missing = [name for name in names if name not in tensors]
    if missing:
        raise ValueError(f"{where} lack the tensor(s) {missing}")


def classifier_state(tensors: dict, name: str) -> dict:
    """Attribute ``name``'s latent classifier buffers, from a card's ``clf.<name>.*`` tensors."""
    prefix = f"clf.{name}."
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def _short(value) -> str:
    text = repr(value)
    text = text if len(text) <= 80 else text[:77] + "..."
    return "".join(c if c.isprintable() else "?" for c in text)

"""Class-conditional latent steering: erase, balance, or flip a protected attribute before
synthesis.

In a class-conditional generator the class input carries the difference *between* classes and
``z`` the variation *within* a class, along directions that can differ from class to class; a
pooled z-space eraser leaves the stream's bias unchanged (measured, issue #4). So everything here
is fitted per class, from labelled samples of that class:

* ``erase``: a per-class LEACE eraser; the protected attribute becomes linearly unreadable from
  the latent within each class (its coordinate collapses to the class mean).
* ``balance``: each sample draws a protected value independently of its class and its latent is
  transported into that value's region, keeping everything else: along the class's attribute
  direction by the exact 1-D optimal-transport (quantile) map between the two groups
  (``method="quantile"``), or by the Gaussian optimal-transport map between the groups' Gaussian
  fits (``method="gaussian"``).
* ``flip``: the same transport to a *different* value gives counterfactual twins.
"""

from __future__ import annotations

import numpy as np
import torch
from einops import rearrange
from sklearn.linear_model import LogisticRegression
from torch import nn

from .base import (
    MAX_CLASSES,
    MAX_LATENT_DIM,
    MAX_VALUES,
    Steered,
    Steerer,
    check_config,
    check_distribution,
    check_tensors,
)
from .labelling import sample_and_label
from .leace import LeaceEraser
from .ot import gaussian_ot_map
from .registry import register_steerer
from .sklearn_api import SklearnSteererMixin

N_LEVELS = 129
MIN_GROUP = 10  # fewer labelled samples than this and a (class, value) group cannot be a target
BUFFERS = ("present", "probe_w", "probe_b", "direction", "centre", "levels", "means", "covs")
CONFIG = ("mode", "method", "target_distribution", "num_classes", "num_values", "latent_dim")


@register_steerer
class LatentSteerer(SklearnSteererMixin, Steerer):
    """Fit from ``(latents [N, d], classes [N], protected [N])``; steer with ``forward(z, y,
    rng)``."""

    methods = ("quantile", "gaussian")
    modes = ("erase", "balance", "flip")

    def __init__(self, mode: str = "balance", method: str = "quantile", target_distribution=None):
        super().__init__()
        self.check_mode(mode)
        if method not in self.methods:
            raise ValueError(f"method must be one of {self.methods}, got {method!r}")
        self.mode, self.method = mode, method
        self.target_distribution = (
            None if target_distribution is None else list(map(float, target_distribution))
        )

    # ------------------------------------------------------------ fitting

    @classmethod
    def fit_generator(
        cls,
        generator,
        labelers,
        n,
        *,
        mode,
        method,
        seed,
        target_distribution,
        progress,
        active,
        keep_labeler,
    ):
        """One attribute, ``n`` prior draws labelled, one linear probe per class."""
        from .active import check_values

        cls.check_mode(mode)
        if keep_labeler is not None:
            raise ValueError(f"keep_labeler needs method='confirmed' (got method={method!r})")
        if len(labelers) > 1:
            raise ValueError(
                f"mode={mode!r}, method={method!r} steers one attribute; "
                "use method='resample' (balance/flip) for several"
            )
        samples = sample_and_label(generator, labelers, n, seed, progress=progress)
        name = next(iter(labelers))
        check_values(samples.labels[name], name)
        steerer = cls(mode, method, target_distribution).fit(
            samples.latents,
            samples.classes,
            samples.labels[name],
            num_classes=max(1, generator.num_classes),
        )
        return steerer, samples

    def fit(
        self,
        latents,
        classes,
        protected,
        num_classes: int | None = None,
        num_values: int | None = None,
    ):
        """Fit per class and return this steerer, frozen."""
        self._check_unfitted()
        z = torch.as_tensor(np.asarray(latents), dtype=torch.float64)
        y = torch.as_tensor(np.asarray(classes), dtype=torch.int64)
        a = torch.as_tensor(np.asarray(protected), dtype=torch.int64)
        if z.ndim != 2 or not (len(z) == len(y) == len(a)):
            raise ValueError(
                "latents [N, d], classes [N] and protected [N] must agree, "
                f"got {list(z.shape)}, {list(y.shape)}, {list(a.shape)}"
            )
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or infinite values")
        C = num_classes or int(y.max()) + 1
        K = num_values or int(a.max()) + 1
        if K < 2:
            raise ValueError("protected must take at least two values")
        d = z.shape[1]
        if self.target_distribution is not None:
            check_distribution(self.target_distribution, K, "target_distribution")
        present = torch.zeros(C, K, dtype=torch.bool)
        probe_w, probe_b = torch.zeros(C, K, d), torch.full((C, K), -1e4)
        f64 = dict(dtype=torch.float64)
        direction, centre = torch.zeros(C, d, **f64), torch.zeros(C, d, **f64)
        levels = torch.zeros(C, K, N_LEVELS, **f64)
        means = torch.zeros(C, K, d, **f64)
        covs = rearrange(torch.eye(d, **f64), "a b -> 1 1 a b").repeat(C, K, 1, 1)
        erasers = []
        for c in range(C):
            zc, ac = z[y == c], a[y == c]
            counts = torch.bincount(ac, minlength=K)
            present[c] = counts >= MIN_GROUP
            if present[c].sum() < 2:
                erasers.append(None)
                continue
            w, b = _fit_probe(zc, ac, present[c])
            probe_w[c], probe_b[c] = w, b
            centre[c] = zc.mean(0)
            direction[c] = _main_direction(w[present[c]].double())
            t = (zc - centre[c]) @ direction[c]
            quantile_levels = torch.linspace(0, 1, N_LEVELS, dtype=torch.float64)
            for k in torch.nonzero(present[c]).flatten().tolist():
                group = zc[ac == k]
                levels[c, k] = torch.quantile(t[ac == k], quantile_levels)
                means[c, k] = group.mean(0)
                covs[c, k] = torch.cov(group.T) + 1e-4 * torch.eye(d, **f64)
            keep = present[c][ac]
            erasers.append(
                LeaceEraser().fit(zc[keep].float(), ac[keep]) if self.mode == "erase" else None
            )
        for name, value in dict(
            present=present,
            probe_w=probe_w,
            probe_b=probe_b,
            direction=direction.float(),
            centre=centre.float(),
            levels=levels.float(),
            means=means.float(),
            covs=covs.float(),
        ).items():
            self.register_buffer(name, value)
        if self.mode == "erase":
            self._erasers = nn.ModuleList([e if e is not None else nn.Identity() for e in erasers])
        self.num_classes_, self.num_values_, self.dim_ = C, K, d
        return self._freeze()

    # ------------------------------------------------------------ steering

    def predict_protected(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The protected value each latent stands for, by its class's linear probe."""
        self._check_fitted()
        scores = torch.einsum("nkd,nd->nk", self.probe_w[y], z.float()) + self.probe_b[y]
        return scores.argmax(1)

    def erase(self, z, y) -> Steered:
        """Per-class LEACE: the protected attribute linearly unreadable within each class."""
        self._check_fitted()
        if self.mode != "erase":
            raise ValueError(f"this steerer was fitted for {self.mode!r}; erase needs mode='erase'")
        out = z.clone()
        for c in torch.unique(y).tolist():
            mask = y == c
            out[mask] = self._erasers[c](z[mask].float()).to(z.dtype)
        return Steered(out, None, {"n": len(z)})

    def balance(self, z, y, generator=None, sample_latents=None) -> Steered:
        """Each latent transported to a value drawn independently of its class."""
        self._check_fitted()
        values = self.draw_values(y, generator)
        return Steered(self.transport(z, y, values), values, {"n": len(z)})

    def draw_values(
        self, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Protected values drawn independently of the class (uniform or
        ``target_distribution``)."""
        self._check_fitted()
        K = self.num_values_
        p = (
            torch.full((K,), 1.0 / K)
            if self.target_distribution is None
            else torch.tensor(self.target_distribution)
        )
        probs = (
            p.to(y.device)[None, :] * self.present[y].float()
        )  # a class lacking a value cannot reach it
        probs = probs / probs.sum(1, keepdim=True)
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)

    def flip(self, z, y, generator=None, values=None) -> Steered:
        """Counterfactual twins: each latent moved to another protected value (random unless
        given)."""
        self._check_fitted()
        current = self.predict_protected(z, y)
        if values is None:
            others = self.present[y].float()
            others[torch.arange(len(y)), current] = 0
            values = torch.multinomial(
                others.clamp(min=0) + 1e-12 * (others.sum(1, keepdim=True) == 0),
                1,
                generator=generator,
            ).squeeze(1)
        return Steered(self.transport(z, y, values, current), values, {"n": len(z)})

    def transport(self, z, y, values, current=None) -> torch.Tensor:
        """Move each latent from its current protected value's region into ``values``' region."""
        self._check_fitted()
        current = self.predict_protected(z, y) if current is None else current
        if not bool(self.present[y, values].all()):
            raise ValueError(
                "values asks for a protected value that a class never showed in the fitting sample"
            )
        if self.method == "gaussian":
            return self._gaussian_transport(z, y, current, values)
        w = self.direction[y]
        t = ((z.float() - self.centre[y]) * w).sum(1)
        rank = _cdf(self.levels[y, current], t)
        t_new = _quantile(self.levels[y, values], rank)
        moved = z.float() + rearrange(t_new - t, "n -> n 1") * w
        same = current == values
        return torch.where(same[:, None], z.float(), moved).to(z.dtype)

    def _gaussian_transport(self, z, y, current, values):
        out = z.float().clone()
        pairs = torch.unique(torch.stack([y, current, values], 1), dim=0).tolist()
        for c, a, b in pairs:
            if a == b:
                continue
            mask = (y == c) & (current == a) & (values == b)
            A, _ = gaussian_ot_map(
                self.means[c, a], self.covs[c, a], self.means[c, b], self.covs[c, b]
            )
            A = A.to(out)
            out[mask] = self.means[c, b] + (out[mask] - self.means[c, a]) @ A.T
        return out.to(z.dtype)

    # ------------------------------------------------------------ state (cards)

    def config(self) -> dict:
        erasers = {}
        if self.mode == "erase":
            erasers = {
                str(c): e.config()
                for c, e in enumerate(self._erasers)
                if isinstance(e, LeaceEraser)
            }
        return {
            "mode": self.mode,
            "method": self.method,
            "target_distribution": self.target_distribution,
            "num_classes": self.num_classes_,
            "num_values": self.num_values_,
            "latent_dim": self.dim_,
            "erasers": erasers,
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {name: getattr(self, name) for name in BUFFERS}
        if self.mode == "erase":
            for c, eraser in enumerate(self._erasers):
                if isinstance(eraser, LeaceEraser):
                    out.update({f"erase.{c}.{k}": v for k, v in eraser.state_dict().items()})
        return out

    @classmethod
    def tensor_dtypes(cls, config: dict) -> dict:
        return {name: "BOOL" if name == "present" else "F32" for name in BUFFERS}

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> LatentSteerer:
        """Rebuild a fitted steerer from its card's config and tensors (both checked)."""
        check_config(
            config,
            CONFIG,
            {"num_classes": MAX_CLASSES, "latent_dim": MAX_LATENT_DIM, "num_values": MAX_VALUES},
            "the steerer's config",
        )
        check_tensors(tensors, BUFFERS, "the steerer's tensors")
        for name in BUFFERS:
            tensor = tensors[name]
            if (tensor.shape[0] if tensor.dim() else None) != config["num_classes"]:
                raise ValueError(
                    f"tensor {name!r} has shape {list(tensor.shape)}, "
                    f"which does not fit num_classes {config['num_classes']}"
                )
        steerer = cls(config["mode"], config["method"], config["target_distribution"])
        for name in BUFFERS:
            steerer.register_buffer(name, tensors[name])
        steerer.num_classes_, steerer.num_values_, steerer.dim_ = (
            config["num_classes"],
            config["num_values"],
            config["latent_dim"],
        )
        if steerer.mode == "erase":
            saved = config.get("erasers") or {}
            erasers = []
            for c in range(steerer.num_classes_):
                if str(c) in saved:
                    state = {
                        k.split(".", 2)[2]: v
                        for k, v in tensors.items()
                        if k.startswith(f"erase.{c}.")
                    }
                    erasers.append(LeaceEraser.from_state(state, saved[str(c)]))
                else:
                    erasers.append(nn.Identity())
            steerer._erasers = nn.ModuleList(erasers)
        return steerer._freeze()


def _fit_probe(z, a, present):
    """Per-class multinomial logistic probe of the protected value (rows for absent values:
    -inf)."""
    keep = present[a]
    clf = LogisticRegression(C=10.0, max_iter=2000).fit(z[keep].numpy(), a[keep].numpy())
    K, d = len(present), z.shape[1]
    w, b = torch.zeros(K, d), torch.full((K,), -1e4)
    coef, intercept = (
        torch.tensor(clf.coef_, dtype=torch.float32),
        torch.tensor(clf.intercept_, dtype=torch.float32),
    )
    classes = torch.as_tensor(clf.classes_)
    if len(classes) == 2:  # sklearn's binary form: one row for the positive class
        coef, intercept = (
            torch.cat([-coef / 2, coef / 2]),
            torch.cat([-intercept / 2, intercept / 2]),
        )
    w[classes], b[classes] = coef, intercept
    return w, b


def _main_direction(weights):
    """The unit direction of the probe's subspace that separates the groups most.

    Probe normals locate sharp boundaries far better than differences of group means do (a
    minority group has few samples). The sign is arbitrary: positions and quantile tables are
    both measured along it.
    """
    _, _, vh = torch.linalg.svd(weights - weights.mean(0), full_matrices=False)
    return vh[0]


def _cdf(levels: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Rank of ``t`` in each row's quantile table, in [0, 1] (linear between levels)."""
    n_levels = levels.shape[1]
    idx = (
        torch.searchsorted(levels.contiguous(), t[:, None].contiguous())
        .squeeze(1)
        .clamp(1, n_levels - 1)
    )
    lo, hi = (
        levels.gather(1, (idx - 1)[:, None]).squeeze(1),
        levels.gather(1, idx[:, None]).squeeze(1),
    )
    frac = ((t - lo) / (hi - lo).clamp(min=1e-12)).clamp(0, 1)
    return ((idx - 1) + frac) / (n_levels - 1)


def _quantile(levels: torch.Tensor, rank: torch.Tensor) -> torch.Tensor:
    """Each row's quantile table evaluated at ``rank`` in [0, 1]."""
    n_levels = levels.shape[1]
    position = rank.clamp(0, 1) * (n_levels - 1)
    lo = position.floor().long().clamp(max=n_levels - 2)
    frac = position - lo
    low = levels.gather(1, lo[:, None]).squeeze(1)
    high = levels.gather(1, (lo + 1)[:, None]).squeeze(1)
    return low * (1 - frac) + high * frac

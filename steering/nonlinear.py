"""Steering that does not assume a half-space: a calibrated latent classifier per class, then
rejection sampling (balance) and classifier-gradient flips (counterfactual twins).

One or several protected attributes at once: each gets its own per-class classifier; their joint
value is the tuple of values (joint index in row-major order), and its posterior is the product
of the attributes' posteriors (labels of one image are near-deterministic functions of its latent,
so they are conditionally independent given it). ``balance`` makes the joint distribution the
same in every class: uniform, a given joint table, or the product of given marginals.

The steerer contract (``steering.base``): ``steerer.balance(z, y, generator, sample_latents)``
and ``steerer.flip(z, y, generator)`` return a ``Steered`` (latents, values, the call's draw
statistics); every random draw comes from ``generator``, every fresh latent from
``sample_latents(n, generator)`` (the generator's prior; default N(0, I)), which is never stored.
Erase is not offered here: it is latent-only (``LatentSteerer(mode="erase")``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from .base import (
    MAX_CLASSES,
    MAX_LATENT_DIM,
    MAX_VALUES,
    Steered,
    Steerer,
    check_config,
    check_tensors,
    classifier_state,
    plain_target,
    target_table,
)
from .classifier import LatentClassifier, fit_classifiers, one_thread
from .flips import gradient_flip
from .registry import register_steerer
from .resample import corrected_acceptance, rejection_sample
from .sklearn_api import SklearnSteererMixin

MIN_SHOWN = 1  # a (class, value) needs this many labelled samples to be a target
N_PRIOR = 1 << 15  # prior draws that estimate each class's value distribution under the classifier
RESTARTS, RESTART_JITTER = (
    3,
    0.5,
)  # flips stuck below the threshold retry from the anchor plus this much noise


TABLES = {"counts": "I64", "target": "F32", "shares": "F32", "accept": "F32", "rate": "F32"}
CONFIG = (
    "mode",
    "names",
    "num_values",
    "num_classes",
    "latent_dim",
    "threshold",
    "step_size",
    "max_steps",
    "penalty",
    "seed",
    "target_distribution",
)


@register_steerer
class ClassifierSteerer(SklearnSteererMixin, Steerer):
    """Fit from ``(latents, classes, {name: labels})``; ``forward(z, y, generator)`` balances."""

    methods = ("resample",)
    method = "resample"
    modes = ("balance", "flip")

    def __init__(
        self,
        mode: str = "balance",
        target_distribution=None,
        threshold: float = 0.95,
        step_size: float = 0.25,
        max_steps: int = 100,
        penalty: float = 0.02,
        seed: int = 0,
    ):
        super().__init__()
        self.check_mode(mode)
        if not 0.5 <= threshold < 1:
            raise ValueError(f"threshold must lie in [0.5, 1), got {threshold!r}")
        self.mode, self.target_distribution = mode, target_distribution
        self.threshold, self.step_size, self.max_steps, self.penalty, self.seed = (
            threshold,
            step_size,
            max_steps,
            penalty,
            seed,
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
        """Labels spent actively (``steering.active``), then a calibrated classifier per
        attribute."""
        from .active import label_actively

        if keep_labeler is not None:
            raise ValueError(f"keep_labeler needs method='confirmed' (got method={method!r})")
        cls.check_mode(mode)
        samples, n_random = label_actively(generator, labelers, n, seed, progress, active)
        steerer = cls(mode, target_distribution, seed=seed).fit(
            samples.latents,
            samples.classes,
            samples.labels,
            num_classes=max(1, generator.num_classes),
            sample_latents=generator.sample_latents,
            random_count=n_random,
        )
        return steerer, samples

    def fit(
        self,
        latents,
        classes,
        protected,
        num_classes: int | None = None,
        num_values: dict | None = None,
        sample_latents=None,
        random_count: int | None = None,
    ):
        """``protected``: labels ``[N]`` or ``{name: labels [N]}``; ``sample_latents(n,
        generator)``: the prior (used at fit only, never stored). Returns this steerer, frozen.

        ``random_count``: the first samples that are plain prior draws (the rest were picked where
        the classifier was unsure); the classifiers' temperature is calibrated on those, and the
        acceptance weights are corrected with them (``corrected_acceptance``), as prior draws.
        """
        self._check_unfitted()
        with one_thread():
            self._fit(
                latents, classes, protected, num_classes, num_values, sample_latents, random_count
            )
        return self._freeze()

    def _fit(
        self, latents, classes, protected, num_classes, num_values, sample_latents, random_count
    ):
        z = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
        y = torch.as_tensor(np.asarray(classes), dtype=torch.int64)
        labels = protected if isinstance(protected, dict) else {"protected": protected}
        labels = {
            name: torch.as_tensor(np.asarray(v), dtype=torch.int64) for name, v in labels.items()
        }
        if z.ndim != 2 or any(len(v) != len(z) for v in [y, *labels.values()]):
            raise ValueError(
                "latents [N, d], classes [N] and protected labels [N] must agree, got "
                f"{list(z.shape)}, {list(y.shape)}, "
                + ", ".join(f"{k}: {list(v.shape)}" for k, v in labels.items())
            )
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or infinite values")
        C = num_classes or int(y.max()) + 1
        values = {
            name: (num_values or {}).get(name) or int(v.max()) + 1 for name, v in labels.items()
        }
        for name, v in labels.items():
            if int(v.min()) < 0 or int(v.max()) >= values[name]:
                raise ValueError(
                    f"protected labels {name!r} must lie in [0, {values[name]}), got "
                    f"{int(v.min())}..{int(v.max())}"
                )
            if len(torch.unique(v)) < 2:
                raise ValueError(
                    f"protected attribute {name!r} takes a single value ({int(v[0])}) in all "
                    f"{len(v)} labelled samples: nothing to balance"
                )
        self.names_, self.num_values_ = list(labels), [values[n] for n in labels]
        self.num_classes_, self.dim_ = C, z.shape[1]
        counts = {
            name: torch.zeros(C, values[name], dtype=torch.int64).index_put_(
                (y, v), torch.ones_like(v), accumulate=True
            )
            for name, v in labels.items()
        }
        target = self._target(counts)
        self._check_shown(counts, target)
        self.classifiers = fit_classifiers(z, y, labels, C, values, self.seed, random_count)
        prior = self._draw(N_PRIOR, torch.Generator().manual_seed(self.seed + 1), sample_latents)
        joint = torch.zeros(len(z), dtype=torch.int64)
        for name, k in zip(self.names_, self.num_values_, strict=True):
            joint = joint * k + labels[name]
        drawn = torch.arange(len(z)) < (
            len(z) if random_count is None else random_count
        )  # plain prior draws
        shares, accept = [], []
        for c in range(C):
            with torch.no_grad():
                q_prior = self.joint_log_proba(prior, torch.full((len(prior),), c)).exp()
                mine = (y == c) & drawn
                q_labelled = self.joint_log_proba(z[mine], y[mine]).exp()
            shares.append(q_prior.mean(0))
            accept.append(corrected_acceptance(q_prior, q_labelled, joint[mine], target))
        shares, accept = torch.stack(shares), torch.stack(accept)
        self.register_buffer(
            "counts", torch.stack([_pad(counts[n], max(self.num_values_)) for n in self.names_])
        )
        self.register_buffer("target", target)
        self.register_buffer("shares", shares)
        self.register_buffer("accept", accept)
        self.register_buffer(
            "rate", (shares * self.accept).sum(1)
        )  # E_prior[acceptance], exact for any q
        for c in range(C):
            if self.rate[c] < 1e-3:
                raise ValueError(
                    f"balancing class {c} would need about {1 / float(self.rate[c]):.0f} latent "
                    "draws per kept sample: "
                    "the target asks for values it almost never shows; give a target closer to "
                    "what it produces"
                )

    def _target(self, counts: dict) -> torch.Tensor:
        """The joint target ``[J]``: uniform, a given joint table, or the product of given
        marginals."""
        return target_table(self.names_, self.num_values_, self.target_distribution)

    def _check_shown(self, counts: dict, target: torch.Tensor) -> None:
        """Every value the target asks for must show in every class (else: which, and what to
        do)."""
        table = target.view(*self.num_values_)
        for i, name in enumerate(self.names_):
            others = [j for j in range(len(self.names_)) if j != i]
            wanted = (
                table.sum(dim=others) if others else table
            ) > 0  # (sum over dim=[] would sum everything)
            shown = counts[name] >= MIN_SHOWN
            if not (shown | ~wanted).all():
                lacking = [(c, v) for c, v in torch.nonzero(~shown & wanted).tolist()]
                never = sorted({v for _, v in lacking if int(counts[name][:, v].sum()) == 0})
                if never:
                    raise ValueError(
                        f"the target asks for {name} value(s) {never}, which the generator never "
                        "produced in "
                        f"{int(counts[name].sum())} labelled samples; give them probability 0 in "
                        "target_distribution"
                    )
                c, v = lacking[0]
                raise ValueError(
                    f"class {c} never shows {name} value {v} in its {int(counts[name][c].sum())} "
                    "labelled samples, so it "
                    f"cannot be balanced towards it; label more samples (n), or give value {v} "
                    "probability 0 in "
                    "target_distribution"
                )

    # ------------------------------------------------------------ the classifier

    def joint_log_proba(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """log q(joint value | z, class) ``[N, J]`` (product of the attributes' posteriors)."""
        out = None
        for name in self.names_:
            lp = self.classifiers[name].log_proba(z, y)
            out = lp if out is None else (out[:, :, None] + lp[:, None, :]).flatten(1)
        return out

    def predict_protected(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The joint protected value each latent stands for (argmax of the classifier)."""
        self._check_fitted()
        with torch.no_grad():
            return self.joint_log_proba(z, y).argmax(1)

    def decode_joint(self, joint: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each attribute's value from joint indices."""
        out, rest = {}, joint.clone()
        for name, k in reversed(list(zip(self.names_, self.num_values_, strict=True))):
            out[name], rest = rest % k, rest // k
        return {name: out[name] for name in self.names_}

    def expected_draws(self, class_probs=None) -> float:
        """Latent draws per kept sample, averaged over classes (uniform unless ``class_probs``)."""
        self._check_fitted()
        pi = (
            torch.full((self.num_classes_,), 1.0 / self.num_classes_)
            if class_probs is None
            else torch.as_tensor(class_probs).float()
        )
        return float((pi / self.rate).sum())

    # ------------------------------------------------------------ steering

    def balance(self, z, y, generator=None, sample_latents=None) -> Steered:
        """Rejection-sample latents so that the joint protected value follows the target in every
        class; fresh latents come from ``sample_latents(n, generator)`` (default N(0, I))."""
        self._check_fitted()

        def draw(n, rng):
            return self._draw(n, rng, sample_latents)

        with one_thread():  # a shared stream card must give the same latents in every process
            out, stats = rejection_sample(
                z.cpu(), y.cpu(), self._acceptance, self.rate, draw, generator
            )
        return Steered(out.to(z.device), None, stats)

    def _acceptance(self, z, y):
        with torch.no_grad():
            return (self.joint_log_proba(z, y).exp() * self.accept[y]).sum(1).clamp(0, 1)

    def _draw(self, n: int, generator=None, sample_latents=None) -> torch.Tensor:
        if sample_latents is None:
            return torch.randn(n, self.dim_, generator=generator)
        return sample_latents(n, generator=generator).cpu().float()

    def flip(self, z, y, generator=None, values=None) -> Steered:
        """Counterfactual twins: each latent moved to another joint value (drawn from the target
        unless given)."""
        self._check_fitted()
        with one_thread():  # bit-repeatable from one process to the next, like balance
            return self._flip(z, y, generator, values)

    def _flip(self, z, y, generator, values):
        zc, yc = z.cpu(), y.cpu()
        current = self.predict_protected(zc, yc)
        if values is None:
            probs = self.target[None, :].repeat(len(yc), 1) * (self.accept[yc] > 0)
            probs[torch.arange(len(yc)), current] = 0
            empty = probs.sum(1) == 0
            probs[empty, current[empty]] = 1.0  # nothing else to go to: stay
            values = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        values = torch.as_tensor(values, dtype=torch.int64).cpu()
        if (
            values.shape != yc.shape
            or int(values.min()) < 0
            or int(values.max()) >= self.target.numel()
        ):
            raise ValueError(
                f"values must be {len(yc)} joint protected values in [0, {self.target.numel()})"
            )
        if not bool((self.accept[yc, values] > 0).all()):
            raise ValueError(
                "values asks for a protected value that a class does not show (or the target "
                "excludes)"
            )
        rows = torch.arange(len(yc))

        def log_prob(points, index):
            return (
                self.joint_log_proba(points, yc[index]).gather(1, values[index][:, None]).squeeze(1)
            )

        twins, reached = gradient_flip(
            log_prob, zc, rows, self.threshold, self.step_size, self.max_steps, self.penalty
        )
        for _ in range(
            RESTARTS
        ):  # a latent stuck below the threshold restarts from a jittered anchor
            stuck = torch.nonzero(~reached).flatten()
            if len(stuck) == 0:
                break
            jitter = RESTART_JITTER * torch.randn(len(stuck), zc.shape[1], generator=generator)
            again, ok = gradient_flip(
                log_prob,
                zc[stuck] + jitter,
                stuck,
                self.threshold,
                self.step_size,
                self.max_steps,
                self.penalty,
            )
            twins[stuck[ok]], reached[stuck[ok]] = again[ok], True
        stats = {"n": len(yc), "reached": int(reached.sum())}
        return Steered(twins.to(z.device), values.to(z.device), stats)

    def propose_twins(
        self, z, y, values, rho: float, candidates: int = 64, generator=None
    ) -> torch.Tensor:
        """For each latent, the candidate ``rho z + sqrt(1 - rho^2) eps`` (which keeps an N(0, I)
        prior exactly) that the classifier finds most likely to show its requested value."""
        self._check_fitted()
        zc, yc, vc = z.cpu().float(), y.cpu(), torch.as_tensor(values).cpu()
        eps = torch.randn(len(zc), candidates, zc.shape[1], generator=generator)
        pool = rho * zc[:, None] + math.sqrt(max(0.0, 1 - rho * rho)) * eps
        with torch.no_grad():
            lp = self.joint_log_proba(pool.flatten(0, 1), yc.repeat_interleave(candidates))
            score = lp.gather(1, vc.repeat_interleave(candidates)[:, None]).view(
                len(zc), candidates
            )
        return pool[torch.arange(len(zc)), score.argmax(1)].to(z.device)

    def flip_proposal(self):
        return self

    # ------------------------------------------------------------ state (cards)

    def config(self) -> dict:
        return {
            "mode": self.mode,
            "names": self.names_,
            "num_values": self.num_values_,
            "num_classes": self.num_classes_,
            "latent_dim": self.dim_,
            "threshold": self.threshold,
            "step_size": self.step_size,
            "max_steps": self.max_steps,
            "penalty": self.penalty,
            "seed": self.seed,
            "target_distribution": plain_target(self.target_distribution),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            name: getattr(self, name) for name in ("counts", "target", "shares", "accept", "rate")
        }
        for name, clf in self.classifiers.items():
            out.update({f"clf.{name}.{k}": v for k, v in clf.state_dict().items()})
        return out

    @classmethod
    def tensor_dtypes(cls, config: dict) -> dict:
        return dict(TABLES)

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> ClassifierSteerer:
        """Rebuild a fitted steerer from its card's config and tensors (both checked)."""
        check_config(
            config,
            CONFIG,
            {"num_classes": MAX_CLASSES, "latent_dim": MAX_LATENT_DIM, "num_values": MAX_VALUES},
            "the steerer's config",
        )
        if not isinstance(config["names"], list) or len(config["names"]) != len(
            config["num_values"]
        ):
            raise ValueError(
                f"'names' must name each of the {len(config['num_values'])} attributes"
            )
        check_tensors(tensors, TABLES, "the steerer's tensors")
        for name in ("accept", "shares", "counts"):
            tensor = tensors[name]
            first = tensor.shape[1] if name == "counts" else tensor.shape[0]
            if tensor.dim() < 2 or first != config["num_classes"]:
                raise ValueError(
                    f"tensor {name!r} has shape {list(tensor.shape)}, "
                    f"which does not fit num_classes {config['num_classes']}"
                )
        if not bool((tensors["accept"] >= 0).all() and (tensors["accept"] <= 1).all()):
            raise ValueError("tensor 'accept' must hold acceptance probabilities in [0, 1]")
        steerer = cls(
            config["mode"],
            config["target_distribution"],
            config["threshold"],
            config["step_size"],
            config["max_steps"],
            config["penalty"],
            config["seed"],
        )
        steerer.names_, steerer.num_values_ = list(config["names"]), list(config["num_values"])
        steerer.num_classes_, steerer.dim_ = config["num_classes"], config["latent_dim"]
        for name in TABLES:
            steerer.register_buffer(name, tensors[name])
        steerer.classifiers = nn.ModuleDict(
            {
                name: LatentClassifier.from_state(classifier_state(tensors, name))
                for name in steerer.names_
            }
        )
        return steerer._freeze()


def _pad(t: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, k - t.shape[1]))

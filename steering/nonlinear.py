"""Steering that does not assume a half-space: a calibrated latent classifier per class, then
rejection sampling (balance) and classifier-gradient flips (counterfactual twins).

One or several protected attributes at once: each gets its own per-class classifier; their joint
value is the tuple of values (joint index in row-major order), and its posterior is the product
of the attributes' posteriors (labels of one image are near-deterministic functions of its latent,
so they are conditionally independent given it). ``balance`` makes the joint distribution the
same in every class: uniform, a given joint table, or the product of given marginals.

Same call contract as ``LatentSteerer``: ``steerer(z, y, generator)`` for balance,
``steerer.flip(z, y, generator)`` for twins; every random draw comes from ``generator``.
Erase is not offered here: it is latent-only (``LatentSteerer(mode="erase")``).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from sklearn.exceptions import NotFittedError
from torch import nn

from .classifier import LatentClassifier, one_thread
from .flips import gradient_flip
from .resample import corrected_acceptance, rejection_sample

STEER_MODES = ("balance", "flip")
MIN_SHOWN = 1  # a (class, value) needs this many labelled samples to be a target
N_PRIOR = 1 << 15  # prior draws that estimate each class's value distribution under the classifier
RESTARTS, RESTART_JITTER = (
    3,
    0.5,
)  # flips stuck below the threshold retry from the anchor plus this much noise


class ClassifierSteerer(nn.Module):
    """Fit from ``(latents, classes, {name: labels})``; ``forward(z, y, generator)`` balances."""

    kind = "classifier"
    method = "resample"

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
        if mode not in STEER_MODES:
            raise ValueError(
                f"mode must be one of {STEER_MODES} for a classifier steerer, got {mode!r} "
                "(erase is latent-only: LatentSteerer(mode='erase'))"
            )
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
        self.sample_latents = None  # the prior's sampler; None: standard normal

    # ------------------------------------------------------------ fitting

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
        """``protected``: labels ``[N]`` or ``{name: labels [N]}``; ``sample_latents(n, generator)``: the prior.

        ``random_count``: the first samples that are plain prior draws (the rest were picked where
        the classifier was unsure); the classifiers' temperature is calibrated on those, and the
        acceptance weights are corrected with them (``corrected_acceptance``), as prior draws.
        """
        with one_thread():
            return self._fit(
                latents, classes, protected, num_classes, num_values, sample_latents, random_count
            )

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
                f"latents [N, d], classes [N] and protected labels [N] must agree, got {list(z.shape)}, {list(y.shape)}, "
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
                    f"protected labels {name!r} must lie in [0, {values[name]}), got {int(v.min())}..{int(v.max())}"
                )
            if len(torch.unique(v)) < 2:
                raise ValueError(
                    f"protected attribute {name!r} takes a single value ({int(v[0])}) in all {len(v)} labelled samples: nothing to balance"
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
        self.sample_latents = sample_latents
        prior = self._draw(N_PRIOR, torch.Generator().manual_seed(self.seed + 1))
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
                    f"balancing class {c} would need about {1 / float(self.rate[c]):.0f} latent draws per kept sample: "
                    "the target asks for values it almost never shows; give a target closer to what it produces"
                )
        self.last_draws_ = {}
        return self

    def _target(self, counts: dict) -> torch.Tensor:
        """The joint target ``[J]``: uniform, a given joint table, or the product of given marginals."""
        return target_table(self.names_, self.num_values_, self.target_distribution)

    def _check_shown(self, counts: dict, target: torch.Tensor) -> None:
        """Every value the target asks for must show in every class (else: which, and what to do)."""
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
                        f"the target asks for {name} value(s) {never}, which the generator never produced in "
                        f"{int(counts[name].sum())} labelled samples; give them probability 0 in target_distribution"
                    )
                c, v = lacking[0]
                raise ValueError(
                    f"class {c} never shows {name} value {v} in its {int(counts[name][c].sum())} labelled samples, so it "
                    f"cannot be balanced towards it; label more samples (n), or give value {v} probability 0 in "
                    "target_distribution"
                )

    def _check_fitted(self):
        if not hasattr(self, "accept"):
            raise NotFittedError(
                "this ClassifierSteerer is not fitted yet: call fit(latents, classes, protected)"
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

    def forward(
        self, z: torch.Tensor, y: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        self._check_fitted()
        if self.mode == "balance":
            return self.balance(z, y, generator)
        return self.flip(z, y, generator)[0]

    def balance(self, z, y, generator=None) -> torch.Tensor:
        """Rejection-sample latents so that the joint protected value follows the target in every class."""
        self._check_fitted()
        with one_thread():  # a shared stream card must give the same latents in every process
            out, stats = rejection_sample(
                z.cpu(), y.cpu(), self._acceptance, self.rate, self._draw, generator
            )
        self.last_draws_ = stats
        return out.to(z.device)

    def _acceptance(self, z, y):
        with torch.no_grad():
            return (self.joint_log_proba(z, y).exp() * self.accept[y]).sum(1).clamp(0, 1)

    def _draw(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if self.sample_latents is None:
            return torch.randn(n, self.dim_, generator=generator)
        return self.sample_latents(n, generator=generator).cpu().float()

    def flip(self, z, y, generator=None, values=None):
        """Counterfactual twins: each latent moved to another joint value (drawn from the target unless given)."""
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
                "values asks for a protected value that a class does not show (or the target excludes)"
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
        self.last_flip_ = {"n": len(yc), "reached": int(reached.sum())}
        return twins.to(z.device), values.to(z.device)

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

    def as_transform(self, seed: int = 0):
        """A ``transform(z, y)`` for labelling/streams, with its own seeded random draws."""
        rng = torch.Generator().manual_seed(seed)

        def transform(z, y):
            return self.forward(z.cpu(), y.cpu(), rng).to(z.device)

        return transform

    # ------------------------------------------------------------ cards

    def config(self) -> dict:
        return {
            "kind": self.kind,
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
            "target_distribution": _plain(self.target_distribution),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            name: getattr(self, name) for name in ("counts", "target", "shares", "accept", "rate")
        }
        for name, clf in self.classifiers.items():
            out.update({f"clf.{name}.{k}": v for k, v in clf.state_dict().items()})
        return out

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> ClassifierSteerer:
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
        for name in ("counts", "target", "shares", "accept", "rate"):
            steerer.register_buffer(name, tensors[name])
        steerer.classifiers = nn.ModuleDict(
            {
                name: LatentClassifier.from_state(
                    {
                        k.split(".", 2)[2]: v
                        for k, v in tensors.items()
                        if k.startswith(f"clf.{name}.")
                    }
                )
                for name in steerer.names_
            }
        )
        steerer.last_draws_ = {}
        return steerer


def target_table(names: list[str], num_values: list[int], p) -> torch.Tensor:
    """The joint target ``[J]`` over ``names``: uniform (``p=None``), a joint table, or ``{name: marginal}``."""
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
            _distribution(p.get(n, [1.0 / k] * k), k, f"target_distribution[{n!r}]")
            for n, k in zip(names, shape, strict=True)
        ]
        joint = marginals[0]
        for m in marginals[1:]:
            joint = torch.outer(joint, m).flatten()
        return joint
    table = torch.as_tensor(np.asarray(p, dtype=np.float64))
    if tuple(table.shape) not in (shape, (math.prod(shape),)):
        raise ValueError(
            f"target_distribution must have shape {list(shape)} (or be a dict of marginals), got {list(table.shape)}"
        )
    return _distribution(table.flatten(), math.prod(shape), "target_distribution")


def fit_classifiers(
    z,
    y,
    labels: dict,
    num_classes: int,
    num_values: dict,
    seed: int = 0,
    random_count: int | None = None,
) -> nn.ModuleDict:
    """One ``LatentClassifier`` per protected attribute, calibrated on a held-out fifth of the prior draws."""
    n_random = len(z) if random_count is None else random_count
    order = torch.randperm(n_random, generator=torch.Generator().manual_seed(seed))
    held = order[: max(1, n_random // 5)]
    train = torch.ones(len(z), dtype=torch.bool)
    train[held] = False
    return nn.ModuleDict(
        {
            name: LatentClassifier(seed=seed).fit(
                z[train],
                y[train],
                v[train],
                num_classes,
                num_values[name],
                calibration=(z[held], y[held], v[held]),
            )
            for name, v in labels.items()
        }
    )


def uncertainty(classifiers: nn.ModuleDict, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed predictive entropy per latent: where a label teaches the classifiers most."""
    with one_thread():  # its ranking picks the next labels: it must repeat bit for bit
        return sum(clf.entropy(z, y) for clf in classifiers.values())


def _distribution(p, k: int, what: str) -> torch.Tensor:
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


def _pad(t: torch.Tensor, k: int) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, k - t.shape[1]))


def _plain(p):
    if p is None or isinstance(p, dict):
        return None if p is None else {k: np.asarray(v, dtype=float).tolist() for k, v in p.items()}
    return np.asarray(p, dtype=float).tolist()

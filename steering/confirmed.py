"""Labeler-confirmed balance: every kept sample is synthesized and labelled, and each draw meets its
target proportions exactly, per (class, value) cell, in the labeler's own terms.

A draw of ``n`` samples sets an integer quota per cell (largest remainders of ``n * target``), then
fills the quotas in rounds: latents are *proposed*, synthesized and labelled, and a sample whose
label falls in a still-unfilled cell may be kept there. The proposal is where the latent classifier
(``steering.classifier``) earns its keep: within class ``g`` it is the mixture

    q(z | g) = p(z) s_g(z),   s_g(z) = e + sum_j c_j pi_j(z | g) / Z_j

of the prior (weight ``e``: at least ``defensive``, plus the quotas of cells the classifier cannot
find) and, for each unfilled cell ``j``, the prior tilted by the classifier's posterior
``pi_j`` (weight ``c_j``, proportional to the cell's remaining quota; ``Z_j = E_p[pi_j]``). It is
drawn by rejection in latent space (prior draws and classifier calls, no synthesis). A candidate
labelled ``j`` is kept with probability ``min(1, s_core_j / (cap * s(z)))``, where
``s_core_j = e + c_j / Z_j`` is ``s`` where the classifier is sure of ``j``: within the cell the
kept
samples then follow ``p(z) min(s(z), s_core_j / cap)``, which is the generator's own distribution
wherever ``s >= s_core_j / cap``. ``cap=None`` is exact everywhere (``s >= e``, so the cap is
``s_core_j / e``) at the price of thinning the cell's core (on the embedded default it needed over
30
syntheses per kept sample, more than plain rejection's 11.5); ``proposal="prior"`` (plain
image-space
rejection: prior samples, labelled, kept while their cell has room) is exact too, and is the
fallback where the classifier does not help (rare cells it cannot find, unseen geometry): the fit
measures the classifier proposal on a trial draw and keeps it only if it costs fewer syntheses per
kept sample than plain rejection's estimate (``costs_["proposal"]``).

The default cap, 1.25, comes from ``benchmarks/confirmed_balance.py`` on the embedded default: caps
1 / 1.25 / 1.5 / 2 cost 1.30 / 1.40 / 1.62 / 2.08 syntheses per kept sample, and their within-cell
distortion bound in the latent (total variation) fell 0.052 / 0.042 / 0.034 / 0.025, while the
distance of the other factors (colour, size, position, rotation, hue) to the prior's stayed at the
sampling-noise floor for every cap; 1.25 is the largest cap within 1.5 syntheses per kept sample.
The distortion that remains lies along the protected attribute's own latent code, near its cells'
boundaries, where the classifier under-proposes.

``draw_batches`` fills ``k`` draws as one block (all their quotas at once) and deals each cell's
kept
samples evenly into them, so each draw is exact and the block pays for its last quotas (the rounds
that chase a few missing cells) once instead of ``k`` times; confirmed streams draw their batches
so.

A joint cell never labelled at fit is not an error when each of its values was labelled: the
proposal's cell posterior is the product of the attributes' classifiers, so the cell's mass ``Z_j``
is estimated on prior draws; only a cell of (numerically) zero mass is refused (``MIN_MASS``).

The steerer is frozen, picklable data (classifiers as tensors, the target, the cell shares); the
generator and the labelers are passed to ``draw``, never stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from plumbing.validation import check_labeler_output, is_int, is_number

from .base import (
    MAX_CLASSES,
    MAX_LATENT_DIM,
    MAX_VALUES,
    Steerer,
    check_config,
    check_tensors,
    classifier_state,
    plain_target,
    target_table,
)
from .classifier import LatentClassifier, fit_classifiers, one_thread
from .labelling import generator_device
from .registry import register_steerer

GUARANTEE = "confirmed"
TABLES = ("cell_target", "counts", "prior_counts", "mass", "precision")
CONFIG = (
    "target_distribution",
    "cap",
    "defensive",
    "proposal",
    "seed",
    "names",
    "keep",
    "attributes",
    "num_values",
    "num_classes",
    "conditional",
    "latent_dim",
)
TRIAL_N = 1024  # the cost is measured at fit on a trial draw of at most this many samples
PROPOSALS = ("auto", "classifier", "prior")
DEFENSIVE = (
    0.05  # share of each class's proposals drawn from the plain prior: bounds p/q by 1/DEFENSIVE
)
# default cap on the importance ratio, relative to a cell's core (see the module docstring)
CAP = 1.25
MIN_SHARE = (
    1e-5  # a cell the classifier gives less prior mass than this is left to the prior component
)
# a joint cell never labelled at fit is refused below this mass (numerically zero: >= 10^7 syntheses
# each)
MIN_MASS = 1e-7
# proposals per round at least; a round proposes each remaining quota over the classifier's
# precision there
MIN_ROUND = 8
N_PRIOR = 1 << 14  # prior draws per class that estimate the classifier's cell masses Z
MAX_BLOCK = 1 << 16  # latents drawn at once while sampling the proposal
BUDGET_PER_SAMPLE, BUDGET_BASE = (
    100,
    10_000,
)  # default synthesis budget of a draw: 100 per sample + 10,000


@dataclass
class Draw:
    """``n`` confirmed samples: latents, classes, images and every attribute's labels, with their
    cost.

    ``classes`` holds the generator's class (conditional), the keep-label (unconditional with a
    keep labeler) or zeros. ``syntheses`` counts every image synthesized, ``labeler_calls`` every
    image passed to a labeler (each labeler counts), ``latent_draws`` every prior latent the
    proposal examined.
    """

    latents: torch.Tensor
    classes: torch.Tensor
    images: torch.Tensor
    labels: dict[str, torch.Tensor]
    syntheses: int
    labeler_calls: int
    latent_draws: int
    proposal: str
    rounds: int = 0
    stats: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.classes)

    @property
    def syntheses_per_kept(self) -> float:
        return self.syntheses / max(len(self), 1)

    @property
    def labeler_calls_per_kept(self) -> float:
        return self.labeler_calls / max(len(self), 1)

    @property
    def latent_draws_per_kept(self) -> float:
        return self.latent_draws / max(len(self), 1)

    def cost(self) -> dict:
        """The draw's cost as plain numbers (totals and per kept sample)."""
        return {
            "kept": len(self),
            "syntheses": self.syntheses,
            "labeler_calls": self.labeler_calls,
            "latent_draws": self.latent_draws,
            "syntheses_per_kept": self.syntheses_per_kept,
            "labeler_calls_per_kept": self.labeler_calls_per_kept,
            "latent_draws_per_kept": self.latent_draws_per_kept,
            "proposal": self.proposal,
            "rounds": self.rounds,
        }


@register_steerer
class ConfirmedSteerer(Steerer):
    """Fit from labelled latents; ``draw(generator, labeler, n, seed)`` returns samples meeting the
    target exactly.

    Cells: the generator's class (or nothing, for an unconditional generator) times the joint value
    of the labelled attributes. With ``keep`` (an unconditional generator and a second labeler), the
    keep-label plays the class: the protected attributes are balanced within each keep value and the
    keep values keep the generator's own marginal (estimated from the labelled prior draws).
    """

    methods = ("confirmed",)
    method = "confirmed"
    modes = ("balance",)
    mode = "balance"
    guarantee = GUARANTEE
    fit_hint = "call fit(...) or steering.fit_steerer(..., method='confirmed')"

    def __init__(
        self,
        target_distribution=None,
        cap: float | None = CAP,
        defensive: float = DEFENSIVE,
        proposal: str = "auto",
        seed: int = 0,
    ):
        super().__init__()
        if cap is not None and (not is_number(cap) or cap < 1):
            raise ValueError(f"cap must be a number >= 1 (or None: exact), got {cap!r}")
        if not is_number(defensive) or not 0 < defensive <= 1:
            raise ValueError(f"defensive must be a share in (0, 1], got {defensive!r}")
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        self.target_distribution, self.cap, self.defensive, self.seed = (
            target_distribution,
            cap,
            defensive,
            seed,
        )
        self.proposal = proposal
        self.costs_: dict = {}

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
        """Labels spent actively, the classifiers fitted as for ``resample``, then a trial draw that
        measures the classifier proposal's cost against plain image-space rejection (``costs_``)."""
        from .active import label_actively

        if mode != "balance":
            raise ValueError(f"method='confirmed' balances (mode='balance'); got mode={mode!r}")
        keep = None
        if keep_labeler is not None:
            if generator.num_classes:
                raise ValueError(
                    "keep_labeler stands in for the class of an unconditional generator; this "
                    f"generator has {generator.num_classes} classes (its class input is kept "
                    "already)"
                )
            keeps = dict(keep_labeler) if isinstance(keep_labeler, dict) else {"keep": keep_labeler}
            if len(keeps) != 1 or not all(callable(f) for f in keeps.values()):
                raise ValueError(
                    "keep_labeler must be a callable images -> labels "
                    "(or {name: callable}, one entry)"
                )
            keep = next(iter(keeps))
            if keep in labelers:
                raise ValueError(
                    f"keep_labeler's name {keep!r} is also a protected attribute's name"
                )
            labelers = {**keeps, **labelers}
        samples, n_random = label_actively(generator, labelers, n, seed, progress, active, keep)
        steerer = cls(target_distribution, seed=seed).fit(
            samples.latents,
            samples.classes,
            samples.labels,
            num_classes=generator.num_classes,
            keep=keep,
            sample_latents=generator.sample_latents,
            random_count=n_random,
        )
        rejection = steerer.rejection_cost()
        costs = {}
        try:
            trial = steerer.draw(
                generator,
                dict(labelers),
                n=min(TRIAL_N, max(64, n // 10)),
                seed=seed + 977,
                proposal="classifier",
            )
        except ValueError as error:  # a cell too rare for the trial's budget: a draw says so itself
            costs.update(
                {
                    "trial_failed": str(error),
                    "syntheses_per_kept": rejection,
                    "proposal": "classifier",
                }
            )
        else:
            costs.update({f"trial_{k}": v for k, v in trial.cost().items() if k != "proposal"})
            costs["syntheses_per_kept"] = min(trial.syntheses_per_kept, rejection)
            costs["proposal"] = "classifier" if trial.syntheses_per_kept <= rejection else "prior"
        costs["labelers"] = len(labelers)
        return steerer.with_costs(costs), samples

    def with_costs(self, costs: dict) -> ConfirmedSteerer:
        """A copy of this (frozen) steerer with ``costs`` added to the costs measured at fit."""
        self._check_fitted()
        config = self.config()
        config["costs"] = {**config["costs"], **costs}
        return type(self).from_state(config, self.tensors())

    def fit(
        self,
        latents,
        classes,
        labels: dict,
        num_classes: int,
        keep: str | None = None,
        sample_latents=None,
        random_count: int | None = None,
        num_values: dict | None = None,
    ):
        """``labels``: ``{name: [N]}`` for every protected attribute (and ``keep``, when given).

        ``num_classes``: the generator's (0: unconditional). ``sample_latents(n, generator)``: the
        prior (used here only, never stored). ``random_count``: the first samples are plain prior
        draws (they calibrate the classifiers and give the cells' prior shares).
        """
        self._check_unfitted()
        with one_thread():
            self._fit(
                latents,
                classes,
                labels,
                num_classes,
                keep,
                sample_latents,
                random_count,
                num_values,
            )
        return self._freeze()

    def _fit(
        self, latents, classes, labels, num_classes, keep, sample_latents, random_count, num_values
    ):
        z = torch.as_tensor(np.asarray(latents), dtype=torch.float32).flatten(1)
        y = torch.as_tensor(np.asarray(classes), dtype=torch.int64)
        if not isinstance(labels, dict) or not labels:
            raise ValueError("labels must be a non-empty dict {attribute: labels [N]}")
        labels = {
            name: torch.as_tensor(np.asarray(v), dtype=torch.int64) for name, v in labels.items()
        }
        if any(len(v) != len(z) for v in [y, *labels.values()]):
            raise ValueError(
                f"latents [N, d], classes [N] and labels [N] must agree, got {list(z.shape)}, "
                f"{list(y.shape)}, " + ", ".join(f"{k}: {list(v.shape)}" for k, v in labels.items())
            )
        if not torch.isfinite(z).all():
            raise ValueError("latents contain NaN or infinite values")
        if keep is not None and keep not in labels:
            raise ValueError(
                f"keep {keep!r} must name one of the labelled attributes {sorted(labels)}"
            )
        if keep is not None and num_classes:
            raise ValueError(
                "a keep labeler stands in for the class of an unconditional generator; this one "
                "has classes"
            )
        names = [n for n in labels if n != keep]
        if not names:
            raise ValueError(
                "labels must hold at least one protected attribute besides the keep labels"
            )
        G = max(1, int(num_classes))
        if int(y.min()) < 0 or int(y.max()) >= G:
            raise ValueError(f"classes must lie in [0, {G}), got {int(y.min())}..{int(y.max())}")
        attrs = ([keep] if keep is not None else []) + names
        values = {a: int((num_values or {}).get(a) or int(labels[a].max()) + 1) for a in attrs}
        for name in names:
            if len(torch.unique(labels[name])) < 2:
                raise ValueError(
                    f"protected attribute {name!r} takes a single value ({int(labels[name][0])}) "
                    "in all "
                    f"{len(z)} labelled samples: there is nothing to balance (is the labeler "
                    "right?)"
                )
        self.names_, self.keep_, self.attrs_ = names, keep, attrs
        self.num_values_ = [values[a] for a in attrs]
        self.num_classes_, self.conditional_, self.dim_ = G, bool(num_classes), z.shape[1]
        J = math.prod(self.num_values_)
        drawn = torch.arange(len(z)) < (len(z) if random_count is None else random_count)
        joint = self._joint({a: labels[a] for a in attrs})
        counts = torch.zeros(G, J, dtype=torch.int64).index_put_(
            (y, joint), torch.ones_like(joint), accumulate=True
        )
        prior_counts = torch.zeros(G, J, dtype=torch.int64).index_put_(
            (y[drawn], joint[drawn]), torch.ones_like(joint[drawn]), accumulate=True
        )
        protected = target_table(names, [values[n] for n in names], self.target_distribution)
        if keep is not None:
            keep_counts = prior_counts.sum(0).view(values[keep], -1).sum(1).double()
            cell_target = (
                torch.outer(keep_counts / keep_counts.sum(), protected.double()).flatten().float()
            )
        else:
            cell_target = protected.float()
        self._check_shown(counts, cell_target, y, {a: labels[a] for a in attrs})
        self.classifiers = fit_classifiers(
            z, y, {a: labels[a] for a in attrs}, G, values, self.seed, random_count
        )
        mass = torch.zeros(G, J)
        if sample_latents is not None:
            rng = torch.Generator().manual_seed(self.seed + 1)
            per_class = max(
                1024, min(N_PRIOR, 16 * N_PRIOR // G)
            )  # many classes: fewer draws each (the mass only tunes the proposal)
            for g in range(G):
                pool = sample_latents(per_class, generator=rng).cpu().float().flatten(1)
                mass[g] = self.cell_proba(pool, torch.full((len(pool),), g)).mean(0)
        else:  # no prior sampler: the labelled prior draws' classifier posteriors stand in
            for g in range(G):
                mine = (y == g) & drawn
                mass[g] = self.cell_proba(z[mine], y[mine]).mean(0)
        precision = torch.ones(G, J)
        for g in range(
            G
            # how often a latent the classifier puts in a cell is labelled there (labelled prior
            # draws)
        ):
            mine = (y == g) & drawn
            if mine.any():
                pi = self.cell_proba(z[mine], y[mine])
                hit = torch.nn.functional.one_hot(joint[mine], J).float()
                precision[g] = ((pi * hit).sum(0) + 1) / (pi.sum(0) + 1)
        self.register_buffer("precision", precision.clamp(min=0.05))
        self.register_buffer("cell_target", cell_target)
        self.register_buffer("counts", counts)
        self.register_buffer("prior_counts", prior_counts)
        self.register_buffer("mass", mass)
        self._check_findable(counts, cell_target)
        self.costs_ = {
            "rejection_syntheses_per_kept": self.rejection_cost(),
            "within_cell_tv": self._within_cell_tv(z[drawn], y[drawn], joint[drawn]),
        }
        return self

    def _joint(self, labels: dict) -> torch.Tensor:
        joint = torch.zeros(len(next(iter(labels.values()))), dtype=torch.int64)
        for a, k in zip(self.attrs_, self.num_values_, strict=True):
            joint = joint * k + labels[a]
        return joint

    def _check_shown(self, counts, cell_target, y, labels: dict) -> None:
        """Every value of every attribute the target asks for must have been labelled in each class
        (else its classifier cannot know it: which one, and what to do). A *joint* cell never
        labelled
        is fine when each of its values was: the classifiers' product still finds it
        (``_check_findable``)."""
        G, J = counts.shape
        values = self.decode(torch.arange(J))
        for g, j in torch.nonzero(counts == 0).tolist():
            if float(cell_target[j]) == 0:
                continue
            for a in self.attrs_:
                v = int(values[a][j])
                shown = int(((y == g) & (labels[a] == v)).sum())
                if shown == 0:
                    where = f"class {g}" if self.conditional_ else "the generator"
                    raise ValueError(
                        f"{where} never shows {a}={v} in its {int(counts[g].sum())} labelled "
                        "samples, "
                        "so no draw can be filled to the target; label more samples (n), or give "
                        "that "
                        "value probability 0 in target_distribution"
                    )

    def _check_findable(self, counts, cell_target) -> None:
        """A joint cell never labelled at fit must have a (numerically) non-zero mass under the
        classifiers."""
        for g, j in torch.nonzero((counts == 0) & (cell_target[None, :] > 0)).tolist():
            if float(self.mass[g, j]) < MIN_MASS:
                where = f"class {g}" if self.conditional_ else "the generator"
                raise ValueError(
                    f"{where} never shows {self.describe_cell(j)} in its {int(counts[g].sum())} "
                    "labelled "
                    "samples and its classifiers give it a prior mass of "
                    f"{float(self.mass[g, j]):.1e}, so no "
                    "draw can be filled to the target; label more samples (n), or give that cell "
                    "probability 0 in target_distribution"
                )

    def describe_cell(self, j: int) -> str:
        """``texture=3, colour=1`` for joint cell ``j``."""
        values = self.decode(torch.tensor([j]))
        return ", ".join(f"{a}={int(v[0])}" for a, v in values.items())

    def decode(self, joint: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each labelled attribute's value from joint cell indices."""
        out, rest = {}, joint.clone()
        for a, k in reversed(list(zip(self.attrs_, self.num_values_, strict=True))):
            out[a], rest = rest % k, rest // k
        return {a: out[a] for a in self.attrs_}

    def balance(self, z, y, generator=None, sample_latents=None):
        raise ValueError(
            "a confirmed steerer does not edit latents: every kept sample is synthesized and "
            "labelled; "
            "use steerer.draw(generator, labeler, n, seed)"
        )

    def flip(self, z, y, generator=None, values=None):
        raise ValueError(
            "a confirmed steerer does not move latents: its twins are confirmed by the labeler; "
            "use steering.confirmed_flips(generator, labeler, steerer, z, y)"
        )

    def flip_proposal(self):
        from .twins import _CellProposal

        return _CellProposal(self)

    # ------------------------------------------------------------ the proposal

    def cell_proba(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """The classifiers' posterior over joint cells ``[N, J]`` (product of the attributes'
        posteriors)."""
        out = None
        with torch.no_grad():
            for a in self.attrs_:
                p = self.classifiers[a].log_proba(z.float().flatten(1), g).exp()
                out = p if out is None else (out[:, :, None] * p[:, None, :]).flatten(1)
        return out

    def _mixture(self, remaining: torch.Tensor, g: int, prior_only: bool):
        """Class ``g``'s proposal: prior weight ``e``, cell weights ``c [J]`` (0 where unusable)
        and ``s_max``."""
        left = remaining[g].double()
        usable = (self.mass[g].double() >= MIN_SHARE) & (left > 0) & (not prior_only)
        aim = (
            left / self.precision[g].double()
        )  # proposals a cell needs: its quota over the classifier's precision there
        aim = torch.where(usable, aim, left)
        c = torch.where(
            usable, (1 - self.defensive) * aim / float(aim.sum()), torch.zeros_like(left)
        )
        e = 1.0 - float(c.sum())
        ratio = torch.where(
            usable, c / self.mass[g].double().clamp(min=MIN_SHARE), torch.zeros_like(c)
        )
        return e, c, ratio, e + float(ratio.max())

    def _score(self, z, g: int, e: float, ratio: torch.Tensor) -> torch.Tensor:
        """``s(z) = e + sum_j c_j pi_j(z) / Z_j`` for latents of class ``g``."""
        if float(ratio.max()) == 0:
            return torch.full((len(z),), e, dtype=torch.float64)
        return e + self.cell_proba(z, torch.full((len(z),), g)).double() @ ratio

    def _propose(self, generator, m: int, remaining: torch.Tensor, rng, prior_only: bool):
        """``m`` proposed latents (the generator's shape), their classes, their ``s`` and the cell
        cores ``s_core``."""
        per_class = remaining.sum(1).double()
        g = torch.multinomial(per_class, m, replacement=True, generator=rng)
        z = None
        s = torch.ones(m, dtype=torch.float64)
        core = torch.ones(m, self.cell_target.shape[-1], dtype=torch.float64)
        e_of = torch.ones(m, dtype=torch.float64)
        draws = 0
        for gi in torch.unique(g).tolist():
            rows = torch.nonzero(g == gi).flatten()
            e, c, ratio, s_max = self._mixture(remaining, gi, prior_only)
            got, got_s = [], []
            need = len(rows)
            while need > 0:
                k = int(min(MAX_BLOCK, max(256, math.ceil(1.3 * need * s_max))))
                block = generator.sample_latents(k, generator=rng).cpu()
                draws += k
                score = self._score(block, gi, e, ratio)
                ok = torch.rand(k, generator=rng, dtype=torch.float64) * s_max < score
                idx = torch.nonzero(ok).flatten()[:need]
                got.append(block[idx])
                got_s.append(score[idx])
                need -= len(idx)
            zg = torch.cat(got)
            if z is None:
                z = torch.empty((m, *zg.shape[1:]), dtype=zg.dtype)
            z[rows] = zg
            s[rows] = torch.cat(got_s)
            core[rows] = (e + ratio)[None, :]
            e_of[rows] = e
        return z, g, s, core, e_of, draws

    # ------------------------------------------------------------ drawing

    def quotas(self, n: int, class_probs=None, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        """Integer samples per cell ``[G, J]`` for rank ``rank`` of a draw of ``n`` (all ranks
        together meet the target)."""
        self._check_fitted()
        return self._quotas(n, class_probs, rank, world_size)

    def _quotas(self, n: int, class_probs=None, rank: int = 0, world_size: int = 1):
        table = self._cell_table(class_probs).double().flatten()
        exact = n * table
        quota = exact.floor().long()
        short = n - int(quota.sum())
        if short:
            order = sorted(range(len(exact)), key=lambda i: (-(float(exact[i]) - int(quota[i])), i))
            quota[torch.tensor(order[:short])] += 1
        if world_size > 1:  # slot i of the cell-ordered draw goes to rank i % world_size
            start = torch.cumsum(quota, 0) - quota
            first = (rank - start) % world_size
            quota = torch.where(
                quota > first, (quota - first - 1) // world_size + 1, torch.zeros_like(quota)
            )
        return quota.view(self.num_classes_, -1)

    def cell_table(self, class_probs=None) -> torch.Tensor:
        """The target share of every (class, cell) ``[G, J]``: class weights times the cell
        target."""
        self._check_fitted()
        return self._cell_table(class_probs)

    def _cell_table(self, class_probs=None) -> torch.Tensor:
        G = self.num_classes_
        if class_probs is None:
            probs = torch.full((G,), 1.0 / G, dtype=torch.float64)
        else:
            probs = torch.as_tensor(np.asarray(class_probs, dtype=np.float64)).flatten()
            if (
                len(probs) != G
                or not torch.isfinite(probs).all()
                or float(probs.min()) < 0
                or float(probs.sum()) <= 0
            ):
                raise ValueError(
                    f"class_probs must be {G} non-negative weights with a positive sum, got "
                    f"{probs.tolist()}"
                )
            probs = probs / probs.sum()
        target = self.cell_target.double()  # [J], or [G, J] per class (steering.truth)
        return probs[:, None] * (target if target.dim() == 2 else target[None, :])

    def draw(
        self,
        generator,
        labeler,
        n: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        keep_labeler=None,
        class_probs=None,
        max_syntheses: int | None = None,
        proposal: str | None = None,
        batch_size: int = 512,
    ) -> Draw:
        """``n`` samples whose labels meet the target exactly (every cell's quota), confirmed by
        ``labeler``.

        ``labeler``: the callable (or ``{name: callable}``) the steerer was fitted with;
        ``keep_labeler``
        too when it was fitted with one (or put it in the dict under its name). Same ``seed``, same
        draw; rank ``rank`` of ``world_size`` gets its own share of the quotas and its own random
        stream (all ranks together meet the target). A cell still unfilled after ``max_syntheses``
        syntheses (default ``100 n + 10,000``) is a ValueError naming it.
        """
        proposal, labelers = self._check_draw(labeler, keep_labeler, n, rank, world_size, proposal)
        quota = self.quotas(n, class_probs, rank, world_size)
        if int(quota.sum()) == 0:  # a rank whose share of a tiny draw is empty
            raise ValueError(
                f"rank {rank} of {world_size} gets no sample of a draw of {n}; draw at least "
                "world_size samples"
            )
        budget = (
            BUDGET_PER_SAMPLE * n + BUDGET_BASE if max_syntheses is None else int(max_syntheses)
        )
        rng = _seeded(seed, rank, 0xC0F)
        z, g, j, images, cost = self._fill(
            generator, labelers, quota, rng, budget, proposal, batch_size
        )
        order = torch.randperm(len(g), generator=rng)
        return self._as_draw(
            z[order], g[order], j[order], images[order.to(images.device)], cost, proposal, quota
        )

    def draw_batches(
        self,
        generator,
        labeler,
        batch: int,
        k: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        keep_labeler=None,
        class_probs=None,
        max_syntheses: int | None = None,
        proposal: str | None = None,
        batch_size: int = 512,
    ) -> list[Draw]:
        """``k`` draws of ``batch`` samples, each exact (every cell's quota of a draw of
        ``batch``), filled as one
        block: the quotas of all ``k`` are drawn at once and each cell's kept samples dealt evenly
        into them.

        Why: a small draw pays for its last quotas (its last rounds propose for a few missing cells
        and
        keep little); a block pays that once for ``k`` batches. Same ``seed``, same ``k`` batches;
        ranks as in ``draw``.
        Every draw reports the block's cost, shared evenly (``stats["block"]``: ``k``).
        """
        if not is_int(k) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        proposal, labelers = self._check_draw(
            labeler, keep_labeler, batch, rank, world_size, proposal
        )
        part = self.quotas(batch, class_probs, rank, world_size)
        if int(part.sum()) == 0:
            raise ValueError(
                f"rank {rank} of {world_size} gets no sample of a draw of {batch}; draw at least "
                "world_size samples"
            )
        budget = (
            k * (BUDGET_PER_SAMPLE * batch + BUDGET_BASE)
            if max_syntheses is None
            else int(max_syntheses)
        )
        rng = _seeded(seed, rank, 0xB10C)
        z, g, j, images, cost = self._fill(
            generator, labelers, k * part, rng, budget, proposal, batch_size
        )
        J = part.shape[1]
        cell = g * J + j
        order = torch.argsort(cell, stable=True)  # kept samples by cell
        counts = part.flatten()
        slot = torch.empty(
            len(cell), dtype=torch.int64
        )  # which of the k draws each kept sample goes to
        start = 0
        for c in range(len(counts)):
            q = int(counts[c])
            deal = torch.arange(k).repeat_interleave(
                q
            )  # q to each draw, in random order (early and late rounds mixed)
            slot[order[start : start + k * q]] = deal[torch.randperm(k * q, generator=rng)]
            start += k * q
        shared = {key: value / k for key, value in cost.items() if key != "rounds"} | {
            "rounds": cost["rounds"]
        }
        draws = []
        for i in range(k):
            mine = torch.nonzero(slot == i).flatten()
            mine = mine[torch.randperm(len(mine), generator=rng)]
            d = self._as_draw(
                z[mine], g[mine], j[mine], images[mine.to(images.device)], shared, proposal, part
            )
            d.stats["block"] = k
            draws.append(d)
        return draws

    def _check_draw(self, labeler, keep_labeler, n, rank, world_size, proposal):
        self._check_fitted()
        if not is_int(n) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if (
            not is_int(world_size)
            or world_size < 1
            or not isinstance(rank, int)
            or not 0 <= rank < world_size
        ):
            raise ValueError(
                f"rank must lie in [0, world_size), got rank {rank!r} of {world_size!r}"
            )
        proposal = proposal or self.proposal
        if proposal not in PROPOSALS:
            raise ValueError(f"proposal must be one of {PROPOSALS}, got {proposal!r}")
        if proposal == "auto":
            proposal = self.costs_.get("proposal", "classifier")
        if getattr(self, "truth_", None) and proposal != "prior":
            raise ValueError(
                "this steerer aims at true values (steering.truth): only proposal='prior' keeps "
                f"each cell's samples as the error model expects, got proposal={proposal!r}"
            )
        return proposal, self._labelers(labeler, keep_labeler)

    def _as_draw(self, z, g, j, images, cost: dict, proposal: str, quota) -> Draw:
        labels = self.decode(j)
        classes = (
            g
            if self.conditional_
            else (labels[self.keep_] if self.keep_ is not None else torch.zeros_like(g))
        )
        stats = {"labels_outside_fit": cost["outside"], "quota": quota.tolist()}
        return Draw(
            z,
            classes,
            images,
            labels,
            cost["syntheses"],
            cost["labeler_calls"],
            cost["latent_draws"],
            proposal,
            cost["rounds"],
            stats,
        )

    def _fill(
        self,
        generator,
        labelers: dict,
        quota: torch.Tensor,
        rng,
        budget: int,
        proposal: str,
        batch_size: int,
    ):
        """Fill ``quota [G, J]`` in rounds: latents, classes, joint cells and images of the kept
        samples (in the
        order they were kept), and the cost."""
        remaining = quota.clone()
        G, J = remaining.shape
        kept_z, kept_g, kept_j, kept_images = [], [], [], []
        seen = torch.zeros(G, J, dtype=torch.int64)
        syntheses = labeler_calls = latent_draws = rounds = outside = 0
        while int(remaining.sum()) > 0:
            if syntheses >= budget:
                raise ValueError(self._budget_message(remaining, quota, seen, syntheses, budget))
            aim = float(
                (remaining.double() / self.precision.double()).sum()
            )  # expected syntheses to fill the rest
            m = min(max(MIN_ROUND, math.ceil(aim)), budget - syntheses)
            with one_thread():
                z, g, s, core, e, draws = self._propose(
                    generator, m, remaining, rng, proposal == "prior"
                )
            latent_draws += draws
            rounds += 1
            j, images = self._label(generator, labelers, z, g, batch_size)
            syntheses += m
            labeler_calls += m * len(labelers)
            inside = j >= 0
            outside += int((~inside).sum())
            jj = j.clamp(min=0)
            seen.index_put_((g[inside], jj[inside]), torch.ones_like(jj[inside]), accumulate=True)
            s_core = core.gather(1, jj[:, None]).squeeze(1)
            if proposal == "prior":
                accept = torch.ones(m, dtype=torch.float64)
            elif self.cap is None:
                accept = e / s
            else:
                accept = (s_core / (self.cap * s)).clamp(max=1)
            ok = inside & (torch.rand(m, generator=rng, dtype=torch.float64) < accept)
            keep = torch.zeros(m, dtype=torch.bool)
            cell = g * J + jj
            for c in torch.unique(cell[ok]).tolist():
                rows = torch.nonzero(ok & (cell == c)).flatten()[: int(remaining.view(-1)[c])]
                keep[rows] = True
                remaining.view(-1)[c] -= len(rows)
            idx = torch.nonzero(keep).flatten()
            kept_z.append(z[idx])
            kept_g.append(g[idx])
            kept_j.append(j[idx])
            kept_images.append(images[idx.to(images.device)])
        cost = {
            "syntheses": syntheses,
            "labeler_calls": labeler_calls,
            "latent_draws": latent_draws,
            "rounds": rounds,
            "outside": outside,
        }
        return torch.cat(kept_z), torch.cat(kept_g), torch.cat(kept_j), torch.cat(kept_images), cost

    def _labelers(self, labeler, keep_labeler) -> dict:
        """The labelers by attribute name, in the steerer's order; a clear error when they do not
        match its attributes."""
        given = (
            dict(labeler)
            if isinstance(labeler, dict)
            else {self.names_[0] if len(self.names_) == 1 else "protected": labeler}
        )
        if keep_labeler is not None:
            given.update(
                dict(keep_labeler)
                if isinstance(keep_labeler, dict)
                else {self.keep_ or "keep": keep_labeler}
            )
        if set(given) != set(self.attrs_) or not all(callable(f) for f in given.values()):
            need = (
                f"{self.names_[0]!r}"
                if len(self.names_) == 1
                else f"{{{', '.join(map(repr, self.names_))}}}"
            )
            keep = f" and keep_labeler for {self.keep_!r}" if self.keep_ is not None else ""
            raise ValueError(
                "labeler must be callables for the steerer's attributes (labeler for "
                f"{need}{keep}); "
                f"got {sorted(given)}"
            )
        return {a: given[a] for a in self.attrs_}

    def _label(self, generator, labelers: dict, z, g, batch_size: int):
        """Synthesize and label in batches: joint cells ``[m]`` (-1: a value outside the fit) and
        images."""
        cells, images = [], []
        device = generator_device(generator)
        for start in range(0, len(z), batch_size):
            zb = z[start : start + batch_size].to(device)
            gb = g[start : start + batch_size].to(device) if self.conditional_ else None
            with torch.no_grad():
                im = generator.synthesize(zb, gb)
            labels = {a: check_labeler_output(f(im), len(im), a).cpu() for a, f in labelers.items()}
            inside = torch.ones(len(im), dtype=torch.bool)
            for a, k in zip(self.attrs_, self.num_values_, strict=True):
                inside &= labels[a] < k
            joint = self._joint(
                {
                    a: labels[a].clamp(max=k - 1)
                    for a, k in zip(self.attrs_, self.num_values_, strict=True)
                }
            )
            cells.append(torch.where(inside, joint, torch.full_like(joint, -1)))
            images.append(im)
        return torch.cat(cells), torch.cat(images)

    def _budget_message(self, remaining, quota, seen, syntheses, budget) -> str:
        lacking = torch.nonzero(remaining > 0).tolist()
        parts = []
        for g, j in lacking[:4]:
            where = f"class {g}, " if self.conditional_ else ""
            parts.append(
                f"{where}{self.describe_cell(j)} ({int(remaining[g, j])} of {int(quota[g, j])} "
                "missing; "
                f"labelled in {int(seen[g, j])} of {syntheses} syntheses)"
            )
        more = f" and {len(lacking) - 4} more" if len(lacking) > 4 else ""
        return (
            f"confirmed draw: after {syntheses} syntheses (the budget, max_syntheses={budget}) "
            "these cells are still "
            f"short: {'; '.join(parts)}{more}. The labeler (almost) never produces them: give them "
            "probability 0 "
            "in target_distribution, or raise max_syntheses"
        )

    # ------------------------------------------------------------ costs

    def rejection_cost(self, class_probs=None) -> float:
        """Expected syntheses per kept sample of plain image-space rejection
        (``proposal="prior"``), large-n limit.

        Class ``g`` needs ``max_j t_gj / P_gj`` prior syntheses per kept sample (its rarest cell
        relative to the target), ``P`` the labelled prior draws' cell shares.
        """
        table = self._cell_table(class_probs)
        drawn = self.prior_counts.sum(1, keepdim=True).double().clamp(min=1)
        shares = (
            torch.maximum(self.prior_counts.double(), 0.5 * (self.counts > 0).double()) / drawn
        )  # a cell seen only off the prior: half a draw
        shares = torch.where(
            self.counts > 0, shares, self.mass.double()
        )  # a cell never labelled: the classifiers' estimate
        per_class = table.sum(1)
        need = torch.where(
            table > 0,
            table / per_class.clamp(min=1e-12)[:, None] / shares.clamp(min=1e-12),
            torch.zeros_like(table),
        )
        return float((per_class * need.max(1).values).sum())

    def _within_cell_tv(self, z, y, joint) -> float:
        return self.within_cell_tv(z, y, joint)

    def within_cell_tv(self, z, y, joint, cap: float | None = ..., min_count: int = 5) -> float:
        """Within-cell distortion of the cap at the start of a draw (the proposal mixed by the
        target):
        total variation between the prior's and the kept samples' distribution inside each cell,
        from
        labelled prior draws ``z``, classes ``y`` and joint cells ``joint``; mean over cells
        weighted
        by the target. It bounds the distortion of any function of the latent (colour, size,
        ...)."""
        cap = self.cap if cap is ... else cap
        if cap is None or len(z) == 0:
            return 0.0
        z, y, joint = (
            torch.as_tensor(z).float().flatten(1),
            torch.as_tensor(y).long(),
            torch.as_tensor(joint).long(),
        )
        start = self._quotas(10_000)
        tv, weight = 0.0, 0.0
        with one_thread():
            for g in range(self.num_classes_):
                e, c, ratio, _ = self._mixture(start, g, False)
                mine = y == g
                if not mine.any():
                    continue
                s = self._score(z[mine], g, e, ratio)
                core = e + ratio
                for j in torch.unique(joint[mine]).tolist():
                    inside = joint[mine] == j
                    if int(inside.sum()) < min_count or j >= len(core) or float(start[g, j]) == 0:
                        continue
                    w = torch.clamp(cap * s[inside] / core[j], max=1)
                    tv += 0.5 * float((w / w.sum() - 1.0 / len(w)).abs().sum()) * float(start[g, j])
                    weight += float(start[g, j])
        return tv / max(weight, 1.0)

    def expected_draws(self, class_probs=None) -> float:
        """Syntheses per kept sample measured at fit (the trial draw), else plain rejection's
        estimate."""
        self._check_fitted()
        return float(self.costs_.get("syntheses_per_kept", self.rejection_cost(class_probs)))

    # ------------------------------------------------------------ cards

    def config(self) -> dict:
        return {
            "names": self.names_,
            "keep": self.keep_,
            "attributes": self.attrs_,
            "num_values": self.num_values_,
            "num_classes": self.num_classes_,
            "conditional": self.conditional_,
            "latent_dim": self.dim_,
            "cap": self.cap,
            "defensive": self.defensive,
            "proposal": self.proposal,
            "seed": self.seed,
            "target_distribution": plain_target(self.target_distribution),
            "costs": dict(self.costs_),
            **({"truth": self.truth_} if getattr(self, "truth_", None) else {}),
        }

    def tensors(self) -> dict[str, torch.Tensor]:
        out = {
            name: getattr(self, name)
            for name in ("cell_target", "counts", "prior_counts", "mass", "precision")
        }
        for name, clf in self.classifiers.items():
            out.update({f"clf.{name}.{k}": v for k, v in clf.state_dict().items()})
        return out

    @classmethod
    def from_state(cls, config: dict, tensors: dict) -> ConfirmedSteerer:
        """Rebuild a fitted steerer from its card's config and tensors (both checked)."""
        check_config(
            config,
            CONFIG,
            {"num_classes": MAX_CLASSES, "latent_dim": MAX_LATENT_DIM, "num_values": MAX_VALUES},
            "the steerer's config",
        )
        check_tensors(tensors, TABLES, "the steerer's tensors")
        steerer = cls(
            config["target_distribution"],
            config["cap"],
            config["defensive"],
            config["proposal"],
            config["seed"],
        )
        steerer.names_, steerer.keep_, steerer.attrs_ = (
            list(config["names"]),
            config["keep"],
            list(config["attributes"]),
        )
        steerer.num_values_, steerer.num_classes_ = (
            list(config["num_values"]),
            int(config["num_classes"]),
        )
        steerer.conditional_, steerer.dim_ = bool(config["conditional"]), int(config["latent_dim"])
        steerer.costs_ = dict(config.get("costs") or {})
        if config.get("truth"):  # aimed at true values: error model and mix (steering.truth)
            steerer.truth_ = dict(config["truth"])
        for name in TABLES:
            steerer.register_buffer(name, tensors[name])
        steerer.classifiers = nn.ModuleDict(
            {a: LatentClassifier.from_state(classifier_state(tensors, a)) for a in steerer.attrs_}
        )
        return steerer._freeze()


def _seeded(seed: int, rank: int, purpose: int) -> torch.Generator:
    state = np.random.SeedSequence([int(seed), int(rank), purpose]).generate_state(1)[0]
    return torch.Generator().manual_seed(int(state))

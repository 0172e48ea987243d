"""Counterfactual twins the labeler confirms, drawn so that they stay typical under the prior.

For each anchor (its values read by the labeler) a requested joint value is drawn (the target's
other values the class shows). Every candidate twin is a prior-preserving move of the anchor in
the prior's Gaussian coordinates (``steering.prior.prior_mix``): first re-drawing only the part
of the latent the proposal's classifier reads (its feature directions; the rest, and with it the
other attributes, is kept), at angles from close (``rho = cos t`` 0.9) to a fresh draw of that
part, then mixing the whole latent (0.9 to a fresh prior draw). Each candidate is distributed as
the prior itself, inside a truncated prior's box. The classifier scores ``candidates`` per level;
the closest level's best candidate it finds likely (``q >= threshold``, or at least ``RELATIVE``
times the anchor's best candidate's ``q``) goes first, then the rest by score. Rounds synthesize 1,
1, 2, 4, 8, ... of them per anchor still without a twin (a round
moves no closer than the last miss; its latent pool doubles, up to ``POOL_GROWTH`` times, since
latent draws are cheap and syntheses are not) until ``budget`` syntheses per anchor are spent; a
twin is kept only if the labeler reads every attribute as requested and, with ``keep``, every kept
attribute as the anchor's (their latent classifiers, where given, multiply into ``q``). Anchors
still without a twin keep
the anchor as their "twin" and are reported (``confirmed`` mask, ``missed`` count), never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from plumbing.validation import check_labeler_output

from .base import Steerer
from .classifier import one_thread
from .prior import PriorSupport, latent_prior, prior_mix, prior_support

BATCH = 512  # images synthesized and labelled at once
NARROW_RHOS = (
    0.9,
    0.6,
    0.0,
)  # re-draw of the directions the classifier mostly reads, closest first (cos t)
BROAD_RHOS = (0.6, 0.0)  # then of all it reads
FULL_RHOS = (0.9, 0.7, 0.4, 0.0)  # then of the whole latent
NARROW_CUT = 0.25  # narrow directions: eigenvalue at least this share of the top one
SUBSPACE_MASS = 0.9  # broad directions: this share of the classifier's gradient energy
# a closer candidate goes first if the classifier finds it at least this share as likely as the best
RELATIVE = 0.2
CHUNK = 128  # anchors whose candidates are drawn and scored at once (memory)
SUBSPACE_POINTS = 2048  # anchors whose gradients place those directions
POOL_GROWTH = 16  # each round's candidate pool doubles, up to this many times ``candidates``


@dataclass
class FlipResult:
    """Twins ``[N, d]`` (the anchor where none was confirmed), requested joint values, anchors'
    joint
    values, the ``confirmed`` mask ``[N]`` and the cost (syntheses and labeler calls, in all and
    per kept)."""

    twins: torch.Tensor
    values: torch.Tensor
    anchor_values: torch.Tensor
    confirmed: torch.Tensor
    cost: dict = field(default_factory=dict)

    @property
    def missed(self) -> int:
        return int((~self.confirmed).sum())


def _labelers(labeler, names: list[str]) -> tuple[dict, dict]:
    """The proposal's attributes' labelers, and the extra ones a dict names (attributes a twin
    keeps)."""
    labelers = (
        dict(labeler)
        if isinstance(labeler, dict)
        else {names[0]: labeler}
        if len(names) == 1
        else None
    )
    if labelers is None or not set(names) <= set(labelers):
        got = sorted(labeler) if isinstance(labeler, dict) else "one callable"
        raise ValueError(f"labeler must name the proposal's attributes {names}, got {got}")
    if not all(callable(f) for f in labelers.values()):
        raise ValueError("labeler must be a callable images -> labels, or a dict {name: callable}")
    return {k: labelers[k] for k in names}, {k: f for k, f in labelers.items() if k not in names}


def _keepers(extra: dict, keep, names: list[str]) -> dict:
    """The labelers of the attributes a twin must keep: ``keep`` if given, else the labeler's extra
    ones."""
    if keep is None:
        return extra
    if not isinstance(keep, dict) or not all(
        isinstance(k, str) and callable(f) for k, f in keep.items()
    ):
        raise ValueError("keep must be None or a dict {name: callable images -> labels}")
    flipped = sorted(set(keep) & set(names))
    if flipped:
        raise ValueError(
            f"keep must name attributes other than the flipped ones {names}, got {flipped}"
        )
    return dict(keep)


def confirmed_flips(
    generator,
    labeler,
    proposal,
    z: torch.Tensor,
    y: torch.Tensor | None = None,
    values=None,
    rng: torch.Generator | None = None,
    budget: int = 64,
    candidates: int = 64,
    threshold: float = 0.9,
    support: PriorSupport | None = None,
    keep: dict | None = None,
    keep_classifiers: dict | None = None,
) -> FlipResult:
    """Twins of anchors ``z`` (classes ``y``) at another joint protected value, each confirmed by
    ``labeler``.

    ``proposal``: a fitted ``ClassifierSteerer`` (its classifier scores candidates, its target and
    the values each class shows pick the requested values unless ``values`` [N] is given).
    ``labeler``: a callable ``images -> labels``, or ``{name: callable}`` naming the proposal's
    attributes; further names in the dict are attributes the twin keeps (unless ``keep`` is given).
    ``keep``: ``{name: callable}`` of attributes every twin must keep: a candidate counts only if
    the
    labeler reads each of them as it reads the anchor. ``keep_classifiers``: ``{name: latent
    classifier}`` (``log_proba(z, y)``) that rank candidates likely to keep them (default: the
    proposal's own, where it has one). ``budget``: syntheses per anchor spent on candidate twins at
    most (plus one for the anchor itself). Every random draw comes from ``rng``; same inputs and
    seed, same twins.
    """
    if budget < 1 or candidates < 1 or not 0 < threshold < 1:
        raise ValueError(
            f"budget and candidates must be >= 1 and threshold in (0, 1), got {budget}, "
            f"{candidates}, {threshold}"
        )
    proposal = as_proposal(proposal)
    names = list(proposal.names_)
    labelers, extra = _labelers(labeler, names)
    keepers = _keepers(extra, keep, names)
    scorers = _keep_scorers(proposal, keepers, keep_classifiers)
    support = support or prior_support(generator)
    prior = latent_prior(generator)
    conditional = generator.num_classes > 0
    anchors = z.detach().cpu()
    y = torch.zeros(len(z), dtype=torch.int64) if y is None else y.detach().cpu().long()
    calls = {"syntheses": 0, "labeler_calls": 0}

    def read(latents, classes):
        """The joint value the labeler reads off each latent's image (-1: a value the proposal does
        not
        know) and the kept attributes' labels ``[n, len(keepers)]``."""
        out, kept = [], []
        for start in range(0, len(latents), BATCH):
            zb, yb = latents[start : start + BATCH], classes[start : start + BATCH]
            images = generator.synthesize(
                zb.to(generator.device), yb.to(generator.device) if conditional else None
            )
            joint, unknown = (
                torch.zeros(len(zb), dtype=torch.int64),
                torch.zeros(len(zb), dtype=torch.bool),
            )
            for name, k in zip(names, proposal.num_values_, strict=True):
                labels = check_labeler_output(labelers[name](images), len(zb), name).cpu()
                unknown |= labels >= k
                joint = joint * k + labels.clamp(max=k - 1)
            out.append(torch.where(unknown, -1, joint))
            kept.append(
                torch.stack(
                    [
                        check_labeler_output(f(images), len(zb), name).cpu()
                        for name, f in keepers.items()
                    ],
                    1,
                )
                if keepers
                else torch.zeros(len(zb), 0, dtype=torch.int64)
            )
        calls["syntheses"] += len(latents)
        calls["labeler_calls"] += len(latents) * (len(labelers) + len(keepers))
        return torch.cat(out), torch.cat(kept)

    with one_thread():
        current, own = read(anchors, y)
        values = (
            _requested(proposal, y, current, rng)
            if values is None
            else torch.as_tensor(values, dtype=torch.int64).cpu()
        )
        if (
            values.shape != y.shape
            or int(values.min()) < 0
            or int(values.max()) >= proposal.target.numel()
        ):
            raise ValueError(
                f"values must be {len(y)} joint protected values in [0, {proposal.target.numel()})"
            )
        twins, confirmed = (
            anchors.clone(),
            values == current,
        )  # an anchor that already shows its value is its own twin
        confirmed &= support.contains(anchors)
        levels = _levels(proposal, anchors, y)
        furthest = torch.zeros(
            len(z), dtype=torch.int64
        )  # a round moves no closer than the last miss
        from_subspace = torch.zeros(len(z), dtype=torch.bool)
        best_q = torch.full(
            (len(z),), math.nan
        )  # the proposal's best candidate's probability, for a missed anchor
        pending, spent, size, pool = torch.nonzero(~confirmed).flatten(), 0, 1, candidates
        while len(pending) and spent < budget:
            m = min(size, budget - spent, len(levels) * pool)
            chunk = max(8, CHUNK * candidates // pool)
            parts = [
                _pick(
                    proposal,
                    prior,
                    support,
                    levels,
                    anchors[rows],
                    y[rows],
                    values[rows],
                    furthest[rows],
                    pool,
                    threshold,
                    m,
                    rng,
                    _keep_score(scorers, own[rows], y[rows], pool * len(levels)),
                )
                for rows in pending.split(chunk)
            ]
            picked, level, ok, q = (
                torch.cat(p) for p in zip(*parts, strict=True)
            )  # [n, m, ...], [n, m], [n, m], [n]
            best_q[pending] = q
            rows = pending.repeat_interleave(m)[ok.flatten()]
            flat = picked.flatten(0, 1)[ok.flatten()]
            joint, kept = read(flat, y[rows])
            hit = torch.zeros(len(pending), m, dtype=torch.bool)
            hit.view(-1)[torch.nonzero(ok.flatten()).flatten()] = (joint == values[rows]) & (
                kept == own[rows]
            ).all(1)
            found = hit.any(1)
            first = hit.float().argmax(1)  # the first hit in preference order
            twins[pending[found]] = picked[torch.arange(len(pending)), first][found]
            within = torch.tensor([basis is not None for _, basis in levels])
            from_subspace[pending[found]] = within[level[torch.arange(len(pending)), first][found]]
            confirmed[pending[found]] = True
            closest = torch.where(ok, level, len(levels) - 1).min(1).values
            furthest[pending[~found]] = (closest[~found] + 1).clamp(max=len(levels) - 1)
            pending, spent = pending[~found], spent + m
            size, pool = (
                (size * 2 if spent > m else 1),
                min(pool * 2, candidates * POOL_GROWTH),
            )  # latent draws are cheap
    kept = int(confirmed.sum())
    missed_q = best_q[~confirmed & ~torch.isnan(best_q)]
    cost = {
        "n": len(z),
        "confirmed": kept,
        "missed": len(z) - kept,
        "confirmed_share": kept / max(len(z), 1),
        **calls,
        "subspace_share": float(from_subspace[confirmed].float().mean()) if kept else 0.0,
        "syntheses_per_kept": calls["syntheses"] / max(kept, 1),
        "labeler_calls_per_kept": calls["labeler_calls"] / max(kept, 1),
        "missed_median_best_q": float(missed_q.median()) if len(missed_q) else math.nan,
    }
    return FlipResult(twins.to(z.device, z.dtype), values, current, confirmed, cost)


def _keep_scorers(proposal, keepers: dict, given: dict | None) -> dict:
    """Latent classifiers ``{name: log_proba(z, y) -> [N, K]}`` of the kept attributes: given, or
    the proposal's own."""
    own = getattr(getattr(proposal, "steerer", proposal), "classifiers", None)
    own = own if isinstance(own, dict) else {}
    given = {} if given is None else dict(given)
    unknown = sorted(set(given) - set(keepers))
    if unknown:
        raise ValueError(
            f"keep_classifiers must name kept attributes {sorted(keepers)}, got {unknown}"
        )
    return {k: given.get(k, own.get(k)) for k in keepers if given.get(k, own.get(k)) is not None}


def _keep_score(scorers: dict, own: torch.Tensor, y: torch.Tensor, per: int):
    """A function ``pool [n * per, d] -> log P(every kept value as the anchor's)``, or None without
    classifiers."""
    if not scorers:
        return None
    names = list(scorers)  # the keepers' order, as ``own``'s columns
    columns = {k: i for i, k in enumerate(scorers)}

    def score(pool):
        total = torch.zeros(len(pool))
        flat_y = y.repeat_interleave(per)
        for k in names:
            value = own[:, columns[k]].repeat_interleave(per)
            lp = scorers[k].log_proba(pool, flat_y)
            total += lp.gather(1, value.clamp(max=lp.shape[1] - 1)[:, None]).squeeze(1)
        return total

    return score


class _CellProposal:
    """A ``ConfirmedSteerer`` seen as a flip proposal: its classifiers' joint log-posterior, its
    cell
    target, and the cells each class showed in its labelled samples."""

    def __init__(self, steerer):
        if getattr(steerer, "keep_", None) is not None:
            raise ValueError(
                "flips of a steerer with a keep labeler are not supported: fit it without "
                "keep_labeler"
            )
        self.steerer, self.names_, self.num_values_ = (
            steerer,
            list(steerer.attrs_),
            list(steerer.num_values_),
        )
        self.target, self.accept = steerer.cell_target, (steerer.counts > 0).float()

    def joint_log_proba(self, z, y):
        out = None
        for name in self.names_:
            lp = self.steerer.classifiers[name].log_proba(z.float().flatten(1), y)
            out = lp if out is None else (out[:, :, None] + lp[:, None, :]).flatten(1)
        return out


def as_proposal(steerer):
    """What ``confirmed_flips`` scores candidates with: a ``ClassifierSteerer`` as it is, a
    ``ConfirmedSteerer`` (labeler-confirmed balance) through its classifiers."""
    if isinstance(steerer, _CellProposal):  # already a proposal (ConfirmedFlipper passes it on)
        return steerer
    if not isinstance(steerer, Steerer):
        raise ValueError(
            "proposal must be a fitted ClassifierSteerer or ConfirmedSteerer, "
            f"got {type(steerer).__name__}"
        )
    steerer._check_fitted()
    return steerer.flip_proposal()


def _requested(proposal, y, current, rng) -> torch.Tensor:
    """A joint value per anchor other than its own, drawn from the target among those its class
    shows."""
    probs = proposal.target[None, :].repeat(len(y), 1) * (proposal.accept[y] > 0)
    known = torch.nonzero(current >= 0).flatten()
    probs[known, current[known]] = 0
    empty = probs.sum(1) == 0
    if bool((empty & (current < 0)).any()):
        raise ValueError(
            "the target leaves no value to flip to for an anchor whose value the proposal does not "
            "know"
        )
    probs[empty, current[empty]] = 1.0  # nothing else to go to: stay
    return torch.multinomial(probs, 1, generator=rng).squeeze(1)


def _levels(proposal, anchors, y) -> list[tuple[float, torch.Tensor | None]]:
    """Candidate levels, closest first: ``(rho, basis [d, r] of the directions re-drawn, or None:
    all)``."""
    narrow, broad = _subspaces(proposal, anchors, y)
    levels = [(rho, narrow) for rho in NARROW_RHOS] if narrow is not None else []
    if broad is not None and (narrow is None or broad.shape[1] > narrow.shape[1]):
        levels += [(rho, broad) for rho in BROAD_RHOS]
    return levels + [(rho, None) for rho in FULL_RHOS]


def _subspaces(proposal, anchors: torch.Tensor, y: torch.Tensor):
    """Two orthonormal bases ``[d, r]`` of the latent directions the proposal's classifier reads
    (or None).

    The active subspace: eigenvectors of ``E[grad log q_j grad log q_j^T]`` (each value's
    log-probability gradient over the anchors, weighted by its probability). Narrow: the directions
    with at least ``NARROW_CUT`` of the top eigenvalue (what the classifier mostly reads; a
    classifier
    fitted on few labels also reads noise directions, weakly). Broad: enough for ``SUBSPACE_MASS``
    of
    the trace. Moving the latent outside them leaves the classifier's reading unchanged, so that is
    where the other attributes are kept.
    """
    x = anchors[:SUBSPACE_POINTS].flatten(1).float()
    if x.shape[1] < 4:
        return None, None
    yy = y[:SUBSPACE_POINTS]
    outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
    with torch.enable_grad():
        point = x.clone().requires_grad_(True)
        lp = proposal.joint_log_proba(point, yy)
        for j in range(lp.shape[1]):
            (grad,) = torch.autograd.grad(lp[:, j].sum(), point, retain_graph=j < lp.shape[1] - 1)
            g = (grad * lp[:, j].detach().exp().sqrt()[:, None]).double()
            outer += g.T @ g
    values, vectors = torch.linalg.eigh(outer)
    values, vectors = values.flip(0).clamp(min=0), vectors.flip(1)  # descending
    if float(values[0]) <= 0:
        return None, None
    most = x.shape[1] // 2
    share = values.cumsum(0) / values.sum()
    broad = min(int((share < SUBSPACE_MASS).sum()) + 1, most)
    narrow = min(int((values >= NARROW_CUT * values[0]).sum()), broad)
    return vectors[:, :narrow], vectors[:, :broad]


def _pick(
    proposal,
    prior,
    support,
    levels,
    z,
    y,
    values,
    furthest,
    candidates,
    threshold,
    m,
    rng,
    keep_score=None,
):
    """Per anchor, ``m`` candidates to synthesize in preference order ``[n, m, ...]``, their levels
    and
    whether each is usable (inside the prior's support)."""
    n, count = len(z), len(levels)
    per = count * candidates
    anchors = z.repeat_interleave(candidates, 0)
    pool = torch.stack(
        [
            prior_mix(
                prior,
                anchors,
                torch.full((len(anchors),), rho),
                rng,
                basis,
                None if basis is None else torch.ones(len(anchors), dtype=torch.bool),
            ).view(n, candidates, *z.shape[1:])
            for rho, basis in levels
        ],
        1,
    ).flatten(0, 2)  # [n * per, ...]
    flat_y, flat_v = y.repeat_interleave(per), values.repeat_interleave(per)
    with torch.no_grad():
        flip = (
            proposal.joint_log_proba(pool.flatten(1).float(), flat_y)
            .gather(1, flat_v[:, None])
            .squeeze(1)
        )
        score = flip if keep_score is None else flip + keep_score(pool.flatten(1).float())
    usable = support.contains(pool).view(n, count, candidates)
    allowed = (torch.arange(count)[None, :] >= furthest[:, None])[:, :, None] & usable
    score = score.view(n, count, candidates)
    best = torch.where(allowed, score, torch.full_like(score, -math.inf)).flatten(1).max(1).values
    # likely: above the threshold, or at least RELATIVE times as likely as the anchor's best
    # candidate
    likely = (
        score
        >= torch.minimum(torch.full_like(best, math.log(threshold)), best + math.log(RELATIVE))[
            :, None, None
        ]
    )
    # likely candidates first, the closest level first, then by score; the unusable last
    key = torch.where(
        likely, 1e3 * (count - torch.arange(count))[None, :, None] + score, score - 1e6
    )
    key = torch.where(allowed, key, torch.full_like(key, -math.inf)).view(n, per)
    top = key.topk(m, dim=1).indices  # [n, m]
    level = top // candidates
    ok = torch.isfinite(key.gather(1, top))
    return pool.view(n, per, *z.shape[1:])[torch.arange(n)[:, None], top], level, ok, best.exp()


class ConfirmedFlipper:
    """``confirmed_flips`` bound to a generator, labeler and proposal: ``flipper(z, y, rng) ->
    FlipResult``.

    What a stream's 'flip' views call when the guarantee must hold in images
    (``fairgen.views.make_views``).
    """

    def __init__(self, generator, labeler, proposal, **options):
        proposal = as_proposal(proposal)
        _keepers(
            _labelers(labeler, list(proposal.names_))[1], options.get("keep"), list(proposal.names_)
        )  # fails here, not mid-stream
        self.generator, self.labeler, self.proposal, self.options = (
            generator,
            labeler,
            proposal,
            options,
        )
        self.support = prior_support(generator)

    def __call__(
        self, z: torch.Tensor, y: torch.Tensor | None, rng: torch.Generator | None = None
    ) -> FlipResult:
        return confirmed_flips(
            self.generator,
            self.labeler,
            self.proposal,
            z,
            y,
            rng=rng,
            support=self.support,
            **self.options,
        )

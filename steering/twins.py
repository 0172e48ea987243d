"""Counterfactual twins the labeler confirms, drawn so that they stay typical under the prior.

For each anchor (its values read by the labeler) a requested joint value is drawn (the target's
other values the class shows). Every candidate twin is a prior-preserving mix around the anchor,
``cos(t) g + sin(t) e`` in the prior's Gaussian coordinates (``steering.prior.prior_mix``), at
angles from close (``rho = cos t`` 0.98) to a fresh prior draw (0): a candidate is distributed as
the prior itself, inside a truncated prior's box. The latent classifier (the proposal) scores
``candidates`` per angle; the twin is the closest angle's best candidate that it finds likely
(``q >= threshold``), else its best overall. The twin is synthesized and relabelled; only a twin
read as the requested value (every attribute) is kept. A miss retries, moving no closer than
before, up to ``retries`` times; anchors still without a twin keep the anchor as their "twin"
and are reported (``confirmed`` mask, ``missed`` count), never dropped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .classifier import one_thread
from .labelling import check_labeler_output
from .prior import PriorSupport, latent_prior, prior_mix, prior_support

BATCH = 512  # images synthesized and labelled at once
RHOS = (0.98, 0.95, 0.9, 0.8, 0.6, 0.3, 0.0)  # candidate angles, closest first (cos t)


@dataclass
class FlipResult:
    """Twins ``[N, d]`` (the anchor where none was confirmed), requested joint values, anchors' joint
    values, the ``confirmed`` mask ``[N]`` and the cost (syntheses and labeler calls, in all and per kept)."""

    twins: torch.Tensor
    values: torch.Tensor
    anchor_values: torch.Tensor
    confirmed: torch.Tensor
    cost: dict = field(default_factory=dict)

    @property
    def missed(self) -> int:
        return int((~self.confirmed).sum())


def _labelers(labeler, names: list[str]) -> dict:
    labelers = dict(labeler) if isinstance(labeler, dict) else {names[0]: labeler} if len(names) == 1 else None
    if labelers is None or set(labelers) != set(names):
        got = sorted(labeler) if isinstance(labeler, dict) else "one callable"
        raise ValueError(f"labeler must name the proposal's attributes {names}, got {got}")
    if not all(callable(f) for f in labelers.values()):
        raise ValueError("labeler must be a callable images -> labels, or a dict {name: callable}")
    return labelers


def confirmed_flips(generator, labeler, proposal, z: torch.Tensor, y: torch.Tensor | None = None, values=None,
                    rng: torch.Generator | None = None, retries: int = 8, candidates: int = 16,
                    threshold: float = 0.9, support: PriorSupport | None = None) -> FlipResult:
    """Twins of anchors ``z`` (classes ``y``) at another joint protected value, each confirmed by ``labeler``.

    ``proposal``: a fitted ``ClassifierSteerer`` (its classifier scores candidates, its target and
    the values each class shows pick the requested values unless ``values`` [N] is given).
    ``labeler``: a callable ``images -> labels``, or ``{name: callable}`` naming the proposal's
    attributes. Every random draw comes from ``rng``; same inputs and seed, same twins.
    """
    if retries < 0 or candidates < 1 or not 0 < threshold < 1:
        raise ValueError(f"retries must be >= 0, candidates >= 1 and threshold in (0, 1), got {retries}, {candidates}, {threshold}")
    names = list(proposal.names_)
    labelers = _labelers(labeler, names)
    support = support or prior_support(generator)
    prior = latent_prior(generator)
    conditional = generator.num_classes > 0
    anchors = z.detach().cpu()
    y = torch.zeros(len(z), dtype=torch.int64) if y is None else y.detach().cpu().long()
    calls = {"syntheses": 0, "labeler_calls": 0}

    def read(latents, classes):
        """The joint value the labeler reads off each latent's image (-1: a value the proposal does not know)."""
        out = []
        for start in range(0, len(latents), BATCH):
            zb, yb = latents[start:start + BATCH], classes[start:start + BATCH]
            images = generator.synthesize(zb.to(generator.device), yb.to(generator.device) if conditional else None)
            joint, unknown = torch.zeros(len(zb), dtype=torch.int64), torch.zeros(len(zb), dtype=torch.bool)
            for name, k in zip(names, proposal.num_values_, strict=True):
                labels = check_labeler_output(labelers[name](images), len(zb), name)
                unknown |= labels >= k
                joint = joint * k + labels.clamp(max=k - 1)
            out.append(torch.where(unknown, -1, joint))
        calls["syntheses"] += len(latents)
        calls["labeler_calls"] += len(latents) * len(labelers)
        return torch.cat(out)

    with one_thread():
        current = read(anchors, y)
        values = _requested(proposal, y, current, rng) if values is None else torch.as_tensor(values, dtype=torch.int64).cpu()
        if values.shape != y.shape or int(values.min()) < 0 or int(values.max()) >= proposal.target.numel():
            raise ValueError(f"values must be {len(y)} joint protected values in [0, {proposal.target.numel()})")
        twins, confirmed = anchors.clone(), values == current  # an anchor that already shows its value is its own twin
        confirmed &= support.contains(anchors)
        furthest = torch.zeros(len(z), dtype=torch.int64)  # a retry moves no closer than the last miss
        pending = torch.nonzero(~confirmed).flatten()
        for _ in range(retries + 1):
            if len(pending) == 0:
                break
            picked, level, ok = _pick(proposal, prior, support, anchors[pending], y[pending], values[pending],
                                      furthest[pending], candidates, threshold, rng)
            rows, picked, level = pending[ok], picked[ok], level[ok]
            hit = read(picked, y[rows]) == values[rows]
            twins[rows[hit]], confirmed[rows[hit]] = picked[hit], True
            furthest[rows[~hit]] = (level[~hit] + 1).clamp(max=len(RHOS) - 1)
            pending = torch.nonzero(~confirmed).flatten()
    kept = int(confirmed.sum())
    cost = {"n": len(z), "confirmed": kept, "missed": len(z) - kept, "confirmed_share": kept / max(len(z), 1), **calls,
            "syntheses_per_kept": calls["syntheses"] / max(kept, 1), "labeler_calls_per_kept": calls["labeler_calls"] / max(kept, 1)}
    return FlipResult(twins.to(z.device, z.dtype), values, current, confirmed, cost)


def _requested(proposal, y, current, rng) -> torch.Tensor:
    """A joint value per anchor other than its own, drawn from the target among those its class shows."""
    probs = proposal.target[None, :].repeat(len(y), 1) * (proposal.accept[y] > 0)
    known = torch.nonzero(current >= 0).flatten()
    probs[known, current[known]] = 0
    empty = probs.sum(1) == 0
    if bool((empty & (current < 0)).any()):
        raise ValueError("the target leaves no value to flip to for an anchor whose value the proposal does not know")
    probs[empty, current[empty]] = 1.0  # nothing else to go to: stay
    return torch.multinomial(probs, 1, generator=rng).squeeze(1)


def _pick(proposal, prior, support, z, y, values, furthest, candidates, threshold, rng):
    """Per anchor, the candidate to synthesize, its angle's index, and whether any candidate was in support."""
    n, levels = len(z), len(RHOS)
    rho = torch.tensor(RHOS).repeat_interleave(candidates).repeat(n)  # [n * levels * candidates]
    pool = prior_mix(prior, z.repeat_interleave(levels * candidates, 0), rho, rng)
    flat_y, flat_v = y.repeat_interleave(levels * candidates), values.repeat_interleave(levels * candidates)
    with torch.no_grad():
        score = proposal.joint_log_proba(pool.flatten(1).float(), flat_y).gather(1, flat_v[:, None]).squeeze(1)
    score = torch.where(support.contains(pool), score, torch.full_like(score, -math.inf)).view(n, levels, candidates)
    allowed = torch.arange(levels)[None, :] >= furthest[:, None]
    score = torch.where(allowed[:, :, None], score, torch.full_like(score, -math.inf))
    best, which = score.max(2)  # [n, levels]
    likely = best >= math.log(threshold)
    closest = torch.where(likely.any(1), likely.float().argmax(1), best.argmax(1))
    pick = closest * candidates + which[torch.arange(n), closest]
    ok = torch.isfinite(best[torch.arange(n), closest])
    return pool.view(n, levels * candidates, *z.shape[1:])[torch.arange(n), pick], closest, ok


class ConfirmedFlipper:
    """``confirmed_flips`` bound to a generator, labeler and proposal: ``flipper(z, y, rng) -> FlipResult``.

    What a stream's 'flip' views call when the guarantee must hold in images (``fairgen.views.make_views``).
    """

    def __init__(self, generator, labeler, proposal, **options):
        _labelers(labeler, list(proposal.names_))  # a wrong labeler fails here, not mid-stream
        self.generator, self.labeler, self.proposal, self.options = generator, labeler, proposal, options
        self.support = prior_support(generator)

    def __call__(self, z: torch.Tensor, y: torch.Tensor | None, rng: torch.Generator | None = None) -> FlipResult:
        return confirmed_flips(self.generator, self.labeler, self.proposal, z, y, rng=rng, support=self.support, **self.options)

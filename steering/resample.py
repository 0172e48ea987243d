"""Balance by rejection sampling in latent space: samples stay on the generator's own prior.

Each candidate latent of class ``c`` is accepted with probability
``alpha(z) = sum_j q(j | z, c) w_c(j) / max_j w_c(j)``, where ``q`` is the calibrated latent
classifier, ``p_c(j) = E_prior[q(j | z, c)]`` and ``w_c(j) = t(j) / p_c(j)``. The accepted latents
then show value ``j`` with probability ``t(j)`` in every class (exactly, when ``q`` is the true
posterior; as well as ``q`` is calibrated otherwise). A rejected sample is replaced by fresh
prior draws, tried in order: this is plain sequential rejection sampling, done in vectorised blocks.
``corrected_acceptance`` then fixes the weights ``w_c`` with labelled draws, where ``q`` is blurred.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

MAX_BLOCK = 256  # candidates drawn at once per pending sample
MAX_ROUNDS = 100


def rejection_sample(
    z: torch.Tensor,
    y: torch.Tensor,
    acceptance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    rate: torch.Tensor,
    sample_latents: Callable[[int, torch.Generator | None], torch.Tensor],
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, dict]:
    """Accepted latents ``[N, d]`` (the input ``z`` is each sample's first candidate) and draw
    counts.

    ``acceptance(z, y)`` gives each candidate's acceptance probability in [0, 1]; ``rate [C]`` is
    each class's expected acceptance (it sizes the blocks); ``sample_latents(n, generator)`` draws
    from the prior. Returns ``(latents, {"kept", "draws", "generated"})``: ``draws`` counts the
    candidates a sequential sampler would have examined, ``generated`` every candidate drawn.
    """
    out = z.clone()
    n = len(z)
    accepted = torch.rand(n, generator=generator) < acceptance(z, y).cpu()
    draws = torch.ones(n, dtype=torch.int64)
    generated = n
    pending = torch.nonzero(~accepted).flatten()
    for _ in range(MAX_ROUNDS):
        if len(pending) == 0:
            break
        yp = y[pending]
        k = int(min(MAX_BLOCK, max(1, torch.ceil(1.5 / rate[yp].mean().clamp(min=1e-6)).item())))
        candidates = sample_latents(len(pending) * k, generator).cpu().to(z.dtype)
        classes = yp.repeat_interleave(k)
        ok = (
            torch.rand(len(pending) * k, generator=generator)
            < acceptance(candidates, classes).cpu()
        )
        ok = ok.view(len(pending), k)
        found = ok.any(1)
        first = ok.float().argmax(1)
        draws[pending] += torch.where(found, first + 1, torch.full_like(first, k))
        rows = torch.nonzero(found).flatten()
        out[pending[rows]] = candidates.view(len(pending), k, -1)[rows, first[rows]]
        generated += len(candidates)
        pending = pending[~found]
    if len(pending):
        raise ValueError(
            f"rejection sampling kept no latent for {len(pending)} samples after {MAX_ROUNDS} "
            "rounds: the target "
            "asks for values these classes (almost) never show; give a target closer to what the "
            "generator produces"
        )
    return out, {"kept": n, "draws": int(draws.sum()), "generated": int(generated)}


def corrected_acceptance(
    q_prior: torch.Tensor,
    q_labelled: torch.Tensor,
    values: torch.Tensor,
    target: torch.Tensor,
    iters: int = 200,
    max_change: float = 4.0,
    min_labelled: int = 20,
) -> torch.Tensor:
    """Per-value acceptance weights ``[J]`` (max 1) whose *labelled* outcome matches ``target``.

    A classifier's posterior is blurred where values meet, so weights set from it alone accept too
    many majority latents near a thin minority region. The accepted mass of value ``t`` under
    weights ``w`` is ``A_t = E[1(t(z) = t) q(z).w]``, linear in ``w``; it is estimated the
    prediction-powered way: the classifier's own guess ``E[q_t q.w]`` on many unlabelled prior draws
    ``q_prior [U, J]``, plus the labelled residual ``E[(1(t_i = t) - q_t) q.w]`` on labelled prior
    draws
    (``q_labelled [L, J]``, their true ``values [L]``). The
    residual is non-zero only where the classifier is wrong, so few labels correct it. ``w`` starts
    at ``target / share`` (the share estimated the same way) and moves by multiplicative updates
    until the accepted shares equal ``target``; no weight rises above ``max_change`` times its
    start,
    and a value seen in fewer than ``min_labelled`` labelled draws keeps the classifier's own weight
    (its residual would be noise), so a rare value cannot swing the sampler.
    """
    q_prior, q_labelled = q_prior.double(), q_labelled.double()
    onehot = torch.nn.functional.one_hot(values, q_prior.shape[1]).double()
    mass = q_prior.T @ q_prior / len(q_prior) + (onehot - q_labelled).T @ q_labelled / len(
        q_labelled
    )  # A = mass @ w
    seen = onehot.sum(0) >= min_labelled  # values with enough labelled draws to correct
    share = torch.where(
        seen, torch.maximum(mass.sum(1), 0.25 * q_prior.mean(0)), q_prior.mean(0)
    ).clamp(min=1e-12)
    target = target.double()
    start = torch.where(
        target > 0, target / share, torch.zeros_like(share)
    )  # sum_j q_j = 1: mass.sum(1) is the share
    start = start / start.max()
    w = start.clone()
    for _ in range(iters):
        accepted = (mass @ w).clamp(min=1e-12)
        update = w * (target / (accepted / accepted.sum())).sqrt()
        w = torch.where(seen & (target > 0), update, w)
        w = torch.minimum(w / w.max(), start * max_change)
    return (w / w.max()).float()

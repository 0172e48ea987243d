"""Balance by rejection sampling in latent space: samples stay on the generator's own prior.

Each candidate latent of class ``c`` is accepted with probability
``alpha(z) = sum_j q(j | z, c) w_c(j) / max_j w_c(j)``, where ``q`` is the calibrated latent
classifier, ``p_c(j) = E_prior[q(j | z, c)]`` and ``w_c(j) = t(j) / p_c(j)``. The accepted latents
then show value ``j`` with probability ``t(j)`` in every class (exactly, when ``q`` is the true
posterior; as well as ``q`` is calibrated otherwise). A rejected sample is replaced by fresh
prior draws, tried in order: this is plain sequential rejection sampling, done in vectorised blocks.
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
    """Accepted latents ``[N, d]`` (the input ``z`` is each sample's first candidate) and draw counts.

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
        ok = torch.rand(len(pending) * k, generator=generator) < acceptance(candidates, classes).cpu()
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
            f"rejection sampling kept no latent for {len(pending)} samples after {MAX_ROUNDS} rounds: the target "
            "asks for values these classes (almost) never show; give a target closer to what the generator produces"
        )
    return out, {"kept": n, "draws": int(draws.sum()), "generated": int(generated)}

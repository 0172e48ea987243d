"""How well each walk does its edit in image space, for any generator: walked images vs the target
edit.

For ``n`` anchors and a uniform alpha in each walk's range: the masked mean squared error between
``G(z + alpha w)`` and ``edit(G(z), alpha)``, beside the error of not walking at all (``G(z)`` vs
the
same target). ``relative_error`` = error / no-walk error: 0 is a perfect walk, 1 a useless one.
"""

from __future__ import annotations

import torch

from plumbing.validation import check_int

from .edits import apply_edit
from .learn import masked_error, step_generator


def draw_walk_batch(generator, walks, transformation: str, n: int, seed: int):
    """Anchors ``z``, classes ``y``, alphas uniform in the walk's range, and walked latents."""
    rng = step_generator(seed, 0, purpose=7)
    z = generator.sample_latents(n, generator=rng).float()
    y = (
        torch.randint(generator.num_classes, (n,), generator=rng).to(z.device)
        if generator.num_classes
        else None
    )
    low, high = walks.alpha_ranges[transformation]
    alpha = (low + (high - low) * torch.rand(n, generator=rng)).to(z.device)
    return z, y, alpha, walks.to(z.device).move(z, y, transformation, alpha)


@torch.no_grad()
def image_fidelity(
    generator, walks, n: int = 1000, seed: int = 0, batch_size: int = 250
) -> dict[str, dict]:
    """``{transformation: {"error", "no_walk_error", "relative_error"}}`` (masked MSE, see module
    docstring)."""
    n = check_int(n, "n", 1)
    results = {}
    for t in walks.transformations:
        z, y, alpha, walked = draw_walk_batch(generator, walks, t, n, seed)
        errors, baseline = [], []
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            yp = y[part] if y is not None else None
            anchors = generator.synthesize(z[part], yp)
            target, mask = apply_edit(t, anchors, alpha[part])
            errors.append(masked_error(generator.synthesize(walked[part], yp), target, mask))
            baseline.append(masked_error(anchors, target, mask))
        error, no_walk = float(torch.cat(errors).mean()), float(torch.cat(baseline).mean())
        results[t] = {
            "error": error,
            "no_walk_error": no_walk,
            "relative_error": error / no_walk if no_walk > 0 else float("nan"),
        }
    return results

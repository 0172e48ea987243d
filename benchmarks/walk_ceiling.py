"""How well can *any* linear walk do on ``world-sprites-32``? The R^2 ceiling of its prior.

Run by hand: ``python benchmarks/walk_ceiling.py [--n 4000]``.

``world-sprites-32`` reaches each continuous factor through one rotated latent code pushed through
``Phi`` and the training split's quantile function, so a step ``alpha k`` along that code's
direction changes the factor by ``q(Phi(c + alpha k)) - q(Phi(c))``: proportional to ``phi(c)`` for
small steps, i.e. a different slope for every sample, and clipped at the factor's range. This
walks along each factor's own code direction (the best a linear walk can aim) at several step
scales ``k`` and prints the slope and R^2 of the factor change on alpha (the generator's own
factors, alpha uniform in the default ranges of ``fairgen.walks``): the best R^2 over ``k`` is the
ceiling a learned walk is measured against.
"""

from __future__ import annotations

import argparse
import math

import torch

from fairgen.generators import load_generator
from fairgen.walks import DEFAULT_ALPHAS
from fairgen.world.walk_fidelity import fit_line

FACTORS = {"hue": "hue", "size": "zoom", "x": "shift_x", "y": "shift_y", "rotation": "rotate"}


def change(name, before, after):
    if name == "size":
        return torch.log2(after / before)
    if name == "hue":
        return torch.remainder(after - before + 0.5, 1.0) - 0.5
    if name == "rotation":
        return torch.remainder(after - before + math.pi, 2 * math.pi) - math.pi
    return after - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    generator = load_generator("world-sprites-32")
    rng = torch.Generator().manual_seed(args.seed)
    z = generator.sample_latents(args.n, rng)
    y = torch.randint(generator.num_classes, (args.n,), generator=rng)
    before = generator.factors_from_latents(z, y)
    print("| factor (walk) | best R^2 | its slope | step scale k |\n|---|---|---|---|")
    for i, (name, walk) in enumerate(
        FACTORS.items()
    ):  # code 0 is the texture; 1.. follow CONTINUOUS
        direction = generator.mixing[1 + i]
        low, high = DEFAULT_ALPHAS[walk]
        alpha = low + (high - low) * torch.rand(args.n, generator=rng)
        fits = []
        for k in (0.25, 0.5, 1, 2, 3, 4, 6, 8, 10, 15, 20, 30):
            after = generator.factors_from_latents(z + (alpha * k)[:, None] * direction, y)
            slope, _, r2 = fit_line(alpha.numpy(), change(name, before[name], after[name]).numpy())
            fits.append((r2, slope, k))
        r2, slope, k = max(fits)
        print(f"| {name} ({walk}) | {r2:.3f} | {slope:.3f} | {k} |")


if __name__ == "__main__":
    main()

"""How much does the labelled correction of the resampler buy? Population V with exact labels.

    python benchmarks/balance_correction.py                       # texture on world-sprites-z128
    python benchmarks/balance_correction.py --protected colour --shares 0.3,0.4,0.5

The embedded generator knows every factor, so labels come straight from ``factors_from_latents``
(no rendering, no judge error) and the steered distribution is computed exactly: each of
``--population`` prior draws weighted by its acceptance probability, per class. That is the V a
judged stream converges to, free of the sampling noise of a judged sample. Each row fits
``fit_steerer`` on ``--n`` labels with a given share of plain prior draws (the rest active), with
and without ``corrected_acceptance``, in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import steering.nonlinear as nonlinear
from fairgen.generators import load_generator
from steering import fit as fitting


class ExactLabels(torch.nn.Module):
    """The generator, with 'images' that carry the protected factors themselves (exact labels)."""

    def __init__(self, base, names):
        super().__init__()
        self.base, self.names = base, names
        self.num_classes, self.latent_dim, self.name = base.num_classes, base.latent_dim, base.name

    @property
    def device(self):
        return torch.device("cpu")

    def sample_latents(self, n, generator=None):
        return self.base.sample_latents(n, generator)

    def synthesize(self, z, y):
        factors = self.base.factors_from_latents(z, y)
        return torch.stack([factors[k].float() for k in self.names], 1)[:, :, None, None]


def column_labeler(i: int):
    """The labeler that reads factor ``i`` back from an ``ExactLabels`` image."""
    return lambda images: images[:, i, 0, 0].round().long()


def population_v(base, steerer, names, n: int, seed: int = 7) -> dict[str, float]:
    """Cramér's V of class x each protected value (and their joint) under the steered
    distribution."""
    rng = torch.Generator().manual_seed(seed)
    z, y = base.sample_latents(n, rng), torch.randint(base.num_classes, (n,), generator=rng)
    factors = base.factors_from_latents(z, y)
    weight = steerer._acceptance(z, y).double()
    joint = torch.zeros(n, dtype=torch.int64)
    for k in names:
        joint = joint * (int(factors[k].max()) + 1) + factors[k]
    out = {}
    for key, values in [*((k, factors[k]) for k in names), ("joint", joint)][
        : len(names) + (len(names) > 1)
    ]:
        table = torch.zeros(base.num_classes, int(values.max()) + 1, dtype=torch.float64)
        table.index_put_((y, values), weight, accumulate=True)
        p = (table / table.sum(1, keepdim=True) / base.num_classes).numpy()
        rows, cols = p.sum(1, keepdims=True), p.sum(0, keepdims=True)
        out[key] = float(
            np.sqrt(
                ((p - rows * cols) ** 2 / np.maximum(rows * cols, 1e-300)).sum()
                / (min(p.shape) - 1)
            )
        )
    return out


def uncorrected(q_prior, q_labelled, values, target, **_):
    share = q_prior.mean(0)
    start = torch.where(target > 0, target / share.clamp(min=1e-12), torch.zeros_like(share))
    return start / start.max()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generator", default="world-sprites-z128")
    parser.add_argument(
        "--protected",
        default="texture",
        help="comma-separated factors the generator's prior ties to the class",
    )
    parser.add_argument(
        "--shares",
        default="0.4",
        help="comma-separated shares of plain prior draws among the labels",
    )
    parser.add_argument("--n", type=int, default=20_000, help="labels per fit")
    parser.add_argument("--population", type=int, default=400_000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    names = args.protected.split(",")
    base = load_generator(args.generator)
    if tuple(getattr(base, "protected", names)) != tuple(names):
        import copy

        from fairgen.world.recipe import RecipeConfig, training_split

        base = copy.deepcopy(base)
        base.fit_prior(training_split(RecipeConfig(protected=tuple(names))).factors, tuple(names))
    generator = ExactLabels(base, names)
    labelers = {k: column_labeler(i) for i, k in enumerate(names)}
    labeler = labelers if len(names) > 1 else labelers[names[0]]
    corrected = nonlinear.corrected_acceptance
    print(
        f"{args.generator}, protected {names}, {args.n:,} exact labels per fit, V over "
        f"{args.population:,} weighted draws"
    )
    for share in (float(s) for s in args.shares.split(",")):
        fitting.ACTIVE_SHARE = share
        for label, rule in (("classifier weights", uncorrected), ("corrected", corrected)):
            nonlinear.corrected_acceptance = rule
            tic = time.time()
            steerer, _ = fitting.fit_steerer(generator, labeler, n=args.n, progress=False)
            v = population_v(base, steerer, names, args.population)
            shown = "  ".join(f"V({k}) {x:.3f}" for k, x in v.items())
            print(
                f"  prior share {share:.2f}  {label:<19} {shown}  draws/kept "
                f"{steerer.expected_draws():5.1f}  fit {time.time() - tic:4.0f} s"
            )
    nonlinear.corrected_acceptance = corrected


if __name__ == "__main__":
    main()

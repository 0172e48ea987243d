"""Active labelling: spend part of the labels on prior draws, the rest where a classifier is unsure.

Shared by the steerers that fit latent classifiers (``resample``, ``confirmed``): 40% of the labels
go to plain prior draws and the rest, in two rounds, to the latents the classifier fitted so far is
least sure of (they land near the boundaries, where a label teaches most).
"""

from __future__ import annotations

import torch

from .classifier import fit_classifiers, uncertainty
from .labelling import LabelledLatents, label_latents, sample_and_label

ACTIVE_SHARE = 0.4  # share of the labels spent on plain prior draws first
ACTIVE_ROUNDS = 2  # rounds of labelling where the classifier fitted so far is least sure
POOL = 10  # an active round picks its latents among this many prior draws per label


def label_actively(
    generator, labelers: dict, n: int, seed: int, progress: bool, active: bool, keep=None
) -> tuple[LabelledLatents, int]:
    """``n`` labelled samples (actively, with ``active``) and how many of the first are prior draws.

    Every attribute but ``keep`` must take two values at least (else nothing to balance)."""
    n_random = int(n * ACTIVE_SHARE) if active else n
    samples = sample_and_label(generator, labelers, n_random, seed, progress=progress)
    for name, labels in samples.labels.items():
        if name != keep:
            check_values(labels, name)
    for round_ in range(ACTIVE_ROUNDS if n_random < n else 0):
        extra = (n - n_random) // ACTIVE_ROUNDS if round_ < ACTIVE_ROUNDS - 1 else n - len(samples)
        samples = _label_where_unsure(
            generator, labelers, samples, extra, seed + round_, progress, n_random
        )
    return samples, n_random


def check_values(labels: torch.Tensor, name: str) -> None:
    """A clear error when a protected attribute takes a single value in every labelled sample."""
    values = torch.unique(labels)
    if len(values) < 2:
        raise ValueError(
            f"protected attribute {name!r} takes a single value ({int(values[0])}) in all "
            f"{len(labels)} labelled samples: there is nothing to balance (is the labeler right?)"
        )


def _label_where_unsure(
    generator, labelers, samples: LabelledLatents, n: int, seed: int, progress: bool, n_random: int
) -> LabelledLatents:
    """Spend ``n`` more labels on the prior draws the classifier fitted so far is least sure of."""
    values = {name: int(v.max()) + 1 for name, v in samples.labels.items()}
    first = fit_classifiers(
        samples.latents.flatten(1),
        samples.classes,
        samples.labels,
        max(1, generator.num_classes),
        values,
        seed,
        random_count=n_random,
    )
    rng = torch.Generator().manual_seed(seed + 101)
    pool = generator.sample_latents(POOL * n, generator=rng).cpu()
    pool_y = torch.randint(max(1, generator.num_classes), (len(pool),), generator=rng)
    pick = uncertainty(first, pool.flatten(1), pool_y).argsort(descending=True)[:n]
    extra = label_latents(
        generator,
        labelers,
        pool[pick],
        pool_y[pick] if generator.num_classes else None,
        progress=progress,
    )
    return LabelledLatents(
        torch.cat([samples.latents, pool[pick]]),
        torch.cat([samples.classes, pool_y[pick]]),
        {name: torch.cat([samples.labels[name], extra[name]]) for name in samples.labels},
    )

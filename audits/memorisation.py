"""Memorisation: do generated samples sit closer to the training set than fresh real samples do?

For each generated sample we take its nearest-neighbour (Euclidean) distance to the training
set; for reference, the same for held-out real samples that the generator never saw. A generator
that only learned the distribution gives two similar distance distributions; one that copies its
training data gives generated distances piled near zero. Two one-sided tests look for that:

* Mann-Whitney U: generated NN distances are stochastically smaller than held-out ones;
* Fisher's exact test: generated samples contain more near-copies (distance <= threshold, by
  default the 1st percentile of held-out distances) than held-out samples do.

`memorised` is True when either p-value is below alpha (so a fresh generator is flagged with
probability at most about 2 * alpha). Run it on features where distance means similarity:
a pretrained encoder's embeddings, or downsampled pixels for a small world.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from scipy.stats import fisher_exact, mannwhitneyu

from plumbing.validation import as_features


@dataclass(frozen=True, eq=False)  # holds frames/arrays, which have no single ==
class MemorisationResult:
    """NN distances to the training set, near-copy shares and the two one-sided tests."""

    threshold: float
    threshold_rule: str
    near_copy_share: float  # generated samples at or below the threshold
    heldout_near_copy_share: float
    near_copy_ratio: float  # generated share / held-out share (held-out floored at one sample)
    mann_whitney_p: float
    closer_probability: float  # P(generated distance < held-out distance), ties count half
    fisher_p: float
    alpha: float
    generated_distances: np.ndarray = field(repr=False)
    heldout_distances: np.ndarray = field(repr=False)
    generated_nearest: np.ndarray | None = field(
        default=None, repr=False
    )  # index of each one's nearest training row

    def closest_pairs(self, k: int = 16) -> list[tuple[int, int, float]]:
        """The ``k`` generated samples nearest to a training sample: (generated, training,
        distance)."""
        order = np.argsort(self.generated_distances, kind="stable")[:k]
        nearest = (
            self.generated_nearest
            if self.generated_nearest is not None
            else np.full(len(order), -1)
        )
        return [(int(i), int(nearest[i]), float(self.generated_distances[i])) for i in order]

    @property
    def memorised(self) -> bool:
        return bool(self.mann_whitney_p < self.alpha or self.fisher_p < self.alpha)

    def to_dict(self) -> dict:
        """Headline numbers plus distance quantiles (not the raw distance arrays)."""
        out = self.to_frame().iloc[0].to_dict()
        out = {k: (v.item() if hasattr(v, "item") else v) for k, v in out.items()}
        qs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95]
        out["generated_distance_quantiles"] = _quantiles(self.generated_distances, qs)
        out["heldout_distance_quantiles"] = _quantiles(self.heldout_distances, qs)
        return out

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [
                {
                    "n_generated": int(self.generated_distances.size),
                    "n_heldout": int(self.heldout_distances.size),
                    "threshold": self.threshold,
                    "threshold_rule": self.threshold_rule,
                    "near_copy_share": self.near_copy_share,
                    "heldout_near_copy_share": self.heldout_near_copy_share,
                    "near_copy_ratio": self.near_copy_ratio,
                    "closer_probability": self.closer_probability,
                    "mann_whitney_p": self.mann_whitney_p,
                    "fisher_p": self.fisher_p,
                    "alpha": self.alpha,
                    "memorised": self.memorised,
                }
            ]
        )


def memorisation(
    generated_features,
    train_features,
    heldout_features,
    threshold: float | None = None,
    *,
    quantile: float = 0.01,
    alpha: float = 0.01,
    device: str | torch.device = "cpu",
) -> MemorisationResult:
    """Compare generated and held-out samples' nearest-neighbour distances to the training set.

    threshold: distance at or below which a sample counts as a near-copy; by default the
        `quantile` (1st percentile) of held-out NN distances.
    device: where the distances are computed ("cuda" for large sets); results come back as numpy.
    """
    gen = as_features(generated_features, "generated_features")
    train = as_features(train_features, "train_features")
    held = as_features(heldout_features, "heldout_features")
    for name, x in (("generated_features", gen), ("heldout_features", held)):
        if x.shape[1] != train.shape[1]:
            raise ValueError(
                f"{name} must have the same width as train_features ({train.shape[1]}), got "
                f"{x.shape[1]}"
            )
        if x.shape[0] < 2:
            raise ValueError(f"{name} needs at least 2 rows, got {x.shape[0]}")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")

    d_gen, nearest = nearest_distances(gen, train, device=device, return_indices=True)
    d_held = nearest_distances(held, train, device=device)
    if threshold is None:
        threshold = float(np.quantile(d_held, quantile))
        rule = f"{quantile:g} quantile of held-out NN distances"
    else:
        if not (np.isscalar(threshold) and np.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"threshold must be a finite number >= 0 or None, got {threshold!r}")
        threshold, rule = float(threshold), "given"

    gen_near = int((d_gen <= threshold).sum())
    held_near = int((d_held <= threshold).sum())
    gen_share, held_share = gen_near / d_gen.size, held_near / d_held.size
    mw = mannwhitneyu(d_gen, d_held, alternative="less")
    fisher = fisher_exact(
        [[gen_near, d_gen.size - gen_near], [held_near, d_held.size - held_near]],
        alternative="greater",
    )
    return MemorisationResult(
        threshold=threshold,
        threshold_rule=rule,
        near_copy_share=gen_share,
        heldout_near_copy_share=held_share,
        near_copy_ratio=gen_share / max(held_share, 1 / d_held.size),
        mann_whitney_p=float(mw.pvalue),
        # U counts pairs where generated > held-out, so the "closer" share is its complement.
        closer_probability=1.0 - float(mw.statistic) / (d_gen.size * d_held.size),
        fisher_p=float(fisher.pvalue),
        alpha=float(alpha),
        generated_distances=d_gen,
        heldout_distances=d_held,
        generated_nearest=nearest,
    )


def nearest_distances(
    queries: np.ndarray,
    reference: np.ndarray,
    max_cells: int = 4_000_000,
    device: str | torch.device = "cpu",
    return_indices: bool = False,
):
    """Euclidean distance from each query row to its nearest reference row, in bounded memory
    (and, with ``return_indices``, which row it is).

    Works through blocks of at most `max_cells` query-reference pairs (32 MB of float64), so a
    large training set never needs an [N_query, N_reference] matrix at once. float64 throughout,
    so near-zero distances of near-copies are not lost to rounding in the matrix-product form.
    """
    ref = torch.as_tensor(np.asarray(reference, dtype=np.float64), device=device)
    rows = max(1, min(len(queries), max_cells // len(ref)))
    cols = min(len(ref), max_cells)
    out = np.empty(len(queries))
    where = np.empty(len(queries), dtype=np.int64)
    for i in range(0, len(queries), rows):
        q = torch.as_tensor(np.asarray(queries[i : i + rows], dtype=np.float64), device=device)
        best = torch.full((len(q),), float("inf"), dtype=torch.float64, device=device)
        arg = torch.zeros(len(q), dtype=torch.int64, device=device)
        for j in range(0, len(ref), cols):
            d, a = torch.cdist(q, ref[j : j + cols]).min(dim=1)
            better = d < best
            best, arg = torch.where(better, d, best), torch.where(better, a + j, arg)
        out[i : i + rows] = best.cpu().numpy()
        where[i : i + rows] = arg.cpu().numpy()
    return (out, where) if return_indices else out


def _quantiles(x: np.ndarray, qs) -> dict:
    return {f"q{round(100 * q):02d}": float(np.quantile(x, q)) for q in qs}

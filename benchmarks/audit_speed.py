"""Leakage audit speed at 50,000 x 512 features with 199 permutations: before (logistic probe,
one refit per permutation and fold, one thread: the procedure before this change) and after
(the closed-form lda probe, one Cholesky factor per fold shared by all permutations, batched,
--jobs threads). Each variant runs once, one after the other, in this process.

Run: python benchmarks/audit_speed.py [--n 50000] [--d 512] [--permutations 199] [--jobs 2]
     [--baseline-permutations 199]   (fewer makes the baseline quicker; its time is then also
                                       extrapolated linearly to --permutations)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from audits import leakage


def features(n: int, d: int, seed: int = 0):
    """Correlated features (a random mixing of d latent factors) with a weak 4-valued protected
    signal."""
    rng = np.random.default_rng(seed)
    protected = rng.integers(0, 4, n)
    z = rng.normal(size=(n, d))
    z[:, :4] += 0.3 * np.eye(4)[protected]
    mixing = rng.normal(size=(d, d)) / np.sqrt(d)
    return (z @ mixing).astype(np.float32), protected


def timed(label, **kwargs):
    start = time.perf_counter()
    result = leakage(X, Y, n_repeats=1, seed=0, **kwargs)
    seconds = time.perf_counter() - start
    print(
        f"{label:44s} {seconds:8.1f} s   balanced accuracy {result.balanced_accuracy:.3f} "
        f"[{result.ci_low:.3f}, {result.ci_high:.3f}], p {result.p_value:.3f}",
        flush=True,
    )
    return seconds


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--d", type=int, default=512)
    parser.add_argument("--permutations", type=int, default=199)
    parser.add_argument("--baseline-permutations", type=int, default=199)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    X, Y = features(args.n, args.d)
    print(
        f"{args.n} x {args.d} features, 5-fold CV, {args.permutations} permutations (shared "
        "machine: timings are noisy)"
    )
    after = timed(
        f"after: lda, jobs {args.jobs}",
        probe="lda",
        n_permutations=args.permutations,
        n_jobs=args.jobs,
    )
    after1 = timed("after: lda, jobs 1", probe="lda", n_permutations=args.permutations, n_jobs=1)
    before = timed(
        f"before: linear (logistic), jobs 1, {args.baseline_permutations} perms",
        probe="linear",
        n_permutations=args.baseline_permutations,
        n_jobs=1,
    )
    if args.baseline_permutations != args.permutations:
        before = before * (1 + args.permutations) / (1 + args.baseline_permutations)
        print(f"before, extrapolated to {args.permutations} permutations: {before:.1f} s")
    print(
        f"speed-up (before / after, jobs {args.jobs}): {before / after:.1f}x; jobs 1: "
        f"{before / after1:.1f}x"
    )

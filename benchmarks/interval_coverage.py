"""Coverage at nominal 95% of the audit intervals, by simulation on data with a known answer.

Run: python benchmarks/interval_coverage.py [--sims 300]
EO / DP gaps: four groups with known TPR / FPR, predictions drawn from them; compares the
percentile bootstrap, BCa and the simultaneous max-t interval that ``group_fairness`` reports.
Leakage: the corrected resampled-t CI on pure noise (truth: chance) and on a Gaussian signal
(truth: the Bayes balanced accuracy Phi(0.5), a hair above what a fitted probe can reach).
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import norm

from audits import leakage
from audits.fairness import _bootstrap_confusion, _confusion, _gaps, _pairwise, _rates
from audits.intervals import bca_interval, max_abs_interval, percentile_ci

TPR = np.array([0.80, 0.78, 0.70, 0.75])
FPR = np.array([0.10, 0.12, 0.15, 0.10])
TRUE = {"eo": max(np.ptp(TPR), np.ptp(FPR)), "dp": np.ptp(0.5 * TPR + 0.5 * FPR)}


def simulate(seed: int, n: int = 1200):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, 4, n)
    t = (rng.random(n) < 0.5).astype(int)
    p = np.where(t == 1, rng.random(n) < TPR[g], rng.random(n) < FPR[g]).astype(int)
    return t, p, g


def gaps(confusion):
    dp, eo = _gaps(*(r[..., [1]] for r in _rates(confusion)))
    return {"dp": dp, "eo": eo}


def jackknife(confusion):
    """Leave-one-row-out gaps, one per occupied confusion cell, weighted by its count."""
    cells = np.argwhere(confusion > 0)
    tables = np.repeat(confusion[None], len(cells), axis=0)
    tables[np.arange(len(cells)), cells[:, 0], cells[:, 1], cells[:, 2]] -= 1
    return gaps(tables), confusion[tuple(cells.T)]


def fairness_coverage(sims: int) -> None:
    hits = {f"{m} {g}": 0 for m in ("percentile", "BCa", "max-t") for g in ("eo", "dp")}
    for seed in range(sims):
        t, p, g = simulate(seed)
        confusion = _confusion(t, p, g, 4, 2)
        boots = _bootstrap_confusion(t, p, g, 4, 2, 500, seed)
        point, boot = gaps(confusion), gaps(boots)
        jack, weights = jackknife(confusion)
        rates, boot_rates = _rates(confusion), _rates(boots)
        pair = {
            "dp": (_pairwise(rates[0][..., [1]]), _pairwise(boot_rates[0][..., [1]])),
            "eo": (
                np.concatenate([_pairwise(r[..., [1]]) for r in rates[1:]], axis=-1),
                np.concatenate([_pairwise(r[..., [1]]) for r in boot_rates[1:]], axis=-1),
            ),
        }
        for gap in ("eo", "dp"):
            for method, (low, high) in {
                "percentile": percentile_ci(boot[gap]),
                "BCa": bca_interval(boot[gap], float(point[gap]), jack[gap], weights),
                "max-t": max_abs_interval(*pair[gap]),
            }.items():
                hits[f"{method} {gap}"] += low <= TRUE[gap] <= high
    print(
        f"gaps (true EO {TRUE['eo']:.3f}, DP {TRUE['dp']:.3f}), coverage over {sims} test sets of "
        "1200 rows:"
    )
    for key, count in hits.items():
        print(f"  {key:14s} {count / sims:.3f}")


def leakage_coverage(sims: int) -> None:
    for probe in ("lda", "linear"):
        noise = signal = 0
        for seed in range(sims):
            rng = np.random.default_rng(seed)
            y = rng.integers(0, 2, 200)
            r = leakage(
                rng.normal(size=(200, 5)), y, probe, n_permutations=0, n_repeats=1, seed=seed
            )
            noise += r.ci_low <= 0.5 <= r.ci_high
            x = rng.normal(size=(200, 2))
            x[:, 0] += np.where(y == 1, 0.5, -0.5)
            r = leakage(x, y, probe, n_permutations=0, n_repeats=1, seed=seed)
            signal += r.ci_low <= norm.cdf(0.5) <= r.ci_high
        print(
            f"leakage CI ({probe}, 200 rows): covers chance on noise {noise / sims:.3f}, "
            f"covers Phi(0.5) on a signal {signal / sims:.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sims", type=int, default=300)
    args = parser.parse_args()
    fairness_coverage(args.sims)
    leakage_coverage(args.sims)

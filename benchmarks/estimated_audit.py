"""Audits with labeler-estimated sensitive labels, on the embedded world: EO difference and leakage
uncorrected, corrected (``audits.estimated``) and with exact labels, and the corrected intervals'
coverage over repetitions.

Run: python benchmarks/estimated_audit.py [--reps 200] [--verified 100,300,1000] [--accuracy 0.85]
     python benchmarks/estimated_audit.py --calibration 1000   (simulated data, known confusion)

Setup: world images at 32 px. The "encoder" is a stand-in with a known amount of each factor: the
shape and texture judges' logits plus Gaussian noise (sd 3 and 4), so a linear target probe
(shape) fitted on a split biased 0.9 towards texture leans on texture in part (accuracy ~0.9 on a
balanced split) and texture leaks at a balanced accuracy ~0.8, away from 0 and 1. The probe is
audited on a balanced split by texture: exact labels are the texture judge's (right 100% on world
images). A simulated labeler says the judge's
texture with probability ``--accuracy`` and one of the other three uniformly otherwise. Each
repetition draws new labeler noise on the audit split and a new verified set like ``fairgen
review`` (a pool of 10x images from the biased split, every (class, labeler output) cell given at
least 5, the rest proportional; weights undo it). Coverage: share of repetitions whose corrected
95% interval holds the exact-label value of the same audit rows (the probe's predictions fixed).
Leakage: an LDA probe's out-of-fold balanced accuracy for texture (5 folds), fitted on the
labeler's outputs; its exact-label value is the same predictions scored against the judges.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from audits.estimated import estimated_fairness, estimated_leakage, out_of_fold_predictions
from audits.fairness import _confusion, _gaps, _rates
from fairgen.estimated_audit import target_predictions
from fairgen.review import stratified_pick
from fairgen.world import CLASS_FACTOR, DEFAULT_PROTECTED, World, load_judges

NOISE = {CLASS_FACTOR: 3.0, DEFAULT_PROTECTED: 4.0}  # sd added to each judge's logits


def logits(images: torch.Tensor) -> dict[str, np.ndarray]:
    judges = load_judges()
    with torch.no_grad():
        return {
            f: torch.cat([judges[f](b) for b in images.split(500)]).numpy().astype(np.float64)
            for f in NOISE
        }


def features(judged: dict[str, np.ndarray], rng) -> np.ndarray:
    return np.concatenate([v + rng.normal(0, NOISE[f], v.shape) for f, v in judged.items()], 1)


def labeler(truth: np.ndarray, accuracy: float, k: int, rng) -> np.ndarray:
    """The judge's value with probability ``accuracy``, else one of the others uniformly."""
    shift = rng.integers(1, k, len(truth))
    return np.where(rng.random(len(truth)) < accuracy, truth, (truth + shift) % k)


def exact_eo(target, pred, groups, k) -> float:
    classes, codes = np.unique(np.concatenate([target, pred]), return_inverse=True)
    t, p = codes[: len(target)], codes[len(target) :]
    rates = _rates(_confusion(t, p, groups, k, len(classes)))
    return float(_gaps(*rates)[1])


def balanced_accuracy(truth, pred, k) -> float:
    return float(np.mean([(pred[truth == a] == a).mean() for a in range(k)]))


def calibration(reps: int, seed: int = 0) -> None:
    """Coverage on simulated data with a known symmetric 85% confusion (the simulation of
    tests/test_audits_estimated.py): two groups (minority 30%), binary target, TPR 0.80 / 0.65 and
    FPR 0.10 / 0.20 by true group (EO difference 0.15), 4,000 rows, 300 verified pairs."""
    confusion = np.array([[0.85, 0.15], [0.15, 0.85]])
    rng = np.random.default_rng(seed)
    hits = {"corrected": 0, "population": 0, "uncorrected": 0, "leakage": 0}
    key = "equalized_odds_difference"
    for r in range(reps):
        a = (rng.random(4000) < 0.3).astype(int)
        y = (rng.random(4000) < 0.5).astype(int)
        rate = np.where(y == 1, np.where(a == 1, 0.65, 0.8), np.where(a == 1, 0.2, 0.1))
        p = (rng.random(4000) < rate).astype(int)
        o = (rng.random(4000) < confusion[a, 1]).astype(int)
        va = (rng.random(300) < 0.3).astype(int)
        vo = (rng.random(300) < confusion[va, 1]).astype(int)
        s = estimated_fairness(y, p, o, va, vo, n_bootstrap=200, seed=r).summary
        exact = exact_eo(y, p, a, 2)
        low, high = s[f"corrected_{key}_ci_low"], s[f"corrected_{key}_ci_high"]
        hits["corrected"] += low <= exact <= high
        hits["population"] += low <= 0.15 <= high
        hits["uncorrected"] += (
            s[f"uncorrected_{key}_ci_low"] <= exact <= s[f"uncorrected_{key}_ci_high"]
        )
        probe = np.where(rng.random(4000) < 0.75, a, 1 - a)  # a probe right 75% per value
        lk = estimated_leakage(probe, o, va, vo, n_bootstrap=200, seed=r).summary
        truth = balanced_accuracy(a, probe, 2)
        hits["leakage"] += lk["corrected_ci_low"] <= truth <= lk["corrected_ci_high"]
    print(f"simulated, {reps} repetitions: 95% intervals covering")
    print(f"  corrected EO difference, exact-label value of the rows: {hits['corrected']}")
    print(f"  corrected EO difference, population value 0.15:        {hits['population']}")
    print(f"  uncorrected EO difference, exact-label value:          {hits['uncorrected']}")
    print(f"  corrected leakage balanced accuracy, exact value:      {hits['leakage']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--verified", default="100,300,1000")
    parser.add_argument("--accuracy", type=float, default=0.85)
    parser.add_argument("--n-probe", type=int, default=4000)
    parser.add_argument("--n-test", type=int, default=4000)
    parser.add_argument("--bootstrap", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--calibration", type=int, default=0, metavar="REPS", help="run the simulated check only"
    )
    args = parser.parse_args()
    if args.calibration:
        calibration(args.calibration, args.seed)
        return
    torch.set_num_threads(1)
    start = time.perf_counter()
    world = World(32)
    probe_split = world.sample(args.n_probe, seed=args.seed + 12, bias=0.9)
    test_split = world.sample(args.n_test, seed=args.seed + 13, bias=0.0)
    pool_split = world.sample(
        10 * max(map(int, args.verified.split(","))), seed=args.seed + 14, bias=0.9
    )
    k = 4
    noise = np.random.default_rng(args.seed)
    test_logits, probe_logits = logits(test_split.images), logits(probe_split.images)
    truth = test_logits[DEFAULT_PROTECTED].argmax(axis=1)
    pool_truth = logits(pool_split.images)[DEFAULT_PROTECTED].argmax(axis=1)
    pool_class = pool_split.labels(CLASS_FACTOR).numpy()
    agree = (truth == test_split.labels(DEFAULT_PROTECTED).numpy()).mean()
    x_test = features(test_logits, noise)
    y_test = test_split.labels(CLASS_FACTOR).numpy()
    pred = target_predictions(
        features(probe_logits, noise), probe_split.labels(CLASS_FACTOR).numpy(), x_test
    )
    eo_exact = exact_eo(y_test, pred, truth, k)
    leak_exact_probe = balanced_accuracy(truth, out_of_fold_predictions(x_test, truth), k)
    print(
        f"world 32 px, {args.n_test} audit rows, target probe accuracy "
        f"{(pred == y_test).mean():.3f}; judges agree with the world's factors on {agree:.1%}; "
        f"labeler accuracy {args.accuracy:.0%}"
    )
    print(
        f"exact labels: EO difference {eo_exact:.4f}; "
        f"leakage (LDA on exact labels) {leak_exact_probe:.4f}"
    )
    header = (
        f"{'verified':>8} {'EO uncorr':>10} {'EO corr':>9} {'EO exact':>9} {'cover':>6} "
        f"{'width':>6} {'cover unc':>9} | {'leak unc':>8} {'leak corr':>9} {'leak exact':>10} "
        f"{'cover':>6} {'width':>6}"
    )
    print(header)
    rows = []
    for m in map(int, args.verified.split(",")):
        rng = np.random.default_rng(args.seed + m)
        out = {
            key: []
            for key in (
                "eo_u",
                "eo_c",
                "cov",
                "w",
                "cov_u",
                "lk_u",
                "lk_c",
                "lk_x",
                "lk_cov",
                "lk_w",
            )
        }
        for r in range(args.reps):
            said = labeler(truth, args.accuracy, k, rng)
            pool = rng.choice(len(pool_truth), 10 * m, replace=False)
            pool_said = labeler(pool_truth[pool], args.accuracy, k, rng)
            cells = pool_class[pool] * k + pool_said
            picked = stratified_pick(cells, m, 4 * k, min_per_cell=5, seed=r)
            weights = (
                np.bincount(cells, minlength=4 * k)[cells[picked]]
                / np.bincount(cells[picked], minlength=4 * k)[cells[picked]]
            )
            verified = dict(
                n_values=k,
                verified_weights=weights,
                verified_strata=cells[picked],
                n_bootstrap=args.bootstrap,
                seed=r,
            )
            vt, vo = pool_truth[pool][picked], pool_said[picked]
            s = estimated_fairness(y_test, pred, said, vt, vo, **verified).summary
            key = "equalized_odds_difference"
            out["eo_u"].append(s[f"uncorrected_{key}"])
            out["eo_c"].append(s[f"corrected_{key}"])
            low, high = s[f"corrected_{key}_ci_low"], s[f"corrected_{key}_ci_high"]
            out["cov"].append(low <= eo_exact <= high)
            out["w"].append(high - low)
            out["cov_u"].append(
                s[f"uncorrected_{key}_ci_low"] <= eo_exact <= s[f"uncorrected_{key}_ci_high"]
            )
            probe = out_of_fold_predictions(x_test, said, seed=r)
            lk = estimated_leakage(probe, said, vt, vo, **verified).summary
            exact = balanced_accuracy(truth, probe, k)
            out["lk_u"].append(lk["uncorrected_balanced_accuracy"])
            out["lk_c"].append(lk["corrected_balanced_accuracy"])
            out["lk_x"].append(exact)
            out["lk_cov"].append(lk["corrected_ci_low"] <= exact <= lk["corrected_ci_high"])
            out["lk_w"].append(lk["corrected_ci_high"] - lk["corrected_ci_low"])
        mean = {key: float(np.mean(v)) for key, v in out.items()}
        rows.append((m, mean))
        print(
            f"{m:>8} {mean['eo_u']:>10.4f} {mean['eo_c']:>9.4f} {eo_exact:>9.4f} "
            f"{mean['cov']:>6.3f} "
            f"{mean['w']:>6.3f} {mean['cov_u']:>9.3f} | {mean['lk_u']:>8.4f} {mean['lk_c']:>9.4f} "
            f"{mean['lk_x']:>10.4f} {mean['lk_cov']:>6.3f} {mean['lk_w']:>6.3f}"
        )
    print(
        f"{args.reps} repetitions per row, {args.bootstrap} bootstrap resamples each; means over "
        f"repetitions; {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()

"""Measure every steering mode on the embedded generator, judged by the world's judges.

Run by hand: ``python benchmarks/steering_modes.py [--fit-n 20000] [--eval-n 10000] [--out
steering_out]``.
Prints, per mode: Cramér's V(class, judged texture) and class fidelity of >= 10k steered samples
against the raw generator measured in the same run, the within-class latent probe before/after
(erase mode: logistic and MLP), the fit time; writes before/after sample grids.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

import steering
from fairgen.generators import load_generator
from fairgen.plotting import save_grid
from fairgen.world.judges import load_judges

SETTINGS = [
    ("erase", "quantile"),
    ("balance", "quantile"),
    ("balance", "gaussian"),
    ("flip", "quantile"),
    ("flip", "gaussian"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fit-n", type=int, default=20_000)
    parser.add_argument("--eval-n", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="steering_out")
    parser.add_argument(
        "--generator", default="world-sprites-z128", help="world-sprites-32: the first, 6-d model"
    )
    args = parser.parse_args()
    out = Path(args.out)
    generator = load_generator(args.generator)
    judges = load_judges()
    referees = {"protected": judges["texture"], "class": judges["shape"]}

    tic = time.time()
    samples = steering.sample_and_label(
        generator, {"texture": judges["texture"].predict}, args.fit_n, args.seed, progress=False
    )
    label_seconds = time.time() - tic
    print(f"labelled {args.fit_n} samples in {label_seconds:.1f} s")

    z = generator.sample_latents(32, torch.Generator().manual_seed(99))
    y = torch.arange(32) % 4
    save_grid(
        generator.synthesize(z, y),
        out / "raw.png",
        nrow=8,
        title="raw generator (columns cycle the class)",
    )
    header = (
        f"{'mode':>8s} {'method':>9s} {'fit s':>6s} {'V raw':>6s} {'V':>6s} {'fid raw':>8s} "
        f"{'fid':>6s}  latent probe (within class)"
    )
    print(header)
    for mode, method in SETTINGS:
        tic = time.time()
        steerer = steering.LatentSteerer(mode, method).fit(
            samples.latents,
            samples.classes,
            samples.labels["texture"],
            num_classes=generator.num_classes,
        )
        fit_seconds = time.time() - tic
        report = steering.steering_report(
            generator, steerer, referees, n=args.eval_n, seed=args.seed + 1
        )
        probe = (
            f"before {report['probe_before']['accuracy']:.3f} (majority "
            f"{report['probe_before']['majority']:.3f})"
        )
        if "probe_after" in report:
            probe += (
                f"; after {report['probe_after']['accuracy']:.3f} (majority "
                f"{report['probe_after']['majority']:.3f})"
                f", MLP after {report['mlp_probe_after']['accuracy']:.3f}"
            )
        raw, steered = report["raw"], report["steered"]
        print(
            f"{mode:>8s} {method:>9s} {fit_seconds:6.2f} {raw['cramers_v']:6.3f} "
            f"{steered['cramers_v']:6.3f} "
            f"{raw['class_fidelity']:8.4f} {steered['class_fidelity']:6.4f}  {probe}",
            flush=True,
        )
        edited = steerer(z, y, torch.Generator().manual_seed(5))
        save_grid(
            generator.synthesize(edited, y),
            out / f"{mode}-{method}.png",
            nrow=8,
            title=f"{mode} ({method})",
        )
    print(f"grids in {out}/")


if __name__ == "__main__":
    main()

"""Which cells get a proposal component: a confirmed draw's cost against
``steering.confirmed.MIN_SHARE``.

    python benchmarks/confirmed_min_share.py                      # deep-96 texture+colour, 4,000
    labels, 2,000 per draw
    python benchmarks/confirmed_min_share.py --shares 1e-3,1e-4,1e-5 --n 20000 --draw-n 10000

A cell whose prior mass under the classifiers (``steerer.mass``) is below ``MIN_SHARE`` gets no
component of its own: its quota is left to the prior component, which finds a cell of mass Z once
in 1/Z syntheses. One fit, then one seeded draw per value (the value is read at draw time). Per
row: syntheses, labeler calls and latent draws per kept sample, the cells below the value, and the
draw's wall time (this shared CPU's).
"""

from __future__ import annotations

import argparse
import time

import torch
from steering_geometry import DeepGeometry, refit

import steering
import steering.confirmed
from fairgen.generators import load_generator
from fairgen.world.judges import load_judges
from steering.classifier import one_thread


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=4000, help="labelled samples to fit on")
    parser.add_argument("--draw-n", type=int, default=2000)
    parser.add_argument("--shares", default="1e-3,1e-5")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    base = load_generator("world-sprites-z128")
    generator = DeepGeometry(refit(base, ("texture", "colour")), "deep-96-tc")
    judges = load_judges()
    labelers = {k: judges[k].predict for k in ("texture", "colour")}
    with one_thread():
        steerer, _ = steering.fit_steerer(
            generator, labelers, args.n, method="confirmed", seed=args.seed, progress=False
        )
    mass = steerer.mass
    print(
        f"deep-96 texture+colour, {args.n} labels: smallest cell mass {float(mass.min()):.1e}, "
        "cells never labelled "
        f"{int((steerer.counts == 0).sum())}; plain rejection "
        f"{steerer.costs_['rejection_syntheses_per_kept']:.1f} per kept"
    )
    rows = []
    default = steering.confirmed.MIN_SHARE
    for share in [float(s) for s in args.shares.split(",")]:
        steering.confirmed.MIN_SHARE = share
        tic = time.time()
        try:
            draw = steerer.draw(
                generator, labelers, args.draw_n, seed=args.seed + 1, proposal="classifier"
            )
        except ValueError as error:  # out of budget: the row says so
            print(
                f"  MIN_SHARE {share:.0e}: {int((mass < share).sum())} cells left to the prior; "
                f"failed: {str(error)[:160]}"
            )
            rows.append({"min_share": share, "failed": str(error)})
            continue
        row = {
            "min_share": share,
            "cells_below": int((mass < share).sum()),
            **draw.cost(),
            "seconds": time.time() - tic,
        }
        rows.append(row)
        print(
            f"  MIN_SHARE {share:.0e}: {row['cells_below']} cells left to the prior; "
            f"{row['syntheses_per_kept']:.2f} syntheses, "
            f"{row['labeler_calls_per_kept']:.2f} labeler calls, "
            f"{row['latent_draws_per_kept']:.0f} latent draws per kept; "
            f"{row['seconds']:.0f} s"
        )
    steering.confirmed.MIN_SHARE = default
    return rows


if __name__ == "__main__":
    main()

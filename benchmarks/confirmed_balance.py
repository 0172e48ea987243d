"""Labeler-confirmed balance on the embedded default: cost against within-cell fidelity, per cap.

    python benchmarks/confirmed_balance.py                        # texture, 20,000 labels, 4,000
    per draw
    python benchmarks/confirmed_balance.py --protected texture,colour --caps 1,1.5,exact
    python benchmarks/confirmed_balance.py --quick                # 6,000 labels, 2,000 per draw

One ``fit_steerer(method="confirmed")`` on the world's judges, then, in the same run, one draw per
row: the classifier proposal at each ``--caps`` value (``exact``: no cap), and plain image-space
rejection (``prior``: the limit, exact at any cost). Per row: syntheses, labeler calls and latent
draws per kept sample; V(class, protected) in the labeler's terms (the judges are the labeler, so
this is also the judged V) per attribute and jointly; class fidelity (the shape judge); and the
within-cell distortion: inside every (class, protected) cell, the distance between the kept
samples' other factors (colour when not protected: total variation; size, x, y, rotation, hue:
Kolmogorov-Smirnov) and the prior's, read from the generator's own render factors, averaged over
cells and factors. ``floor`` is the same distance for a fresh prior sample of the same cell sizes:
what sampling noise alone gives. ``TV bound``: the cap's within-cell total variation in the latent
itself (a bound for every factor), computed from the judged prior samples' weights at the start of a
draw, free of the draw's sampling noise. Every row is one seeded draw; timings are this shared
CPU's.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy.stats import ks_2samp

import steering
from fairgen.generators import load_generator
from fairgen.world import CATEGORICAL, CLASS_FACTOR, CONTINUOUS
from fairgen.world.judges import load_judges
from plumbing.tables import cramers_v
from steering.classifier import one_thread


def within_cell_distance(
    factors: dict,
    cells: np.ndarray,
    prior_factors: dict,
    prior_cells: np.ndarray,
    names: list[str],
    min_count: int = 30,
) -> float:
    """Mean over cells (weighted by size) and factors of TV (categorical) / KS (continuous) to the
    prior's cell."""
    total, weight = 0.0, 0
    for c in np.unique(cells):
        mine, theirs = cells == c, prior_cells == c
        if mine.sum() < min_count or theirs.sum() < min_count:
            continue
        distances = []
        for name in names:
            a, b = factors[name][mine], prior_factors[name][theirs]
            if name in CATEGORICAL:
                k = int(max(a.max(), b.max())) + 1
                distances.append(
                    0.5
                    * np.abs(
                        np.bincount(a, minlength=k) / len(a) - np.bincount(b, minlength=k) / len(b)
                    ).sum()
                )
            else:
                distances.append(ks_2samp(a, b).statistic)
        total += float(np.mean(distances)) * int(mine.sum())
        weight += int(mine.sum())
    return total / max(weight, 1)


def factors_of(generator, z, y) -> dict:
    with torch.no_grad():
        return {k: v.cpu().numpy() for k, v in generator.factors_from_latents(z.float(), y).items()}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generator", default="world-sprites-z128")
    parser.add_argument(
        "--protected", default="texture", help="comma-separated world factors (jointly)"
    )
    parser.add_argument("--n", type=int, default=20_000, help="labelled samples to fit on")
    parser.add_argument("--draw-n", type=int, default=4000, help="samples per draw (one row each)")
    parser.add_argument(
        "--prior-n",
        type=int,
        default=60_000,
        help="judged prior samples: the within-cell reference",
    )
    parser.add_argument(
        "--caps", default="1,1.25,1.5,2,3,exact", help="caps to compare (exact: none)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--budget",
        type=int,
        default=30,
        help="syntheses per sample a draw may spend before it gives up",
    )
    parser.add_argument(
        "--quick", action="store_true", help="6,000 labels, 2,000 per draw, 30,000 prior samples"
    )
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if args.quick:
        args.n, args.draw_n, args.prior_n = 6000, 2000, 30_000
    torch.set_num_threads(1)
    names = args.protected.split(",")
    generator = load_generator(args.generator)
    judges = load_judges()
    labelers = {name: judges[name].predict for name in names}
    labeler = labelers  # by name, one attribute or several
    start = time.perf_counter()
    steerer, _ = steering.fit_steerer(
        generator, labeler, n=args.n, method="confirmed", seed=args.seed, progress=False
    )
    fit_s = time.perf_counter() - start
    print(
        f"fit on {args.n} labels in {fit_s:.0f} s; costs at fit: "
        f"{json.dumps(steerer.costs_, default=float)}"
    )

    rng = torch.Generator().manual_seed(args.seed + 5)
    z = generator.sample_latents(args.prior_n, generator=rng)
    y = torch.randint(generator.num_classes, (args.prior_n,), generator=rng)
    prior = factors_of(generator, z, y)
    with one_thread():
        prior_labels = {
            name: np.concatenate(
                [
                    judges[name]
                    .predict(generator.synthesize(z[i : i + 2048], y[i : i + 2048]))
                    .cpu()
                    .numpy()
                    for i in range(0, len(z), 2048)
                ]
            )
            for name in names
        }
    others = [k for k in ("colour", *CONTINUOUS) if k not in names]

    def cells_of(classes, labels):
        joint = np.asarray(classes)
        for name in names:
            joint = joint * len(CATEGORICAL[name]) + np.asarray(labels[name])
        return joint

    prior_cells = cells_of(y.numpy(), prior_labels)
    cells_per_class = int(np.prod([len(CATEGORICAL[name]) for name in names]))
    half = args.prior_n // 2  # reference: the first half; the floor is drawn from the second
    reference = {k: v[:half] for k, v in prior.items()}
    rows = []
    variants = [("prior", None)] + [
        ("classifier", None if c == "exact" else float(c)) for c in args.caps.split(",")
    ]
    for proposal, cap in variants:
        config = {**steerer.config(), "cap": cap if proposal == "classifier" else steerer.cap}
        variant = steering.ConfirmedSteerer.from_state(config, steerer.tensors())
        tv = (
            0.0
            if proposal == "prior"
            else steerer.within_cell_tv(z, y, torch.as_tensor(prior_cells % cells_per_class), cap)
        )
        start = time.perf_counter()
        try:
            draw = variant.draw(
                generator,
                labeler,
                n=args.draw_n,
                seed=args.seed + 1,
                proposal=proposal,
                max_syntheses=args.budget * args.draw_n,
            )
        except ValueError as error:  # over the budget: report the row as such
            print(f"{proposal} cap {cap}: {str(error)[:200]}", flush=True)
            rows.append(
                {
                    "proposal": proposal,
                    "cap": "exact" if cap is None else cap,
                    "over_budget": args.budget,
                    "tv_bound": tv,
                }
            )
            continue
        seconds = time.perf_counter() - start
        kept = factors_of(generator, draw.latents, draw.classes)
        cells = cells_of(draw.classes.numpy(), {k: draw.labels[k].numpy() for k in names})
        # the floor: a prior sample (second half) with the same number per cell as the draw
        pick = []
        floor_rng = np.random.default_rng(args.seed)
        for c, count in zip(*np.unique(cells, return_counts=True), strict=True):
            pool = half + np.flatnonzero(prior_cells[half:] == c)
            pick.append(floor_rng.choice(pool, size=min(count, len(pool)), replace=False))
        pick = np.concatenate(pick)
        floor = within_cell_distance(
            {k: v[pick] for k, v in prior.items()},
            prior_cells[pick],
            reference,
            prior_cells[:half],
            others,
        )
        distance = within_cell_distance(kept, cells, reference, prior_cells[:half], others)
        with torch.no_grad():
            shape = judges[CLASS_FACTOR].predict(draw.images).cpu()
        v = {name: cramers_v(draw.classes.numpy(), draw.labels[name].numpy()) for name in names}
        if len(names) > 1:
            v["joint"] = cramers_v(
                draw.classes.numpy(),
                cells_of(
                    np.zeros(len(cells), dtype=np.int64), {k: draw.labels[k].numpy() for k in names}
                ),
            )
        row = {
            "proposal": proposal,
            "cap": "exact" if cap is None and proposal == "classifier" else cap,
            "syntheses_per_kept": draw.syntheses_per_kept,
            "labeler_calls_per_kept": draw.labeler_calls_per_kept,
            "latent_draws_per_kept": draw.latent_draws_per_kept,
            "V": v,
            "class_fidelity": float((shape == draw.classes).float().mean()),
            "within_cell": distance,
            "tv_bound": tv,
            "floor": floor,
            "seconds": seconds,
            "kept": len(draw),
        }
        rows.append(row)
        print(json.dumps(row, default=float), flush=True)
    raw_v = {name: cramers_v(y.numpy(), prior_labels[name]) for name in names}
    print(
        f"\n{args.generator}, protected {args.protected}: V raw "
        f"{', '.join(f'{k} {x:.3f}' for k, x in raw_v.items())}; "
        f"{args.n} labels, fit {fit_s:.0f} s; draws of {args.draw_n}"
    )
    print(
        "| proposal | cap | syntheses / kept | labeler calls / kept | latent draws / kept | V "
        "(labeler = judge) | "
        "fidelity | within-cell distance | floor | TV bound | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if "over_budget" in r:
            print(
                f"| {r['proposal']} | {r['cap']} | > {r['over_budget']} (over budget) | | | | | | "
                f"| {r['tv_bound']:.4f} | |"
            )
            continue
        vs = " / ".join(f"{x:.3f}" for x in r["V"].values())
        print(
            f"| {r['proposal']} | {r['cap'] if r['cap'] is not None else '-'} | "
            f"{r['syntheses_per_kept']:.2f} | "
            f"{r['labeler_calls_per_kept']:.2f} | {r['latent_draws_per_kept']:.1f} | {vs} | "
            f"{r['class_fidelity']:.3f} | "
            f"{r['within_cell']:.4f} | {r['floor']:.4f} | {r['tv_bound']:.4f} | {r['seconds']:.1f} "
            "|"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"fit_s": fit_s, "costs": steerer.costs_, "raw_v": raw_v, "rows": rows},
                handle,
                indent=2,
                default=float,
            )
    return rows


if __name__ == "__main__":
    main()

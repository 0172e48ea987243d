"""Syntheses per kept anchor of a labeler-confirmed stream, batch by batch against block by block.

    python benchmarks/confirmed_stream_cost.py                 # embedded default, texture, batch
    128, 32 steps
    python benchmarks/confirmed_stream_cost.py --protected texture,colour

One ``fit_steerer(method="confirmed")`` on the world's judges (8,000 labels, as
``stream_speed.py``),
then the same spec streamed twice for ``--steps`` steps: each batch drawn alone (block of 1, the
stream before blocks) and in blocks (``fairgen.stream.CONFIRMED_BLOCK`` anchors at once, dealt into
exact batches). Per row: syntheses, labeler calls and latent draws per kept anchor over all steps,
whether every batch met its quotas, and the wall time per step (this shared CPU's). Use a multiple
of
the block's batches for ``--steps``: a block's cost is paid at its first step.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

import fairgen.stream
import steering
from fairgen.generators import load_generator
from fairgen.stream import Stream, make_spec
from fairgen.world.judges import load_judges
from steering.classifier import one_thread


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--generator", default="world-sprites-z128")
    parser.add_argument(
        "--protected", default="texture", help="comma-separated world factors (jointly)"
    )
    parser.add_argument("--n", type=int, default=8000, help="labelled samples to fit on")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--blocks",
        default=None,
        help="comma-separated CONFIRMED_BLOCK values to compare "
        "(default: the batch itself, i.e. batch by batch, and the library's default)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    generator = load_generator(args.generator)
    judges = load_judges(device=generator.device)
    names = args.protected.split(",")
    labelers = {name: judges[name].predict for name in names}
    with one_thread():
        steerer, _ = steering.fit_steerer(
            generator, labelers, args.n, method="confirmed", seed=args.seed, progress=False
        )
    folder = tempfile.TemporaryDirectory()
    card = steering.save_card(
        steerer,
        f"{folder.name}/card",
        {
            "generator": {"name": generator.name, "sha256": generator.checksum},
            "labelers": {name: f"world:{name}" for name in names},
        },
    )
    spec = make_spec(
        generator,
        eraser=card,
        augment="none",
        views={"kinds": ["anchor", "neighbour"]},
        seed=args.seed,
    )
    print(
        f"{args.generator}, protected {names}, batch {args.batch_size}, {args.steps} steps; fit's "
        "trial draw "
        f"{steerer.costs_['syntheses_per_kept']:.2f} syntheses per kept, plain rejection "
        f"{steerer.costs_['rejection_syntheses_per_kept']:.2f}"
    )
    rows = []
    default = fairgen.stream.CONFIRMED_BLOCK
    sizes = (
        [args.batch_size, default]
        if args.blocks is None
        else [int(b) for b in args.blocks.split(",")]
    )
    for block in sizes:
        label = "batch by batch" if block <= args.batch_size else f"blocks of {block}"
        fairgen.stream.CONFIRMED_BLOCK = block
        stream = Stream.from_spec(spec, args.batch_size, generator=generator, labeler=labelers)
        k = stream.confirmed_block(args.batch_size)
        totals = {"syntheses": 0.0, "labeler_calls": 0.0, "latent_draws": 0.0}
        exact = True
        start = time.perf_counter()
        for _ in range(args.steps):
            with one_thread():
                batch = stream.next_batch()
            cost = stream.last_draw_cost_
            for key in totals:
                totals[key] += cost[key]
            anchors = batch["views"][:, 0]
            cells = steerer._joint(
                {
                    a: (batch["labels"] if a == steerer.keep_ else labelers[a](anchors).cpu())
                    for a in steerer.attrs_
                }
            )
            seen = torch.bincount(
                batch["labels"].cpu() * cells.new_tensor(steerer.cell_target.numel()) + cells,
                minlength=steerer.cell_target.numel() * steerer.num_classes_,
            )
            exact &= torch.equal(
                seen.view(steerer.num_classes_, -1),
                steerer.quotas(args.batch_size, stream._class_probs),
            )
        seconds = time.perf_counter() - start
        kept = args.steps * args.batch_size
        row = {
            "mode": label,
            "k": k,
            **{f"{key}_per_kept": value / kept for key, value in totals.items()},
            "every_batch_exact": bool(exact),
            "seconds_per_step": seconds / args.steps,
        }
        rows.append(row)
        print(
            f"  {label:<16} k={k:<3} {row['syntheses_per_kept']:.2f} syntheses, "
            f"{row['labeler_calls_per_kept']:.2f} labeler "
            f"calls, {row['latent_draws_per_kept']:.0f} latent draws per kept anchor; every batch "
            f"exact: {exact}; "
            f"{row['seconds_per_step']:.2f} s per step"
        )
    fairgen.stream.CONFIRMED_BLOCK = default
    folder.cleanup()
    return rows


if __name__ == "__main__":
    main()

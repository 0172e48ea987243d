"""``fairgen world``: a labelled grid of images from the embedded world."""

from __future__ import annotations

from .common import (
    add_command,
    add_grid_options,
    add_out,
    add_seed,
    out_folder,
    unit_float,
    write_grids,
    wrote,
)


def add_parser(sub) -> None:
    p = add_command(sub, "world", "draw a labelled grid of world images")
    add_grid_options(p)
    p.add_argument(
        "--resolution",
        type=int,
        default=32,
        choices=[16, 32, 64, 128, 256],
        help="image side (pixels)",
    )
    p.add_argument(
        "--bias",
        type=unit_float,
        default=0.9,
        help="strength tying the protected factor to the class, in [0, 1]",
    )
    add_seed(p)
    add_out(p, ".", "world.png (world-000.png, ... when the images fill several pages)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..world import World, captions

    out = out_folder(args)
    sample = World(args.resolution).sample(args.n, seed=args.seed, bias=args.bias)
    title = (
        f"world, {args.resolution} px, bias {args.bias} (measured Cramér's V "
        f"{sample.cramers_v():.2f})"
    )
    print(
        wrote(
            write_grids(
                sample.images, out, "world", args.per_page, captions=captions(sample), title=title
            )
        )
    )

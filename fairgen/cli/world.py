"""``fairgen world``: a labelled grid of images from the embedded world."""

from __future__ import annotations

from .common import add_command, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "world", "draw a labelled grid of world images")
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--resolution", type=int, default=32, help="16, 32, 64, 128 or 256 (pixels)")
    p.add_argument("--bias", type=float, default=0.9, help="strength tying the protected factor to the class, in [0, 1]")
    add_seed(p)
    p.add_argument("--out", default="world.png", help="PNG to write")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..plotting import save_grid
    from ..world import World, captions

    sample = World(args.resolution).sample(args.n, seed=args.seed, bias=args.bias)
    title = f"world, {args.resolution} px, bias {args.bias} (measured Cramér's V {sample.cramers_v():.2f})"
    print(f"wrote {save_grid(sample.images, args.out, captions=captions(sample), title=title)}")

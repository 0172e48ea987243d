"""``fairgen sample``: a grid of images from any generator."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_generator,
    add_generator_options,
    add_seed,
    generator_options,
)


def add_parser(sub) -> None:
    p = add_command(sub, "sample", "draw a grid of images from a generator")
    add_generator(p)
    add_generator_options(p)
    p.add_argument("--n", type=int, default=64, help="number of images")
    p.add_argument("--class", dest="cls", type=int, default=None, help="one class for all (default: cycle through them)")
    add_seed(p)
    add_device(p)
    p.add_argument("--out", default="samples.png", help="PNG to write")
    p.set_defaults(func=run)


def run(args) -> None:
    import torch

    from ..generators import load_generator
    from ..plotting import save_grid

    generator = load_generator(args.generator, device=args.device, **generator_options(args))
    rng = torch.Generator().manual_seed(args.seed)
    z = generator.sample_latents(args.n, generator=rng)
    y = None
    if generator.num_classes:
        y = torch.arange(args.n) % generator.num_classes if args.cls is None else torch.full((args.n,), args.cls)
    images = generator.synthesize(z, y)
    print(f"wrote {save_grid(images, args.out, title=f'{generator.name}, seed {args.seed}')}")

"""``fairgen sample``: a grid of images from any generator."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_generator,
    add_generator_options,
    add_grid_options,
    add_out,
    add_seed,
    generator_options,
    non_negative_int,
    out_folder,
    write_grids,
    wrote,
)


def add_parser(sub) -> None:
    p = add_command(sub, "sample", "draw a grid of images from a generator")
    add_generator(p)
    add_generator_options(p)
    p.add_argument(
        "--list", action="store_true", help="print the registered generator names and exit"
    )
    add_grid_options(p)
    p.add_argument(
        "--class",
        dest="cls",
        type=non_negative_int,
        default=None,
        help="one class index for all images (default: cycle through the classes)",
    )
    add_seed(p)
    add_device(p)
    add_out(p, ".", "samples.png (samples-000.png, ... when the images fill several pages)")
    p.set_defaults(func=run)


def run(args) -> None:
    import torch

    from ..generators import list_generators, load_generator

    if args.list:
        print("\n".join(list_generators()))
        return
    out = out_folder(args)
    generator = load_generator(args.generator, device=args.device, **generator_options(args))
    rng = torch.Generator().manual_seed(args.seed)
    z = generator.sample_latents(args.n, generator=rng)
    y = None
    if args.cls is not None and not generator.num_classes:
        raise ValueError(
            f"--class {args.cls}: {generator.name} is unconditional (it has no classes)"
        )
    if generator.num_classes:
        if args.cls is not None and args.cls >= generator.num_classes:
            raise ValueError(
                f"--class must be in [0, {generator.num_classes}) for {generator.name}, got "
                f"{args.cls}"
            )
        y = (
            torch.arange(args.n) % generator.num_classes
            if args.cls is None
            else torch.full((args.n,), args.cls)
        )
    images = torch.cat(
        [
            generator.synthesize(z[i : i + 256], None if y is None else y[i : i + 256])
            for i in range(0, args.n, 256)
        ]
    )
    stem = getattr(args, "stem", "samples")
    print(
        wrote(
            write_grids(
                images, out, stem, args.per_page, title=f"{generator.name}, seed {args.seed}"
            )
        )
    )

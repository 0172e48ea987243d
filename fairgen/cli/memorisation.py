"""``fairgen memorisation``: does a generator copy its training images? Measured in an encoder's
feature space."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_generator,
    add_generator_options,
    add_n,
    add_out,
    add_seed,
    generator_options,
    positive_int,
)


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "memorisation",
        "check whether a generator's samples are near-copies of its training images",
        "Nearest-neighbour distances, in a named encoder's feature space, from generated samples "
        "and "
        "from held-out real images to the generator's training images (pixel distance means little "
        "for photographs). Writes report.json/.md and near_copies.png, the closest pairs side by "
        "side.",
    )
    add_generator(p)
    add_generator_options(p)
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder.safetensors from `fairgen train`, or torchvision:ARCH / timm:ARCH",
    )
    p.add_argument(
        "--encoder-weights", default=None, help="local weights file for a torchvision/timm encoder"
    )
    p.add_argument(
        "--image-size",
        type=positive_int,
        default=224,
        help="input side of a torchvision/timm encoder",
    )
    p.add_argument(
        "--train-data",
        required=True,
        help="the generator's training images: folder or .csv/.parquet manifest",
    )
    p.add_argument(
        "--heldout-data", required=True, help="real images the generator never saw, same kinds"
    )
    add_n(p, 1000, "generated samples")
    p.add_argument(
        "--pairs", type=positive_int, default=16, help="closest pairs shown in near_copies.png"
    )
    add_seed(p)
    add_device(p)
    add_out(p, "memorisation", "report.json, report.md and near_copies.png")
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print the whole report (report.md) rather than the verdict",
    )
    p.set_defaults(func=run)


def run(args) -> None:
    from ..audit import memorisation_in_feature_space

    report = memorisation_in_feature_space(
        args.generator,
        args.encoder,
        args.train_data,
        args.heldout_data,
        args.out,
        n=args.n,
        encoder_weights=args.encoder_weights,
        image_size=args.image_size,
        generator_options=generator_options(args),
        pairs=args.pairs,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    from .audit import _print

    _print(report, args.out, args.verbose)  # near_copies.png, the closest pairs, is beside it

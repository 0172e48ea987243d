"""``fairgen stream``: write a stream card, or export samples of one to disk."""

from __future__ import annotations

from .common import (
    add_command,
    add_confirming_labelers,
    add_device,
    add_entry_point_trust,
    add_generator,
    add_generator_options,
    add_list,
    add_n,
    add_seed,
    allowed_entry_points,
    confirming_labelers,
    generator_options,
    positive_int,
    refuse_with,
)

VIEW_KINDS = (
    "anchor",
    "neighbour",
    "sibling",
    "renoise",
    "flip",
    "walk",
)  # fairgen.views.VIEW_KINDS, without torch
# flags that only shape a new card (--new), and those that only export one (--spec --export)
CARD_FLAGS = (
    "--generator",
    "--truncation",
    "--classes",
    "--eraser",
    "--walks",
    "--views",
    "--sigma",
    "--augment",
    "--refresh",
    "--resolution",
    "--seed",
)
EXPORT_FLAGS = (
    "--spec",
    "--export",
    "--n",
    "--format",
    "--batch-size",
    "--labeler",
    "--keep-labeler",
    "--allow-entry-point",
    "--trust-entry-points",
)


def add_parser(sub) -> None:
    p = add_command(sub, "stream", "write a stream card, or export samples of one to disk")
    p.add_argument(
        "--new",
        metavar="CARD",
        help="write a new stream card (JSON) here; local files it names are "
        "placed beside it, so the card's folder is portable",
    )
    add_generator(p)
    add_generator_options(p)
    p.add_argument(
        "--eraser",
        default=None,
        help="eraser card from `fairgen steer`: its .json, or the --out folder holding "
        "eraser_card.json (optional)",
    )
    p.add_argument(
        "--walks", default=None, help="walk card from `fairgen walks learn` (needed by walk views)"
    )
    add_list(
        p,
        "--views",
        "views of each sample, at least 2",
        default=["anchor", "neighbour"],
        choices=VIEW_KINDS,
        metavar="VIEW",
    )
    p.add_argument("--sigma", type=float, default=0.5, help="latent-neighbour noise scale")
    p.add_argument(
        "--renoise",
        type=float,
        default=0.25,
        help="renoise views: the share a in (0, 1] of fresh noise, sqrt(1-a) z + sqrt(a) e",
    )
    p.add_argument("--augment", default="light", help="augmentation preset: simclr, light, none")
    p.add_argument(
        "--refresh", type=float, default=1.0, help="share of each batch freshly generated, (0, 1]"
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="output side in pixels (default: the generator's)",
    )
    p.add_argument("--spec", help="stream card to read")
    p.add_argument("--export", metavar="DIR", help="write samples here")
    add_n(p, 1000, "samples to export")
    p.add_argument("--format", default="png", choices=["png", "webdataset"], help="export format")
    p.add_argument(
        "--batch-size", type=positive_int, default=256, help="samples generated per step"
    )
    add_confirming_labelers(p)
    add_seed(p)
    add_device(p)
    add_entry_point_trust(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from ..generators import load_generator
    from ..packaging import make_spec
    from ..spec import StreamSpec
    from ..stream import Stream

    if args.new:
        refuse_with(args, "--new", EXPORT_FLAGS, "--new writes a card; export with --spec CARD")
        if len(args.views) < 2:
            raise ValueError(
                f"--views needs at least 2 views (a contrastive pair), got {','.join(args.views)}"
            )
        for kind, flag, source in (
            ("flip", "--eraser", "steer"),
            ("walk", "--walks", "walks learn"),
        ):
            if kind in args.views and not getattr(args, flag[2:]):
                raise ValueError(f"--views {kind} needs {flag} CARD (from `fairgen {source}`)")
        options = generator_options(args)
        generator = load_generator(args.generator, device=args.device, **options)
        if hasattr(generator, "card_options"):  # a sampler's every setting, pinned in the card
            options = generator.card_options()
        views = {"kinds": list(args.views), "sigma": args.sigma, "truncate": 2.0}
        views["renoise"] = args.renoise
        spec = make_spec(
            generator,
            eraser=_eraser(args.eraser),
            walks=args.walks,
            views=views,
            augment=args.augment,
            seed=args.seed,
            refresh=args.refresh,
            resolution=args.resolution or generator.resolution,
            source=args.generator,
            generator_options=options,
        )
        print(f"wrote {spec.save(args.new)}")
        return
    if not args.spec or not args.export:
        raise ValueError(
            "give --new OUT to write a spec, or --spec CARD --export DIR to write samples"
        )
    refuse_with(args, "--spec", CARD_FLAGS, "the card already fixes these; write a new one")
    from ..export import export_stream

    spec = StreamSpec.load(args.spec, allow_entry_points=allowed_entry_points(args))
    stream = Stream.from_spec(spec, args.batch_size, args.device, labeler=confirming_labelers(args))
    print(
        f"wrote {export_stream(stream, args.export, args.n, args.format, progress=not args.quiet)}"
    )


def _eraser(path: str | None) -> str | None:
    """``--eraser``: a card's .json (or stem), or the folder `fairgen steer --out` wrote it into."""
    from pathlib import Path

    from .steer import CARD

    if path is not None and Path(path).is_dir():
        return str(Path(path) / f"{CARD}.json")
    return path

"""``fairgen stream``: write a stream card, or export samples of one to disk."""

from __future__ import annotations

from .common import (
    add_command,
    add_confirming_labelers,
    add_device,
    add_entry_point_trust,
    add_generator,
    add_generator_options,
    add_seed,
    allowed_entry_points,
    confirming_labelers,
    generator_options,
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
    p.add_argument("--eraser", default=None, help="eraser card from `fairgen steer` (optional)")
    p.add_argument(
        "--walks", default=None, help="walk card from `fairgen walks learn` (needed by walk views)"
    )
    p.add_argument(
        "--views",
        default="anchor,neighbour",
        help="comma list of anchor|neighbour|flip|walk (>= 2)",
    )
    p.add_argument("--sigma", type=float, default=0.5, help="latent-neighbour noise scale")
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
    p.add_argument("--n", type=int, default=1000, help="samples to export")
    p.add_argument("--format", default="png", choices=["png", "webdataset"], help="export format")
    p.add_argument("--batch-size", type=int, default=256, help="samples generated per step")
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
        options = generator_options(args)
        generator = load_generator(args.generator, device=args.device, **options)
        views = {"kinds": args.views.split(","), "sigma": args.sigma, "truncate": 2.0}
        spec = make_spec(
            generator,
            eraser=args.eraser,
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
    from ..export import export_stream

    spec = StreamSpec.load(args.spec, allow_entry_points=allowed_entry_points(args))
    stream = Stream.from_spec(spec, args.batch_size, args.device, labeler=confirming_labelers(args))
    print(
        f"wrote {export_stream(stream, args.export, args.n, args.format, progress=not args.quiet)}"
    )

"""``fairgen review``: write images for a person to label, or read their labels back as a
verified set (the labeler's error, measured)."""

from __future__ import annotations

from .common import add_command, add_device, add_seed, positive_int


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "review",
        "write generated images for a person to label, or read the labels back",
        "Two steps. Write: `fairgen review --card CARD --labeler L --n 200 --out review/` draws "
        "images so that every (class, labeler output) cell is covered and writes them with a "
        "static page (review/index.html: open it in a browser, label, save labels.csv). Read: "
        "`fairgen review --read labels.csv --review review/ --out verified.json` writes the "
        "verified set that `fairgen audit --verified` (and steering) use.",
    )
    p.add_argument("--card", default=None, help="write: the steering card (its .json)")
    p.add_argument(
        "--labeler",
        default=None,
        help="write: the labeler whose error is measured (default: the card's, when it names "
        "a world: labeler; a card never runs code it names)",
    )
    p.add_argument(
        "--generator",
        default=None,
        help="write: generator to use instead of the one the card names (an entry point runs code)",
    )
    p.add_argument("--n", type=positive_int, default=200, help="write: images to review")
    p.add_argument(
        "--min-per-cell",
        type=positive_int,
        default=5,
        help="write: images from each (class, labeler output) cell (all of a smaller one)",
    )
    p.add_argument(
        "--pool",
        type=positive_int,
        default=None,
        help="write: images drawn and labelled to pick from (default max(2000, 10 n))",
    )
    p.add_argument(
        "--values",
        default=None,
        help="write: comma list naming the attribute's values (default: the labeler's names)",
    )
    p.add_argument(
        "--read", default=None, metavar="CSV", help="read: the labels CSV the page saved"
    )
    p.add_argument("--review", default=None, metavar="DIR", help="read: the review folder")
    p.add_argument(
        "--out",
        default=None,
        help="the review folder when writing (default: review), the verified set when reading "
        "with --read (verified.json)",
    )
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def run(args) -> None:
    from plumbing.files import printable

    if args.read is not None:
        if args.card is not None or args.review is None:
            raise ValueError("--read LABELS.csv goes with --review DIR (and no --card)")
        from ..review import verified_from_labels
        from ..verified import write_verified

        verified = verified_from_labels(args.review, args.read)
        out = write_verified(verified, args.out or "verified.json")
        agree = float((verified.outputs == verified.truths).mean())
        print(
            printable(
                f"{len(verified)} verified labels of {verified.attribute!r} "
                f"({verified.provenance['labelled']}); the labeler agreed on {agree:.1%}"
            )
        )
        print(printable(f"wrote {out}"))
        return
    if args.card is None:
        raise ValueError(
            "give --card CARD to write a review, or --read CSV --review DIR to read one"
        )
    from ..review import write_review

    out = args.out or "review"
    values = [v.strip() for v in args.values.split(",")] if args.values else None
    review = write_review(
        args.card,
        out,
        labeler=args.labeler,
        n=args.n,
        min_per_cell=args.min_per_cell,
        pool=args.pool,
        seed=args.seed,
        generator=args.generator,
        values=values,
        device=args.device,
    )
    print(
        printable(
            f"{len(review['items'])} images of {review['attribute']!r} to review, drawn from "
            f"{review['pool']} labelled by {review['labeler']['name']}; per (class, output) cell:"
        )
    )
    for c, row in enumerate(review["drawn_counts"]):
        cells = ", ".join(
            f"{v}={d}/{p}"
            for v, d, p in zip(review["values"], row, review["pool_counts"][c], strict=True)
        )
        print(printable(f"  class {c}: {cells}"))
    if review["empty_cells"]:
        print(printable(f"  empty in the pool (raise --pool): {review['empty_cells']}"))
    print(printable(f"wrote {out}/ : open {out}/index.html, label, save labels.csv"))

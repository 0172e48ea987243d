"""``fairgen audit``: leakage and group fairness of an encoder's features, on the world or your data."""

from __future__ import annotations

from .common import add_command, add_device, add_seed

DATA_DEFAULTS = dict(
    probe="lda", n_permutations=199, n_bootstrap=500, pca=None, n_repeats=1, max_iter=1000
)


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "audit",
        "audit an encoder for protected-attribute leakage and group fairness",
        "Audit an encoder for protected-attribute leakage and group fairness. On --data world the "
        "defaults are the demo's, so a demo row is reproduced; on your own data (an image folder, a "
        ".csv/.parquet manifest or exported WebDataset shards) name --target and --protected columns.",
    )
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder.safetensors from `fairgen train`, or torchvision:ARCH / timm:ARCH with --encoder-weights",
    )
    p.add_argument(
        "--encoder-weights", default=None, help="local weights file for a torchvision/timm encoder"
    )
    p.add_argument(
        "--image-size", type=int, default=224, help="input side of a torchvision/timm encoder"
    )
    p.add_argument(
        "--data",
        default="world",
        help="'world', an image folder, a .csv/.parquet manifest, or WebDataset shards",
    )
    p.add_argument("--target", default=None, help="column the target probe predicts (your data)")
    p.add_argument(
        "--protected",
        nargs="+",
        default=None,
        metavar="COL",
        help="protected column(s); each is audited, and their intersection when there are several",
    )
    p.add_argument(
        "--test-fraction", type=float, default=0.5, help="share of your data held out for the audit"
    )
    p.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="resize your images to this side (default: the first image's)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=None,
        help="refuse (before decoding) an image declaring more pixels than this (default 40,000,000)",
    )
    p.add_argument(
        "--probe",
        choices=["linear", "lda", "mlp"],
        default=None,
        help="leakage probe (default: linear on the world, as the demo; lda on your data, the fastest)",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=None,
        help="permutation refits for the leakage p-value (default 199)",
    )
    p.add_argument(
        "--bootstrap",
        type=int,
        default=None,
        help="bootstrap resamples for the fairness CIs (world 300, data 500)",
    )
    p.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="repeats of 5-fold cross-validation for leakage (default 1)",
    )
    p.add_argument(
        "--pca", type=int, default=None, help="PCA components inside each fold (world default 32)"
    )
    p.add_argument(
        "--max-iter",
        type=int,
        default=None,
        help="iteration budget of the linear/mlp probe (world default 100)",
    )
    p.add_argument("--jobs", type=int, default=1, help="threads for the permutation refits")
    p.add_argument(
        "--bias",
        type=float,
        default=0.9,
        help="world: bias of the split the target probe is fitted on",
    )
    p.add_argument(
        "--n-probe",
        type=int,
        default=4000,
        help="world: labelled images the target probe is fitted on",
    )
    p.add_argument("--n-test", type=int, default=4000, help="world: balanced test images")
    add_seed(p)
    add_device(p)
    p.add_argument(
        "--erase-with",
        metavar="SPEC",
        help="world: also audit the features after an eraser fitted on this (steered) stream's images",
    )
    p.add_argument(
        "--eraser-n", type=int, default=4096, help="images the feature eraser is fitted on"
    )
    p.add_argument(
        "--out",
        default="audit",
        help="report folder (report.json, report.md, PNGs; erased/ with --erase-with)",
    )
    p.set_defaults(func=run)


def _settings(args, defaults: dict) -> dict:
    given = {
        "probe": args.probe,
        "n_permutations": args.permutations,
        "n_bootstrap": args.bootstrap,
        "pca": args.pca,
        "n_repeats": args.repeats,
        "max_iter": args.max_iter,
    }
    return {k: defaults[k] if v is None else v for k, v in given.items()}


def run(args) -> None:
    if args.data == "world":
        from ..world.audit import WORLD_AUDIT_DEFAULTS, audit_encoder_on_world

        if args.target or args.protected:
            raise ValueError(
                "--target/--protected name columns of your own --data; the world audits its class and protected factor"
            )
        audit_encoder_on_world(
            args.encoder,
            args.out,
            device=args.device,
            seed=args.seed,
            bias=args.bias,
            n_probe=args.n_probe,
            n_test=args.n_test,
            erase_with=args.erase_with,
            eraser_n=args.eraser_n,
            n_jobs=args.jobs,
            progress=not args.quiet,
            **_settings(args, WORLD_AUDIT_DEFAULTS),
        )
        return
    if args.erase_with:
        raise ValueError("--erase-with is available on --data world only")
    if not args.target or not args.protected:
        raise ValueError(
            f"--data {args.data}: name the --target column and at least one --protected column"
        )
    from ..audit import audit_encoder_on_data

    settings = _settings(args, DATA_DEFAULTS)
    settings.pop("max_iter")
    report = audit_encoder_on_data(
        args.encoder,
        args.data,
        args.target,
        args.protected,
        args.out,
        encoder_weights=args.encoder_weights,
        image_size=args.image_size,
        resolution=args.resolution,
        test_fraction=args.test_fraction,
        seed=args.seed,
        max_pixels=args.max_pixels,
        n_jobs=args.jobs,
        device=args.device,
        progress=not args.quiet,
        **settings,
    )
    from plumbing.files import printable

    print(printable(report.to_markdown()))  # column names and paths come from the user's files
    print(f"wrote {args.out}")

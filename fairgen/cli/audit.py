"""``fairgen audit``: leakage and group fairness of an encoder's features, on the world or your
data."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_list,
    add_out,
    add_seed,
    int_at_least,
    non_negative_int,
    positive_int,
    refuse_with,
    unit_float,
)

WORLD_ONLY = ("--bias", "--n-probe", "--n-test", "--max-iter", "--erase-with", "--eraser-n")
DATA_ONLY = (
    "--target",
    "--protected",
    "--test-fraction",
    "--resolution",
    "--max-pixels",
    "--encoder-weights",
    "--image-size",
)

DATA_DEFAULTS = dict(
    probe="lda", n_permutations=199, n_bootstrap=500, pca=None, n_repeats=1, max_iter=1000
)


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "audit",
        "audit an encoder for protected-attribute leakage and group fairness",
        "Audit an encoder for protected-attribute leakage and group fairness. On --data world the "
        "defaults are the demo's, so a demo row is reproduced; on your own data (an image folder, "
        "a "
        ".csv/.parquet manifest or exported WebDataset shards) name --target and --protected "
        "columns.",
    )
    p.add_argument(
        "--encoder",
        required=True,
        help="encoder.safetensors from `fairgen train`, or torchvision:ARCH / timm:ARCH with "
        "--encoder-weights",
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
        "--data",
        default="world",
        help="'world', an image folder, a .csv/.parquet manifest, or WebDataset shards",
    )
    p.add_argument("--target", default=None, help="column the target probe predicts (your data)")
    add_list(
        p,
        "--protected",
        "protected column(s) of your data; each is audited, and their intersection when there "
        "are several",
        metavar="COL",
    )
    p.add_argument(
        "--verified",
        default=None,
        metavar="FILE",
        help="a verified set (`fairgen review`) for the --protected column of its attribute, which "
        "a labeler filled in: adds its fairness and leakage corrected for the labeler's error",
    )
    p.add_argument(
        "--test-fraction",
        type=unit_float,
        default=0.5,
        help="share of your data held out for the audit",
    )
    p.add_argument(
        "--resolution",
        type=positive_int,
        default=None,
        help="resize your images to this side (default: the first image's)",
    )
    p.add_argument(
        "--max-pixels",
        type=positive_int,
        default=None,
        help="refuse (before decoding) an image declaring more pixels than this (default "
        "40,000,000)",
    )
    p.add_argument(
        "--probe",
        choices=["linear", "lda", "mlp"],
        default=None,
        help="leakage probe (default: linear on the world, as the demo; lda on your data, the "
        "fastest)",
    )
    p.add_argument(
        "--permutations",
        type=non_negative_int,
        default=None,
        help="permutation refits for the leakage p-value (default 199)",
    )
    p.add_argument(
        "--bootstrap",
        type=positive_int,
        default=None,
        help="bootstrap resamples for the fairness CIs (default: world 300, data 500)",
    )
    p.add_argument(
        "--repeats",
        type=positive_int,
        default=None,
        help="repeats of 5-fold cross-validation for leakage (default 1)",
    )
    p.add_argument(
        "--pca",
        type=positive_int,
        default=None,
        help="PCA components inside each fold (default: 32 on the world, none on your data)",
    )
    p.add_argument(
        "--max-iter",
        type=positive_int,
        default=None,
        help="world: iteration budget of the linear/mlp probe (default: 100)",
    )
    p.add_argument(
        "--jobs", type=positive_int, default=1, help="threads for the permutation refits"
    )
    p.add_argument(
        "--bias",
        type=unit_float,
        default=0.9,
        help="world: bias of the split the target probe is fitted on",
    )
    p.add_argument(
        "--n-probe",
        type=int_at_least(2),
        default=4000,
        help="world: labelled images the target probe is fitted on",
    )
    p.add_argument(
        "--n-test", type=int_at_least(2), default=4000, help="world: balanced test images"
    )
    add_seed(p)
    add_device(p)
    p.add_argument(
        "--erase-with",
        metavar="SPEC",
        help="world: also audit the features after an eraser fitted on this (steered) stream's "
        "images",
    )
    p.add_argument(
        "--eraser-n",
        type=int_at_least(2),
        default=4096,
        help="world, with --erase-with: images the feature eraser is fitted on",
    )
    p.add_argument(
        "--verbose",
        action="store_true",
        help="print the whole report (report.md) rather than the verdicts",
    )
    add_out(p, "audit", "report.json, report.md and PNGs (erased/ as well with --erase-with)")
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

        if args.verified:
            raise ValueError(
                "--verified corrects a protected column a labeler filled in, on your own --data; "
                "the world audits with its exact judges"
            )
        if args.target or args.protected:
            raise ValueError(
                "--target/--protected name columns of your own --data; the world audits its "
                "class and protected factor"
            )
        refuse_with(args, "--data world", DATA_ONLY, "they are for your own --data")
        if "--eraser-n" in getattr(args, "typed", ()) and not args.erase_with:
            raise ValueError("--eraser-n sizes the eraser of --erase-with; give --erase-with too")
        reports = audit_encoder_on_world(
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
        for space, report in reports.items():
            folder = f"{args.out}/erased" if space == "erased" else args.out
            _print(report, folder, args.verbose)
        return
    if args.erase_with:
        raise ValueError("--erase-with is available on --data world only")
    refuse_with(args, f"--data {args.data}", WORLD_ONLY, "they are for --data world")
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
        verified=args.verified,
        n_jobs=args.jobs,
        device=args.device,
        progress=not args.quiet,
        **settings,
    )
    _print(report, args.out, args.verbose)


def _print(report, folder: str, verbose: bool) -> None:
    """The verdicts, one line a section, and where the whole report is (all of it: --verbose)."""
    from plumbing.files import printable

    # column names and paths come from the user's files: escaped, they cannot drive the terminal
    if verbose:
        print(printable(report.to_markdown()))
    else:
        print(printable(report.title))
        for line in summary(report):
            print(printable(f"  {line}"))
    print(f"full report: {folder}/report.md (report.json and PNGs beside it)")


def summary(report) -> list[str]:
    """One line per section of an ``audits.AuditReport``: its verdict or headline numbers."""
    from audits import FairnessResult, LeakageResult, MemorisationResult, StreamBalance

    lines = []
    for name, result in report.sections.items():
        if isinstance(result, LeakageResult):
            lines.append(
                f"{name}: {result.verdict} (balanced accuracy {result.balanced_accuracy:.3f} vs "
                f"chance {result.chance:.3f}, p = {result.p_value:.3g})"
            )
        elif isinstance(result, FairnessResult):
            s = result.summary
            lines.append(
                f"{name}: demographic-parity difference {s['demographic_parity_difference']:.3f}, "
                f"equalized-odds difference {s['equalized_odds_difference']:.3f}"
            )
        elif isinstance(result, StreamBalance):
            lines.append(f"{name}: Cramér's V {result.cramers_v:.3f}")
        elif isinstance(result, MemorisationResult):
            verdict = "near-copies of training images" if result.memorised else "no memorisation"
            lines.append(f"{name}: {verdict} (near-copy share {result.near_copy_share:.3f})")
    return lines

"""``fairgen steer``: learn where a protected attribute lives in the latent space, and remove it."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_generator,
    add_generator_options,
    add_list,
    add_n,
    add_out,
    add_seed,
    generator_options,
    out_folder,
)

CARD = (
    "eraser_card"  # the card's fixed name inside --out: eraser_card.json, eraser_card.safetensors
)


class _Registered:
    """The steering registry's names as argparse choices, read when first needed (a parse of
    ``--method``/``--mode``, or this command's help): ``fairgen --help`` imports no torch."""

    def __init__(self, what: str):
        self.what = what

    def _names(self) -> tuple[str, ...]:
        from steering import registry

        return getattr(registry, self.what)()

    def __iter__(self):
        return iter(self._names())

    def __contains__(self, name) -> bool:
        return name in self._names()


def add_parser(sub) -> None:
    p = add_command(sub, "steer", "learn a protected attribute in the latent space and remove it")
    add_generator(p)
    add_generator_options(p)
    p.add_argument(
        "--labeler",
        default=None,
        help="what labels the protected attribute: world:<factor>, package.module:callable, or a "
        "labeler .json (classifier / CLIP with local weights); default: world:<the world's "
        "protected factor>",
    )
    add_list(
        p,
        "--protected",
        "name of the protected attribute (default: the labeler's factor); without --labeler, "
        "several world factors (texture,colour) steer several at once, jointly",
    )
    p.add_argument(
        "--class-labeler",
        default=None,
        help="optional labeler of the generator's class, to report class fidelity (default: "
        "world:<class factor> "
        "for the world's generator, none otherwise)",
    )
    p.add_argument(
        "--force-labeler",
        action="store_true",
        help="use world:<factor> judges on a generator that is not the world's",
    )
    p.add_argument(
        "--mode",
        default="balance",
        choices=_Registered("steering_modes"),
        metavar="MODE",
        help="%(choices)s; balance makes the protected attribute independent of the class",
    )
    p.add_argument(
        "--method",
        default=None,
        choices=_Registered("steering_methods"),
        metavar="METHOD",
        help="%(choices)s. resample: nonlinear latent classifier, rejection sampling and "
        "gradient flips; "
        "quantile/gaussian: linear transports (one attribute); confirmed: every kept sample "
        "labelled, "
        "exact target shares per batch in the labeler's terms (balance; a stream then needs the "
        "labeler); default: resample, quantile for --mode flip or erase",
    )
    p.add_argument(
        "--keep-labeler",
        default=None,
        help="unconditional generators, --method confirmed: a second labeler whose label plays the "
        "class "
        "(balance the protected attribute within each of its values, keep its own shares)",
    )
    p.add_argument(
        "--target",
        default=None,
        help="target shares of the protected values (default uniform): 0.3,0.7 for one attribute, "
        "texture=0.25,0.25,0.25,0.25;colour=... for several (marginals)",
    )
    p.add_argument(
        "--verified",
        default=None,
        metavar="FILE",
        help="a verified set (`fairgen review --read`) of the labeler on this generator: --target "
        "then means true shares, reached by mixing the labeler's cells (--method confirmed, one "
        "protected attribute)",
    )
    add_n(p, 20_000, "labelled samples to fit on (at least 100)", minimum=100)
    add_n(p, 10_000, "samples judged before/after", flag="--eval-n")
    add_seed(p)
    add_device(p)
    add_out(p, ".", f"the eraser card, {CARD}.json and {CARD}.safetensors")
    p.set_defaults(func=run)


def run(args) -> None:
    """Fit and save a card; ``--out`` is locked from the start, so a second steer into it is
    refused."""
    from plumbing.outputs import output_lock
    from steering.card import card_paths

    card = out_folder(args) / CARD
    with output_lock(card_paths(card)[0]):
        _run(args, card)


def _run(args, card) -> None:
    import steering

    from ..generators import load_generator
    from ..labelers import load_labeler
    from ..world import CATEGORICAL, CLASS_FACTOR, DEFAULT_PROTECTED

    factors = sorted(set(CATEGORICAL) - {CLASS_FACTOR})
    for name in (args.protected or []) if args.labeler is None else []:
        if name not in CATEGORICAL:
            raise ValueError(
                f"--protected {name}: without --labeler, name world factors ({', '.join(factors)});"
                " for another attribute give its --labeler"
            )
    if args.labeler is not None and args.protected and len(args.protected) > 1:
        raise ValueError(
            f"--protected {','.join(args.protected)}: a --labeler labels one attribute; steer "
            "several world factors without --labeler"
        )
    options = generator_options(args)
    generator = load_generator(args.generator, device=args.device, **options)
    protected_name = args.protected[0] if args.labeler is not None and args.protected else None
    names = (args.protected or DEFAULT_PROTECTED.split(",")) if args.labeler is None else [None]
    specs = [f"world:{name}" for name in names] if args.labeler is None else [args.labeler]
    labelers = [
        load_labeler(spec, generator=generator, force=args.force_labeler, device=args.device)
        for spec in specs
    ]
    for spec in specs:
        if spec == f"world:{CLASS_FACTOR}":
            typed = f"--labeler {spec}" if args.labeler else f"--protected {CLASS_FACTOR}"
            raise ValueError(f"{typed} labels the generator's class itself; pick another attribute")
    if args.labeler is not None:
        names = [
            protected_name
            or (
                args.labeler.split(":", 1)[1] if args.labeler.startswith("world:") else args.labeler
            )
        ]
    protected = names[0] if len(names) == 1 else names
    class_spec = args.class_labeler or (
        f"world:{CLASS_FACTOR}"
        if specs[0].startswith("world:") and not args.force_labeler
        else None
    )
    referees = (
        {"protected": labelers[0]} if len(names) == 1 else dict(zip(names, labelers, strict=True))
    )
    if class_spec:
        referees["class"] = load_labeler(
            class_spec, generator=generator, force=args.force_labeler, device=args.device
        )
    fit_labelers = (
        labelers[0].predict
        if len(names) == 1
        else {name: lab.predict for name, lab in zip(names, labelers, strict=True)}
    )
    keep = None
    if args.keep_labeler is not None:
        if args.method != "confirmed":
            raise ValueError("--keep-labeler needs --method confirmed")
        keep = load_labeler(
            args.keep_labeler, generator=generator, force=args.force_labeler, device=args.device
        )
    target = _target(args.target, names)
    verified = _verified(args, names)
    try:
        steerer, _ = steering.fit_steerer(
            generator,
            fit_labelers,
            n=args.n,
            mode=args.mode,
            method=args.method,
            seed=args.seed,
            progress=not args.quiet,
            target_distribution=target,
            keep_labeler=None if keep is None else keep.predict,
            verified=verified,
        )
    except ValueError as error:
        raise ValueError(_in_flags(str(error), names)) from None
    attributes = dict(zip(["protected"] if len(names) == 1 else names, specs, strict=True))
    if keep is not None:
        attributes["keep"] = args.keep_labeler
    if steerer.guarantee == "confirmed":
        confirming = (
            {"protected": labelers[0].predict}
            if len(names) == 1
            else {n: lab.predict for n, lab in zip(names, labelers, strict=True)}
        )
        if keep is not None:
            confirming["keep"] = keep.predict
        report = steering.confirmed_report(
            generator, steerer, confirming, referees, n=args.eval_n, seed=args.seed + 1
        )
    else:
        report = steering.steering_report(
            generator, steerer, referees, n=args.eval_n, seed=args.seed + 1
        )
    from .. import __version__

    provenance = {
        "generator": {
            "name": _portable_name(args.generator),
            "sha256": generator.checksum,
            "options": options,
        },
        "protected": protected,
        "keep": "class input",
        "labeler": labelers[0].provenance()
        if len(names) == 1
        else {n: lab.provenance() for n, lab in zip(names, labelers, strict=True)},
        "class_labeler": referees["class"].provenance() if "class" in referees else None,
        # {attribute: name}: what a stream of a confirmed card must be given
        "labelers": attributes,
        "keep_labeler": None if keep is None else keep.provenance(),
        "target": target,
        "n": args.n,
        "seed": args.seed,
        "fairgen_version": __version__,
        "report": report,
    }
    path = steering.save_card(steerer, card, provenance)
    print(
        f"steering {generator.name}: protected={','.join(names)} (labeler "
        f"{', '.join(lab.name for lab in labelers)}) "
        f"mode={args.mode} method={steerer.method}, fitted on {args.n} labelled samples"
    )
    print(f"  {'':34s}{'raw':>10s}{'steered':>10s}")
    group = "keep" if keep is not None else "class"
    grouped = (
        keep is not None or generator.num_classes > 0
    )  # unconditional without a keep labeler: shares only
    for key in report["raw"]["cramers_v_by"] if grouped else []:
        raw_v, steered_v = (
            report["raw"]["cramers_v_by"][key],
            report["steered"]["cramers_v_by"][key],
        )
        raw_c, steered_c = (
            report["raw"]["cramers_v_corrected_by"][key],
            report["steered"]["cramers_v_corrected_by"][key],
        )
        name = names[0] if key == "protected" else key
        print(f"  {f'Cramér V({group}, ' + name + ')':34s}{raw_v:10.3f}{steered_v:10.3f}")
        print(f"  {'  bias-corrected (Bergsma)':34s}{raw_c:10.3f}{steered_c:10.3f}")
    for key, shares in report["raw"].get("shares_by", {}).items():
        name = names[0] if key == "protected" else key
        steered = report["steered"]["shares_by"][key]
        print(f"  {'shares of ' + name:34s}{_shares(shares):>10s}  ->  {_shares(steered)}")
    if "class_fidelity" in report["raw"]:
        print(
            f"  {'class fidelity':34s}{report['raw']['class_fidelity']:10.3f}"
            f"{report['steered']['class_fidelity']:10.3f}"
        )
    if "cost" in report:
        cost = report["cost"]
        print(
            f"  confirmed ({cost['proposal']} proposal): {cost['syntheses_per_kept']:.2f} "
            "syntheses, "
            f"{cost['labeler_calls_per_kept']:.2f} labeler calls and "
            f"{cost['latent_draws_per_kept']:.1f} latent draws "
            "per kept sample (plain rejection: "
            f"{steerer.costs_['rejection_syntheses_per_kept']:.2f} syntheses)"
        )
    if "expected_draws_per_sample" in report:
        print(
            f"  latent draws per kept sample (balance): {report['expected_draws_per_sample']:.1f}"
        )
    if "probe_before" in report:
        before = report["probe_before"]
        print(
            f"  latent probe within class (before): {before['accuracy']:.3f} (majority "
            f"{before['majority']:.3f})"
        )
    if "probe_after" in report:
        after, mlp = report["probe_after"], report["mlp_probe_after"]
        print(
            f"  latent probe within class (after):  {after['accuracy']:.3f} (majority "
            f"{after['majority']:.3f}); MLP probe {mlp['accuracy']:.3f}"
        )
        print("  (erase is latent-only: a stream refuses an erase card)")
    _say_misses(report, args, names, labelers, target, steerer)
    print(f"wrote {path}")


def _say_misses(report, args, names, labelers, target, steerer) -> None:
    """Print, after the numbers, where the steer missed its target and what would help."""
    from steering.misses import steer_misses

    for line in steer_misses(
        report,
        mode=args.mode,
        names=names,
        labeler_names={name: lab.name for name, lab in zip(names, labelers, strict=True)},
        target=target,
        n=args.n,
        method=getattr(steerer, "method", args.method),
    ):
        print(f"  WARNING: {line}")


def _target(text: str | None, names: list[str]):
    """``--target``: None, a list of shares (one attribute), or {name: shares} (several, as
    marginals)."""
    if text is None:
        return None

    def shares(part: str) -> list[float]:
        try:
            return [float(x) for x in part.split(",")]
        except ValueError:
            raise ValueError(
                f"--target: expected comma-separated shares such as 0.3,0.7, got {part!r}"
            ) from None

    if "=" not in text:
        if len(names) > 1:
            raise ValueError(f"--target: several attributes {names}; give NAME=shares;NAME=shares")
        return shares(text)
    out = {}
    for part in text.split(";"):
        name, _, values = part.partition("=")
        if name.strip() not in names:
            raise ValueError(
                f"--target names {name.strip()!r}, which is not among the protected attributes "
                f"{names}"
            )
        out[name.strip()] = shares(values)
    return out if len(names) > 1 else out[names[0]]


def _in_flags(message: str, names: list[str]) -> str:
    """A fitting error in the command line's words: the flags, and the attribute's own name (a
    single attribute is fitted under the name "protected")."""
    if len(names) == 1:
        mine = f"protected attribute {names[0]!r} (--protected {names[0]})"
        message = message.replace("protected attribute 'protected'", mine)
    message = message.replace("target_distribution", "--target")
    message = message.replace("samples (n)", "samples (--n)")
    return "--" + message if message.startswith("n must be") else message


def _shares(values: list[float]) -> str:
    return "/".join(f"{v:.2f}" for v in values)


def _portable_name(generator: str) -> str:
    """A registry name or entry point as given; a local folder/file by its base name only (no
    absolute path)."""
    from pathlib import Path

    from ..entry_points import is_entry_point

    return (
        generator
        if is_entry_point(generator) or not Path(generator).exists()
        else Path(generator).resolve().name
    )


def _verified(args, names: list[str]) -> dict | None:
    """The --verified set as the arrays ``fit_steerer`` takes; its attribute must be the one
    steered."""
    if args.verified is None:
        return None
    if args.method != "confirmed" or len(names) != 1:
        raise ValueError("--verified needs --method confirmed and one --protected attribute")
    from ..verified import read_verified

    verified = read_verified(args.verified)
    if verified.attribute != names[0]:
        raise ValueError(
            f"--verified {args.verified} verifies {verified.attribute!r}, not the steered "
            f"attribute {names[0]!r} (--protected)"
        )
    classes, outputs, _, truths = verified.arrays()
    return {"classes": classes, "outputs": outputs, "truth": truths}

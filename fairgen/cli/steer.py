"""``fairgen steer``: learn where a protected attribute lives in the latent space, and remove it."""

from __future__ import annotations

from .common import add_command, add_device, add_generator, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "steer", "learn a protected attribute in the latent space and remove it")
    add_generator(p)
    p.add_argument("--protected", default=None,
                   help="world judge(s) naming the protected attribute(s), comma-separated for several at once "
                        "(default: the world's)")
    p.add_argument("--mode", default="balance", choices=["erase", "balance", "flip"],
                   help="balance makes the protected attribute independent of the class")
    p.add_argument("--method", default=None, choices=["resample", "quantile", "gaussian"],
                   help="resample: nonlinear latent classifier, rejection sampling and gradient flips; "
                        "quantile/gaussian: linear transports (one attribute); default: resample, quantile for --mode flip")
    p.add_argument("--n", type=int, default=20_000, help="labelled samples to fit on")
    p.add_argument("--eval-n", type=int, default=10_000, help="samples judged before/after")
    add_seed(p)
    add_device(p)
    p.add_argument("--out", default="eraser_card", help="card stem: writes STEM.json and STEM.safetensors")
    p.set_defaults(func=run)


def run(args) -> None:
    import steering

    from ..generators import load_generator
    from ..world import CLASS_FACTOR, DEFAULT_PROTECTED, load_judges

    generator = load_generator(args.generator, device=args.device)
    judges = load_judges(device=args.device)
    names = (args.protected or DEFAULT_PROTECTED).split(",")
    for protected in names:
        if protected not in judges:
            raise ValueError(f"--protected must name world judges among {sorted(judges)}, got {protected!r}")
        if protected == CLASS_FACTOR:
            raise ValueError(f"--protected {protected!r} is the generator's class itself; pick another attribute")
    labelers = {name: judges[name].predict for name in names} if len(names) > 1 else judges[names[0]].predict
    steerer, _ = steering.fit_steerer(
        generator, labelers, n=args.n, mode=args.mode, method=args.method, seed=args.seed
    )
    referees = {**({name: judges[name] for name in names} if len(names) > 1 else {"protected": judges[names[0]]}),
                "class": judges[CLASS_FACTOR]}
    report = steering.steering_report(generator, steerer, referees, n=args.eval_n, seed=args.seed + 1)
    provenance = {
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "protected": names[0] if len(names) == 1 else names,
        "keep": "class input",
        "labeler": {name: f"world:{name}" for name in names} if len(names) > 1 else f"world:{names[0]}",
        "n": args.n,
        "seed": args.seed,
        "report": report,
    }
    path = steering.save_card(steerer, args.out, provenance)
    print(f"steering {generator.name}: protected={','.join(names)} mode={args.mode} method={getattr(steerer, 'method', args.method)}, "
          f"fitted on {args.n} labelled samples")
    print(f"  {'':34s}{'raw':>10s}{'steered':>10s}")
    for key in report["raw"]["cramers_v_by"]:
        label = "protected" if key == "protected" else key
        raw_v, steered_v = report["raw"]["cramers_v_by"][key], report["steered"]["cramers_v_by"][key]
        raw_c, steered_c = report["raw"]["cramers_v_corrected_by"][key], report["steered"]["cramers_v_corrected_by"][key]
        name = names[0] if key == "protected" else label
        print(f"  {'Cramér V(class, ' + name + ')':34s}{raw_v:10.3f}{steered_v:10.3f}")
        print(f"  {'  bias-corrected (Bergsma)':34s}{raw_c:10.3f}{steered_c:10.3f}")
    print(f"  {'class fidelity':34s}{report['raw']['class_fidelity']:10.3f}{report['steered']['class_fidelity']:10.3f}")
    if "expected_draws_per_sample" in report:
        print(f"  latent draws per kept sample (balance): {report['expected_draws_per_sample']:.1f}")
    if "probe_before" in report:
        before = report["probe_before"]
        print(f"  latent probe within class (before): {before['accuracy']:.3f} (majority {before['majority']:.3f})")
    if "probe_after" in report:
        after, mlp = report["probe_after"], report["mlp_probe_after"]
        print(f"  latent probe within class (after):  {after['accuracy']:.3f} (majority {after['majority']:.3f}); MLP probe {mlp['accuracy']:.3f}")
        print("  (erase is latent-only: a stream refuses an erase card)")
    print(f"wrote {path}")

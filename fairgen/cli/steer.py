"""``fairgen steer``: learn where a protected attribute lives in the latent space, and remove it."""

from __future__ import annotations

from .common import add_command, add_device, add_generator, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "steer", "learn a protected attribute in the latent space and remove it")
    add_generator(p)
    p.add_argument("--protected", default=None, help="world judge naming the protected attribute (default: the world's)")
    p.add_argument("--mode", default="balance", choices=["erase", "balance", "flip"],
                   help="balance makes the protected attribute independent of the class")
    p.add_argument("--method", default="quantile", choices=["quantile", "gaussian"], help="transport for balance/flip")
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
    protected = args.protected or DEFAULT_PROTECTED
    if protected not in judges:
        raise ValueError(f"--protected must be one of the world judges {sorted(judges)}, got {protected!r}")
    if protected == CLASS_FACTOR:
        raise ValueError(f"--protected {protected!r} is the generator's class itself; pick another attribute")
    steerer, _ = steering.fit_steerer(
        generator, judges[protected].predict, n=args.n, mode=args.mode, method=args.method, seed=args.seed
    )
    referees = {"protected": judges[protected], "class": judges[CLASS_FACTOR]}
    report = steering.steering_report(generator, steerer, referees, n=args.eval_n, seed=args.seed + 1)
    provenance = {
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "protected": protected,
        "keep": "class input",
        "labeler": f"world:{protected}",
        "n": args.n,
        "seed": args.seed,
        "report": report,
    }
    path = steering.save_card(steerer, args.out, provenance)
    print(f"steering {generator.name}: protected={protected} mode={args.mode} method={args.method}, fitted on {args.n} samples")
    print(f"  {'':28s}{'raw':>10s}{'steered':>10s}")
    print(f"  {'Cramér V(class, ' + protected + ')':28s}{report['raw']['cramers_v']:10.3f}{report['steered']['cramers_v']:10.3f}")
    print(f"  {'class fidelity':28s}{report['raw']['class_fidelity']:10.3f}{report['steered']['class_fidelity']:10.3f}")
    before = report["probe_before"]
    print(f"  latent probe within class (before): {before['accuracy']:.3f} (majority {before['majority']:.3f})")
    if "probe_after" in report:
        after, mlp = report["probe_after"], report["mlp_probe_after"]
        print(f"  latent probe within class (after):  {after['accuracy']:.3f} (majority {after['majority']:.3f}); MLP probe {mlp['accuracy']:.3f}")
    print(f"wrote {path}")

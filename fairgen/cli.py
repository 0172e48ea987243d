"""The ``fairgen`` command: one subcommand per job, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DESCRIPTION = """\
fairgen turns a pretrained generative model into a fair, shareable source of training data.

Typical flow: look at the world (`fairgen world`), sample a generator (`fairgen sample`), learn
and remove a protected attribute (`fairgen steer`), write a stream card and train on it
(`fairgen stream`, `fairgen train`), audit the result (`fairgen audit`). `fairgen demo` runs
everything end to end on the embedded default generator, offline.
"""


def _world(args):
    from .plotting import save_grid
    from .world import CATEGORICAL, World

    sample = World(args.resolution).sample(args.n, seed=args.seed, bias=args.bias)
    captions = [
        f"{CATEGORICAL['shape'][s]}/{CATEGORICAL['texture'][t]}"
        for s, t in zip(sample.labels("shape").tolist(), sample.labels("texture").tolist(), strict=True)
    ]
    title = f"world, {args.resolution} px, bias {args.bias} (measured Cramér's V {sample.cramers_v():.2f})"
    print(f"wrote {save_grid(sample.images, args.out, captions=captions, title=title)}")


def _sample(args):
    import torch

    from .generators import load_generator
    from .plotting import save_grid

    generator = load_generator(args.generator, device=args.device)
    rng = torch.Generator().manual_seed(args.seed)
    z = generator.sample_latents(args.n, generator=rng)
    y = None
    if generator.num_classes:
        y = torch.arange(args.n) % generator.num_classes if args.cls is None else torch.full((args.n,), args.cls)
    images = generator.synthesize(z, y)
    print(f"wrote {save_grid(images, args.out, title=f'{generator.name}, seed {args.seed}')}")


def _zoo_train(args):
    from .generators.embedded import NAME, WEIGHTS
    from .generators.quality import judge_generator
    from .generators.recipe import RecipeConfig, train_embedded

    if args.name != NAME:
        raise SystemExit(f"fairgen zoo train: only {NAME!r} has a training recipe here")
    config = RecipeConfig(steps=args.steps, seed=args.seed, bias=args.bias)
    out = Path(args.out or WEIGHTS)
    model = train_embedded(out, config)
    quality = judge_generator(model, n=args.eval_n, seed=12345)
    print(f"class fidelity {quality['class_fidelity']:.4f}   Cramér's V(class, texture) {quality['cramers_v']:.3f}")
    print(quality["texture_histogram"].round(3).to_string())
    _sample(argparse.Namespace(generator=str(out), device="cpu", seed=0, n=64, cls=None, out=out.with_suffix(".png")))


def _judges(args):
    from . import judges

    if args.action == "train":
        steps = {} if args.steps is None else {"steps": args.steps}
        judges.train_main(seed=args.seed, out=args.out or judges.WEIGHTS, device=args.device, **steps)
    else:
        judges.eval_main(n=args.n, seed=args.seed, device=args.device)


def _steer(args):
    import steering

    from .generators import load_generator
    from .judges import load_judges

    generator = load_generator(args.generator, device=args.device)
    judges = load_judges(device=args.device)
    if args.protected not in judges:
        raise ValueError(f"--protected must be one of the world judges {sorted(judges)}, got {args.protected!r}")
    if args.keep is not None and args.keep != "shape":
        raise ValueError("--keep: the embedded generator's class is the shape; only 'shape' can be kept")
    steerer, samples = steering.fit_steerer(
        generator, judges[args.protected].predict, n=args.n, mode=args.mode, method=args.method, seed=args.seed
    )
    referees = {"protected": judges[args.protected], "class": judges["shape"]}
    report = steering.steering_report(generator, steerer, referees, n=args.eval_n, seed=args.seed + 1)
    provenance = {
        "generator": {"name": generator.name, "sha256": generator.checksum},
        "protected": args.protected,
        "keep": args.keep or "class input",
        "labeler": f"fairgen.judges:{args.protected}",
        "n": args.n,
        "seed": args.seed,
        "report": report,
    }
    path = steering.save_card(steerer, args.out, provenance)
    print(f"steering {generator.name}: protected={args.protected} mode={args.mode} method={args.method}, fitted on {args.n} samples")
    print(f"  {'':28s}{'raw':>10s}{'steered':>10s}")
    print(f"  {'Cramér V(class, ' + args.protected + ')':28s}{report['raw']['cramers_v']:10.3f}{report['steered']['cramers_v']:10.3f}")
    print(f"  {'class fidelity':28s}{report['raw']['class_fidelity']:10.3f}{report['steered']['class_fidelity']:10.3f}")
    before = report["probe_before"]
    print(f"  latent probe within class (before): {before['accuracy']:.3f} (majority {before['majority']:.3f})")
    if "probe_after" in report:
        after, mlp = report["probe_after"], report["mlp_probe_after"]
        print(f"  latent probe within class (after):  {after['accuracy']:.3f} (majority {after['majority']:.3f}); MLP probe {mlp['accuracy']:.3f}")
    print(f"wrote {path}")


def _stream(args):
    from .generators import load_generator
    from .stream import Stream, StreamSpec, make_spec

    if args.new:
        generator = load_generator(args.generator, device=args.device)
        views = {"kinds": args.views.split(","), "sigma": args.sigma, "truncate": 2.0}
        spec = make_spec(generator, eraser=args.eraser, views=views, augment=args.augment, seed=args.seed,
                         refresh=args.refresh, resolution=args.resolution)
        print(f"wrote {spec.save(args.new)}")
        return
    if not args.spec or not args.export:
        raise ValueError("give --new OUT to write a spec, or --spec CARD --export DIR to write samples")
    from .export import export_stream

    stream = Stream(StreamSpec.load(args.spec), args.batch_size, args.device)
    print(f"wrote {export_stream(stream, args.export, args.n, args.format)}")


def _train(args):
    import json

    from .contrastive import TrainConfig, Trainer
    from .stream import Stream, StreamSpec

    spec = StreamSpec.load(args.spec)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    config = TrainConfig(
        encoder=args.encoder, supervised=args.supervised, total_steps=args.steps, lr=args.lr,
        augment=None, checkpoint_dir=str(out), checkpoint_every=args.checkpoint_every, seed=args.seed,
        warmup_steps=min(10, args.steps),
    )
    checkpoint = out / "checkpoint.pt"
    trainer = Trainer.from_checkpoint(checkpoint, args.device) if args.resume and checkpoint.exists() else Trainer(config, args.device)
    stream = Stream(spec, args.batch_size, args.device, start_step=trainer.step)
    trainer.fit(stream)
    trainer.save_encoder(out / "encoder.safetensors")
    (out / "stream.json").write_text(json.dumps(spec.to_dict(), indent=2))
    print(f"trained {trainer.step} steps; wrote {out / 'encoder.safetensors'} and {checkpoint}")


def _audit(args):
    import audits

    from .contrastive import load_encoder
    from .contrastive.erase import (
        ERASER_START_STEP,
        ErasedEncoder,
        fit_feature_eraser,
        save_feature_eraser,
    )
    from .contrastive.evaluate import extract_features
    from .judges import load_judges
    from .stream import Stream, StreamSpec
    from .world import TEXTURES, World

    if args.data != "world":
        raise ValueError(f"--data: only the embedded 'world' is built in, got {args.data!r}")
    encoder = load_encoder(args.encoder, args.device)
    spaces = {"": encoder}
    if args.erase_with:
        stream = Stream(StreamSpec.load(args.erase_with), 512, args.device, start_step=ERASER_START_STEP)
        eraser = fit_feature_eraser(encoder, stream, load_judges(device=args.device)["texture"].predict, len(TEXTURES), n=args.eraser_n)
        path = save_feature_eraser(eraser, Path(args.out) / "feature_eraser.safetensors", {
            "encoder": str(args.encoder), "stream": str(args.erase_with), "protected": "texture", "n": args.eraser_n,
        })
        print(f"fitted a texture eraser on {args.eraser_n} images of {args.erase_with}; wrote {path}")
        spaces["erased"] = ErasedEncoder(encoder, eraser)
    world = World(32)
    probe = world.sample(args.n_probe, seed=args.seed + 1, bias=args.bias)
    test = world.sample(args.n_test, seed=args.seed + 2, bias=0.0)
    for space, network in spaces.items():
        train_x = extract_features(network, probe.images.to(args.device)).cpu().numpy()
        test_x = extract_features(network, test.images.to(args.device)).cpu().numpy()
        report = audits.audit_representation(
            train_x, probe.labels("shape").numpy(), test_x, test.labels("shape").numpy(), test.labels("texture").numpy(),
            seed=args.seed, title=f"audit of {args.encoder}" + (" (texture erased)" if space else ""),
        )
        report.save(Path(args.out) / space)
        print(report.to_markdown())
    print(f"wrote {args.out}")


def _demo(args):
    from .demo import replace_preset, run_demo

    table = run_demo(args.preset, args.out, device=args.device, config=replace_preset(args.preset, seed=args.seed))
    print()
    print((Path(args.out) / "table.md").read_text())
    print(f"full report: {args.out}/ (table.md, table.png, one audit folder per arm)")
    return table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairgen", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("world", help="draw a labelled grid of world images", description="Draw a labelled grid of world images.")
    p.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    p.add_argument("--resolution", type=int, default=32, help="16, 32, 64, 128 or 256 (default 32)")
    p.add_argument("--bias", type=float, default=0.9, help="strength tying texture to shape, in [0, 1]")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--out", default="world.png", help="PNG to write")
    p.set_defaults(func=_world)

    p = sub.add_parser("sample", help="draw a grid of images from a generator", description="Draw a grid of images from a generator.")
    p.add_argument("--generator", default="world-sprites-32", help="registered name or local path")
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--class", dest="cls", type=int, default=None, help="one class for all (default: cycle)")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default="samples.png")
    p.set_defaults(func=_sample)

    p = sub.add_parser("zoo", help="train a generator of the zoo from scratch", description="Train a generator of the zoo from scratch.")
    p.add_argument("action", choices=["train"])
    p.add_argument("name", help="world-sprites-32")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--bias", type=float, default=0.9)
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--eval-n", type=int, default=10_000, help="samples judged after training")
    p.add_argument("--out", default=None, help="weights file (default: the packaged one)")
    p.set_defaults(func=_zoo_train)

    p = sub.add_parser("judges", help="train or evaluate the world's judges", description="Train or evaluate the world's judges.")
    p.add_argument("action", choices=["train", "eval"])
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--n", type=int, default=10_000, help="evaluation sample size")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default=None)
    p.set_defaults(func=_judges)

    p = sub.add_parser("steer", help="learn a protected attribute in the latent space and remove it", description="Learn a protected attribute in the latent space and remove it.")
    p.add_argument("--generator", default="world-sprites-32", help="registered name or local path")
    p.add_argument("--protected", default="texture", help="world judge naming the protected attribute")
    p.add_argument("--keep", default=None, help="attribute to keep (the class input is always kept)")
    p.add_argument("--mode", default="balance", choices=["erase", "balance", "flip"], help="balance (default) makes texture independent of the class")
    p.add_argument("--method", default="quantile", choices=["quantile", "gaussian"], help="transport for balance/flip")
    p.add_argument("--n", type=int, default=20_000, help="labelled samples to fit on")
    p.add_argument("--eval-n", type=int, default=10_000, help="samples judged before/after")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--out", default="eraser_card", help="card stem: writes STEM.json and STEM.safetensors")
    p.set_defaults(func=_steer)

    p = sub.add_parser("stream", help="write a stream card, or export samples of one to disk", description="Write a stream card, or export samples of one to disk.")
    p.add_argument("--new", metavar="CARD", help="write a new stream card (JSON) here")
    p.add_argument("--generator", default="world-sprites-32", help="registered name or local path")
    p.add_argument("--eraser", default=None, help="eraser card from `fairgen steer` (optional)")
    p.add_argument("--views", default="anchor,neighbour", help="comma list of anchor|neighbour|flip (>= 2)")
    p.add_argument("--sigma", type=float, default=0.5, help="latent-neighbour noise scale")
    p.add_argument("--augment", default="light", help="augmentation preset: simclr, light, none")
    p.add_argument("--refresh", type=float, default=1.0, help="share of each batch freshly generated, (0, 1]")
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--spec", help="stream card to read")
    p.add_argument("--export", metavar="DIR", help="write samples here")
    p.add_argument("--n", type=int, default=1000, help="samples to export")
    p.add_argument("--format", default="png", choices=["png", "webdataset"])
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=_stream)

    p = sub.add_parser("train", help="train a contrastive encoder on a stream card", description="Train a contrastive encoder on a stream card.")
    p.add_argument("--spec", required=True, help="stream card (JSON)")
    p.add_argument("--out", default="run", help="folder for checkpoint.pt and encoder.safetensors")
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--encoder", default="small_cnn", help="small_cnn, resnet18, resnet50")
    p.add_argument("--supervised", action="store_true", help="SupCon with the stream's class labels (default SimCLR)")
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--checkpoint-every", type=int, default=100)
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.set_defaults(func=_train)

    p = sub.add_parser("audit", help="audit an encoder for protected-attribute leakage and group fairness", description="Audit an encoder for protected-attribute leakage and group fairness.")
    p.add_argument("--encoder", required=True, help="encoder.safetensors from `fairgen train`")
    p.add_argument("--data", default="world", help="labelled data to audit on (built in: world)")
    p.add_argument("--bias", type=float, default=0.9, help="bias of the split the target probe is fitted on")
    p.add_argument("--n-probe", type=int, default=4000)
    p.add_argument("--n-test", type=int, default=4000)
    p.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument("--erase-with", metavar="SPEC", help="also audit the features after a texture eraser fitted on this (steered) stream's images")
    p.add_argument("--eraser-n", type=int, default=4096, help="images the feature eraser is fitted on")
    p.add_argument("--out", default="audit", help="report folder (report.json, report.md, PNGs; erased/ with --erase-with)")
    p.set_defaults(func=_audit)

    p = sub.add_parser("demo", help="end to end on the embedded default: five training arms, audited", description="End to end on the embedded default: five training arms, audited.")
    p.add_argument("--preset", default="quick", choices=["quick", "full"], help="quick: CPU <= 10 min; full: GPU minutes")
    p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    p.add_argument("--out", default="demo_out", help="folder for the table, reports, encoders and cards")
    p.add_argument("--seed", type=int, default=0, help="seed for every arm's data, model and audit (same seed, same table)")
    p.add_argument("--device", default="cuda" if _cuda() else "cpu", help="default: cuda when available")
    p.set_defaults(func=_demo)

    return parser


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"fairgen {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

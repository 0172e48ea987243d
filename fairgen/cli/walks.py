"""``fairgen walks``: learn latent walks (zoom, shifts, rotation, hue, brightness) into a walk card,
measure their fidelity, or draw a grid of what a card's walks do."""

from __future__ import annotations

from .common import add_command, add_device, add_generator, add_seed

ACTIONS = {
    "learn": "learn one walk per transformation through the generator and write a walk card",
    "fidelity": "measure how well a walk card's walks do their edits",
    "show": "draw a grid: one row per walk, alpha from low to high",
}


# fairgen.walks.TRANSFORMATIONS, named here so that `fairgen --help` imports no torch (tests/test_cli.py checks)
TRANSFORMATIONS = ("zoom", "shift_x", "shift_y", "rotate", "hue", "brightness")


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "walks",
        "learn latent walks (zoom, shift, rotate, hue, brightness) as views",
        "Learn latent walks into a walk card (learn), measure a card's fidelity (fidelity), or draw "
        "what its walks do (show). On a world generator fidelity is measured on the object's "
        "size, position, hue and rotation; on other generators as image error against the edit.",
    )
    p.add_argument(
        "action", choices=list(ACTIONS), help="; ".join(f"{k}: {v}" for k, v in ACTIONS.items())
    )
    add_generator(p)
    p.add_argument(
        "--card",
        default="walks",
        help="walk card stem (writes/reads STEM.json and STEM.safetensors)",
    )
    p.add_argument(
        "--transformations",
        nargs="+",
        default=list(TRANSFORMATIONS),
        choices=list(TRANSFORMATIONS),
        help="walks to learn",
    )
    p.add_argument(
        "--alpha",
        nargs="*",
        default=[],
        metavar="NAME=LOW:HIGH",
        help="alpha range of a transformation, e.g. zoom=-0.3:0.3 (default: fairgen.walks.DEFAULT_ALPHAS)",
    )
    p.add_argument(
        "--per-class", action="store_true", help="one walk per class instead of one shared walk"
    )
    p.add_argument("--steps", type=int, default=200, help="optimiser steps")
    p.add_argument(
        "--batch-size",
        type=int,
        default=32,
        help="anchors per step (each walked once per transformation)",
    )
    p.add_argument("--lr", type=float, default=0.1, help="peak learning rate (cosine decay)")
    p.add_argument(
        "--checkpoint",
        default=None,
        help="safetensors checkpoint: written during learning, resumed if present",
    )
    p.add_argument(
        "--fidelity-n",
        type=int,
        default=1000,
        help="walked samples per transformation for fidelity",
    )
    p.add_argument(
        "--image-only",
        action="store_true",
        help="fidelity as image error only, even on a world generator",
    )
    p.add_argument("--out", default="walks.png", help="PNG written by show")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def parse_alphas(items: list[str]) -> dict[str, tuple[float, float]]:
    """``["zoom=-0.3:0.3", ...]`` -> ``{"zoom": (-0.3, 0.3)}`` (numbers are checked by the learner)."""
    ranges = {}
    for item in items:
        name, sep, bounds = item.partition("=")
        low, colon, high = bounds.partition(":")
        if not sep or not colon:
            raise ValueError(f"--alpha expects NAME=LOW:HIGH, got {item!r}")
        try:
            ranges[name] = (float(low), float(high))
        except ValueError:
            raise ValueError(f"--alpha {item!r}: LOW and HIGH must be numbers") from None
    return ranges


def _fidelity(generator, walks, args):
    from ..walks import image_fidelity
    from ..world.walk_fidelity import is_world_generator, walk_fidelity

    if is_world_generator(generator) and not args.image_only:
        return walk_fidelity(generator, walks, n=args.fidelity_n, seed=args.seed + 1)
    import pandas as pd

    return pd.DataFrame(
        image_fidelity(generator, walks, n=args.fidelity_n, seed=args.seed + 1)
    ).T.rename_axis("transformation")


def run(args) -> None:
    """``learn`` holds the card's lock from the start: a second learner into the same card is refused."""
    from contextlib import nullcontext

    from plumbing.outputs import output_lock

    from ..walks.card import walk_card_paths

    with output_lock(walk_card_paths(args.card)[0]) if args.action == "learn" else nullcontext():
        _run(args)


def _run(args) -> None:
    from ..generators import load_generator
    from ..walks import WalkLearner, load_walks, save_walks

    generator = load_generator(args.generator, device=args.device)
    if args.action == "learn":
        learner = WalkLearner(
            args.transformations,
            parse_alphas(args.alpha),
            per_class=args.per_class,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            seed=args.seed,
            checkpoint=args.checkpoint,
            progress=not args.quiet,
        ).fit(generator)
        resumed = f", resumed from step {learner.resumed_from_}" if learner.resumed_from_ else ""
        print(
            f"learned {len(learner.walks_.transformations)} walks on {generator.name} in {learner.seconds_:.1f} s "
            f"({args.steps} steps of {args.batch_size} anchors{resumed})"
        )
        table = _fidelity(generator, learner.walks_, args)
        path = save_walks(
            learner.walks_,
            args.card,
            generator,
            {
                "training": {
                    **learner.settings_,
                    "final_loss": learner.final_loss_,
                    "seconds": learner.seconds_,
                },
                "fidelity": {
                    "n": args.fidelity_n,
                    "seed": args.seed + 1,
                    "table": table.reset_index().to_dict("records"),
                },
            },
        )
        print(table.round(3).to_string())
        print(f"wrote {path}")
        return
    walks, _ = load_walks(args.card, generator=generator)
    if args.action == "fidelity":
        print(_fidelity(generator, walks, args).round(3).to_string())
    else:
        print(f"wrote {show_walks(generator, walks, args.out, args.seed)}")


def show_walks(generator, walks, out, seed: int, columns: int = 7):
    """One row per walk from one anchor: alphas evenly spaced over the walk's range."""
    import torch

    from ..plotting import save_grid

    rng = torch.Generator().manual_seed(seed)
    z = generator.sample_latents(1, generator=rng).float()
    y = (
        torch.randint(generator.num_classes, (1,), generator=rng).to(z.device)
        if generator.num_classes
        else None
    )
    images, captions = [], []
    for t in walks.transformations:
        low, high = walks.alpha_ranges[t]
        alpha = torch.linspace(low, high, columns)
        moved = walks.to(z.device).move(
            z.expand(columns, -1), None if y is None else y.expand(columns), t, alpha.to(z.device)
        )
        images.append(generator.synthesize(moved, None if y is None else y.expand(columns)))
        captions += [f"{t} {a:+.2f}" for a in alpha.tolist()]
    return save_grid(
        torch.cat(images), out, nrow=columns, captions=captions, title=f"walks on {generator.name}"
    )

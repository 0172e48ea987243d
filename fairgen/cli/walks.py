"""``fairgen walks``: learn latent walks (zoom, shifts, rotation, hue, brightness) into a walk card,
measure their fidelity, or draw a grid of what a card's walks do."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_generator,
    add_list,
    add_out,
    add_seed,
    finite_float,
    out_folder,
    positive_int,
    refuse_with,
)

ACTIONS = {
    "learn": "learn one walk per transformation through the generator and write a walk card",
    "fidelity": "measure how well a walk card's walks do their edits",
    "show": "draw a grid: one row per walk, alpha from low to high",
}


# fairgen.walks.TRANSFORMATIONS, named here so that `fairgen --help` imports no torch
# (tests/test_cli.py checks)
TRANSFORMATIONS = ("zoom", "shift_x", "shift_y", "rotate", "hue", "brightness")
# the flags each action reads; any other typed is refused
LEARN_ONLY = (
    "--transformations",
    "--alpha",
    "--per-class",
    "--steps",
    "--batch-size",
    "--lr",
    "--checkpoint",
)
FIDELITY = ("--fidelity-n", "--image-only")  # learn measures fidelity too
SHOW_ONLY = ("--out",)


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "walks",
        "learn latent walks (zoom, shift, rotate, hue, brightness) as views",
        "Learn latent walks into a walk card (learn), measure a card's fidelity (fidelity), or "
        "draw "
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
    add_list(
        p,
        "--transformations",
        "learn: walks to learn (default: all)",
        default=list(TRANSFORMATIONS),
        choices=TRANSFORMATIONS,
    )
    add_list(
        p,
        "--alpha",
        "learn: alpha range of a transformation, e.g. zoom=-0.3:0.3 "
        "(default: fairgen.walks.DEFAULT_ALPHAS)",
        default=[],
        metavar="NAME=LOW:HIGH",
    )
    p.add_argument(
        "--per-class",
        action="store_true",
        help="learn: one walk per class instead of one shared walk",
    )
    p.add_argument("--steps", type=positive_int, default=200, help="learn: optimiser steps")
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=32,
        help="learn: anchors per step (each walked once per transformation)",
    )
    p.add_argument(
        "--lr", type=finite_float, default=0.1, help="learn: peak learning rate (cosine decay)"
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="learn: safetensors checkpoint, written during learning, resumed if present",
    )
    p.add_argument(
        "--fidelity-n",
        type=positive_int,
        default=1000,
        help="learn, fidelity: walked samples per transformation",
    )
    p.add_argument(
        "--image-only",
        action="store_true",
        help="learn, fidelity: fidelity as image error only, even on a world generator",
    )
    add_out(p, ".", "show: walks.png")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def parse_alphas(items: list[str]) -> dict[str, tuple[float, float]]:
    """``["zoom=-0.3:0.3", ...]`` -> ``{"zoom": (-0.3, 0.3)}`` (numbers are checked by the
    learner)."""
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


def _checked_alphas(args) -> dict[str, tuple[float, float]]:
    """``--alpha`` ranges, each of a transformation in ``--transformations`` (named once each)."""
    twice = sorted({t for t in args.transformations if args.transformations.count(t) > 1})
    if twice:
        raise ValueError(f"--transformations names {', '.join(twice)} more than once")
    alphas = parse_alphas(args.alpha)
    unused = sorted(set(alphas) - set(args.transformations))
    if unused:
        raise ValueError(
            f"--alpha {', '.join(unused)}: not among --transformations "
            f"{','.join(args.transformations)}"
        )
    return alphas


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
    """``learn`` holds the card's lock from the start: a second learner into the same card is
    refused."""
    from contextlib import nullcontext

    from plumbing.outputs import output_lock

    from ..walks.card import walk_card_paths

    with output_lock(walk_card_paths(args.card)[0]) if args.action == "learn" else nullcontext():
        _run(args)


def _run(args) -> None:
    from ..generators import load_generator

    used = {"learn": LEARN_ONLY + FIDELITY, "fidelity": FIDELITY, "show": SHOW_ONLY}[args.action]
    ignored = [flag for flag in LEARN_ONLY + FIDELITY + SHOW_ONLY if flag not in used]
    refuse_with(args, f"walks {args.action}", ignored, f"{args.action} does not use them")
    out = out_folder(args) if args.action == "show" else None  # checked before any work
    from ..walks import WalkLearner, load_walks, save_walks

    generator = load_generator(args.generator, device=args.device)
    if args.action == "learn":
        alphas = _checked_alphas(args)
        learner = WalkLearner(
            args.transformations,
            alphas,
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
            f"learned {len(learner.walks_.transformations)} walks on {generator.name} in "
            f"{learner.seconds_:.1f} s "
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
        print(f"wrote {show_walks(generator, walks, out / 'walks.png', args.seed)}")


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

"""``fairgen zoo train``: train the embedded generator from its recipe (into --out, never into the
package)."""

from __future__ import annotations

import argparse

from .common import (
    add_command,
    add_list,
    add_out,
    add_seed,
    out_folder,
    positive_int,
    progress_enabled,
    unit_float,
)


def add_parser(sub) -> None:
    p = add_command(sub, "zoo", "train a generator of the zoo from scratch")
    p.add_argument("action", choices=["train"], help="what to do")
    p.add_argument("name", help="generator to train (world-sprites-z128)")
    p.add_argument("--steps", type=positive_int, default=400, help="optimiser steps")
    p.add_argument(
        "--bias", type=unit_float, default=0.9, help="bias of the training split, in [0, 1]"
    )
    add_list(
        p,
        "--protected",
        "factor(s) tied to the class in the training split (texture, colour)",
        default=["texture"],
    )
    add_seed(p)
    p.add_argument(
        "--eval-n", type=positive_int, default=10_000, help="samples judged after training"
    )
    add_out(
        p, "zoo", "NAME.safetensors (load it with --generator DIR/NAME.safetensors) and NAME.png"
    )
    p.set_defaults(func=run)


def run(args) -> None:
    from plumbing.outputs import output_lock

    from ..world.generator import NAME

    if args.name != NAME:
        raise ValueError(f"zoo train: only {NAME!r} has a training recipe here, got {args.name!r}")
    out = out_folder(args)
    with output_lock(out):  # one trainer per --out folder
        _train(args, out)


def _train(args, out) -> None:
    from ..world.generator import NAME
    from ..world.quality import judge_generator
    from ..world.recipe import RecipeConfig, train_embedded
    from .sample import run as sample

    config = RecipeConfig(
        steps=args.steps, seed=args.seed, bias=args.bias, protected=tuple(args.protected)
    )
    weights = out / f"{NAME}.safetensors"
    model = train_embedded(weights, config, progress=progress_enabled(args))
    quality = judge_generator(model, n=args.eval_n, seed=12345)
    print(f"class fidelity {quality['class_fidelity']:.4f}")
    for name, q in quality["by_factor"].items():
        print(
            f"Cramér's V(class, {name}) {q['cramers_v']:.3f} (bias-corrected "
            f"{q['cramers_v_corrected']:.3f})"
        )
        print(q["histogram"].round(3).to_string())
    print(f"wrote {weights}")
    sample(
        argparse.Namespace(
            generator=str(weights),
            device="cpu",
            seed=0,
            n=64,
            cls=None,
            out=str(out),
            per_page=256,
            list=False,
            stem=NAME,
        )
    )

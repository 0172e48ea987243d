"""``fairgen zoo train``: train the embedded generator from its recipe."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_command, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "zoo", "train a generator of the zoo from scratch")
    p.add_argument("action", choices=["train"])
    p.add_argument("name", help="world-sprites-z128")
    p.add_argument("--steps", type=int, default=400, help="optimiser steps")
    p.add_argument("--bias", type=float, default=0.9, help="bias of the training split, in [0, 1]")
    p.add_argument("--protected", default="texture",
                   help="factor(s) tied to the class in the training split, comma-separated (texture, colour)")
    add_seed(p)
    p.add_argument("--eval-n", type=int, default=10_000, help="samples judged after training")
    p.add_argument("--out", default=None, help="weights file (default: the packaged one)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..world.generator import NAME, WEIGHTS
    from ..world.quality import judge_generator
    from ..world.recipe import RecipeConfig, train_embedded
    from .sample import run as sample

    if args.name != NAME:
        raise SystemExit(f"fairgen zoo train: only {NAME!r} has a training recipe here")
    config = RecipeConfig(steps=args.steps, seed=args.seed, bias=args.bias, protected=tuple(args.protected.split(",")))
    out = Path(args.out or WEIGHTS)
    model = train_embedded(out, config)
    quality = judge_generator(model, n=args.eval_n, seed=12345)
    print(f"class fidelity {quality['class_fidelity']:.4f}")
    for name, q in quality["by_factor"].items():
        print(f"Cramér's V(class, {name}) {q['cramers_v']:.3f} (bias-corrected {q['cramers_v_corrected']:.3f})")
        print(q["histogram"].round(3).to_string())
    sample(argparse.Namespace(generator=str(out), device="cpu", seed=0, n=64, cls=None, out=out.with_suffix(".png")))

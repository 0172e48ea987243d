"""``fairgen judges``: train (into --out, never into the package) or evaluate the embedded world's
judges."""

from __future__ import annotations

from .common import (
    add_command,
    add_device,
    add_n,
    add_out,
    add_seed,
    out_folder,
    positive_int,
    progress_enabled,
    refuse_with,
)


def add_parser(sub) -> None:
    p = add_command(sub, "judges", "train or evaluate the world's judges")
    p.add_argument(
        "action", choices=["train", "eval"], help="train new judges, or evaluate a judges file"
    )
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="train: training steps (default: the recipe's, 500)",
    )
    add_n(p, 10_000, "held-out images per resolution for evaluation")
    p.add_argument(
        "--weights", default=None, help="eval: judges file to evaluate (default: the packaged one)"
    )
    add_seed(p)
    add_device(p)
    add_out(p, "judges", "train: judges.safetensors (load it with load_judges(path=...))")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..world import judges

    if args.action == "eval":
        refuse_with(args, "judges eval", ["--steps", "--out"], "they are for judges train")
        judges.eval_main(
            n=args.n, seed=args.seed, device=args.device, path=args.weights or judges.WEIGHTS
        )
        return
    refuse_with(args, "judges train", ["--weights"], "it is for judges eval")
    out = out_folder(args)
    steps = args.steps or judges.DEFAULT_STEPS
    trained = judges.train_judges(
        steps=steps, seed=args.seed, device=args.device, progress=progress_enabled(args)
    )
    table = judges._evaluate_resolutions(
        trained, n=args.n, seed=judges.EVAL_SEED, device=args.device
    )
    print(table.to_string(index=False))
    print(f"wrote {judges.save_judges(trained, out / 'judges.safetensors', evaluation=table)}")

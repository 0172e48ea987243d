"""``fairgen judges``: train or evaluate the embedded world's judges."""

from __future__ import annotations

from .common import add_command, add_device, add_seed


def add_parser(sub) -> None:
    p = add_command(sub, "judges", "train or evaluate the world's judges")
    p.add_argument("action", choices=["train", "eval"])
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's)")
    p.add_argument("--n", type=int, default=10_000, help="evaluation sample size")
    add_seed(p)
    add_device(p)
    p.add_argument("--out", default=None, help="weights file to write (default: the packaged one)")
    p.set_defaults(func=run)


def run(args) -> None:
    from ..world import judges

    if args.action == "train":
        steps = {} if args.steps is None else {"steps": args.steps}
        judges.train_main(seed=args.seed, out=args.out or judges.WEIGHTS, device=args.device, **steps)
    else:
        judges.eval_main(n=args.n, seed=args.seed, device=args.device)

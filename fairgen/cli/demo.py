"""``fairgen demo``: training arms on the embedded world, each audited (three quick, five full)."""

from __future__ import annotations

from .common import add_command, add_device, add_out, add_seed, out_folder, progress_enabled


def add_parser(sub) -> None:
    p = add_command(
        sub,
        "demo",
        "end to end on the embedded default: training arms, each audited",
        "End to end on the embedded default generator, offline: train encoders on the biased\n"
        "world and on generator streams, and audit each.\n\n"
        "quick (the default, CPU <= 10 min) runs three arms: a real biased data, c the raw\n"
        "generator stream, d the steered stream.\n"
        "--full (GPU minutes) adds b real balanced data (an oracle) and e the steered stream\n"
        "with counterfactual views, and trains a resnet18 longer on more images.",
    )
    p.add_argument(
        "--preset",
        default="quick",
        choices=["quick", "full"],
        help="quick: three arms, CPU <= 10 min; full: five arms, GPU minutes",
    )
    p.add_argument(
        "--full", dest="preset", action="store_const", const="full", help="same as --preset full"
    )
    add_out(p, "demo_out", "table.md, table.png, reports, encoders and cards")
    add_seed(p)
    add_device(p)
    p.set_defaults(func=run)


def run(args):
    from plumbing.outputs import output_lock

    out = out_folder(args)
    with output_lock(out):  # one demo per --out folder
        return _run(args, out)


def _run(args, out):
    from ..world.demo import run_demo, seed_overrides

    table = run_demo(
        args.preset,
        out,
        device=args.device,
        overrides=seed_overrides(args.seed),
        progress=progress_enabled(args),
    )
    print()
    print((out / "table.md").read_text())
    print(f"full report: {out}/ (table.md, table.png, one audit folder per arm)")
    return table

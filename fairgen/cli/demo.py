"""``fairgen demo``: the five-arm comparison on the embedded world, audited."""

from __future__ import annotations

from pathlib import Path

from .common import add_command, add_seed, cuda_available


def add_parser(sub) -> None:
    p = add_command(sub, "demo", "end to end on the embedded default: five training arms, audited")
    p.add_argument("--preset", default="quick", choices=["quick", "full"], help="quick: CPU <= 10 min; full: GPU minutes")
    p.add_argument("--full", dest="preset", action="store_const", const="full", help="same as --preset full")
    p.add_argument("--out", default="demo_out", help="folder for the table, reports, encoders and cards")
    add_seed(p)
    p.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    p.set_defaults(func=run)


def run(args):
    from ..world.demo import replace_preset, run_demo

    device = args.device or ("cuda" if cuda_available() else "cpu")
    table = run_demo(args.preset, args.out, device=device, config=replace_preset(args.preset, seed=args.seed))
    print()
    print((Path(args.out) / "table.md").read_text())
    print(f"full report: {args.out}/ (table.md, table.png, one audit folder per arm)")
    return table

"""The ``fairgen`` command: one module per subcommand, each a thin layer over the library."""

from __future__ import annotations

import argparse
import sys

from . import audit, demo, judges, memorisation, sample, steer, stream, train, walks, world, zoo

DESCRIPTION = """\
fairgen turns a pretrained generative model into a fair, shareable source of training data.

Typical flow: look at the world (`fairgen world`), sample a generator (`fairgen sample`), learn
and remove a protected attribute (`fairgen steer`), write a stream card and train on it
(`fairgen stream`, `fairgen train`), audit the result (`fairgen audit`). `fairgen demo` runs
everything end to end on the embedded default generator, offline.
"""

COMMANDS = (demo, world, sample, zoo, judges, steer, stream, train, audit, memorisation, walks)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fairgen", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"fairgen {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0

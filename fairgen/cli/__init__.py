"""The ``fairgen`` command: one module per subcommand, each a thin layer over the library."""

from __future__ import annotations

import argparse
import errno
import sys

from . import (
    audit,
    demo,
    judges,
    memorisation,
    review,
    sample,
    steer,
    stream,
    train,
    walks,
    world,
    zoo,
)
from .common import in_flags, progress_enabled, resolve_device, typed_flags

DESCRIPTION = """\
fairgen turns a pretrained generative model into a fair, shareable source of training data.

Typical flow: look at the world (`fairgen world`), sample a generator (`fairgen sample`), learn
and remove a protected attribute (`fairgen steer`), write a stream card and train on it
(`fairgen stream`, `fairgen train`), audit the result (`fairgen audit`). `fairgen demo` runs
everything end to end on the embedded default generator, offline.
"""

COMMANDS = (
    demo,
    world,
    sample,
    zoo,
    judges,
    steer,
    review,
    stream,
    train,
    audit,
    memorisation,
    walks,
)


def build_parser() -> argparse.ArgumentParser:
    from fairgen import __version__

    parser = argparse.ArgumentParser(
        prog="fairgen",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fairgen {__version__}")
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        help="`fairgen COMMAND --help` lists its options",
    )
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; bad input (ValueError, FileNotFoundError, a missing extra) exits 2 with one
    line."""
    args = build_parser().parse_args(argv)
    args.typed = typed_flags(build_parser, argv)  # flags a mode would ignore are refused
    from ..checks import MissingExtraError

    args.quiet = not progress_enabled(args)  # TQDM_DISABLE=1 means --quiet, for every command
    try:
        if hasattr(
            args, "device"
        ):  # one meaning of --device everywhere: auto, or a device that exists
            args.device = resolve_device(args.device)
        args.func(args)
    except (ValueError, FileNotFoundError, MissingExtraError) as error:
        from plumbing.files import printable

        # a message may quote a received file; escaped, it cannot drive the terminal
        message = in_flags(printable(error))  # the flags the user typed, not Python arguments
        print(f"fairgen {args.command}: error: {message}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        print(
            f"fairgen {args.command}: error: disk full ({error}); outputs are written whole, so "
            "the "
            "previous ones were left as they were",
            file=sys.stderr,
        )
        return 2
    return 0

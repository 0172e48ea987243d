"""Options shared by every command (device, seed, output folder, generator) and how they are read."""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends each option's default to its help."""


def add_command(sub, name: str, summary: str, description: str | None = None) -> argparse.ArgumentParser:
    """A subcommand with the shared help formatter; ``description`` defaults to the summary."""
    return sub.add_parser(name, help=summary, description=description or summary[0].upper() + summary[1:] + ".",
                          formatter_class=HelpFormatter)


def add_seed(parser: argparse.ArgumentParser, default: int = 0) -> None:
    parser.add_argument("--seed", type=int, default=default, help="random seed (same seed, same result)")


def add_device(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    parser.add_argument("--device", default=default, help="torch device, e.g. cpu, cuda or cuda:1")


def add_generator(parser: argparse.ArgumentParser, default: str = "world-sprites-z128") -> None:
    parser.add_argument("--generator", default=default,
                        help="registered name (see `fairgen sample --list`) or a local weights folder/file")


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def add_generator_options(parser: argparse.ArgumentParser) -> None:
    """BigGAN's --truncation and --classes, for every command that loads a generator."""
    parser.add_argument("--truncation", type=float, default=None,
                        help="BigGAN truncation in (0, 1] (default: the generator's own, 0.5 for BigGAN)")
    parser.add_argument("--classes", default=None,
                        help="comma list of the model's class indices to use, e.g. 207,208 (BigGAN: ImageNet ids)")


def generator_options(args) -> dict:
    """The generator options given on the command line (none when not given, so every generator accepts them)."""
    options = {}
    if getattr(args, "truncation", None) is not None:
        options["truncation"] = args.truncation
    if getattr(args, "classes", None):
        try:
            options["classes"] = [int(c) for c in args.classes.split(",") if c.strip()]
        except ValueError:
            raise ValueError(f"--classes must be a comma list of integers, got {args.classes!r}") from None
    return options

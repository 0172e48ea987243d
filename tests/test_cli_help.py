"""Every `fairgen` command's --help (each command and sub-action): it exits 0, every flag says
what it does, and a default is shown once, never as "default: None"."""

import argparse
import re

import pytest

from fairgen.cli import build_parser, main


def _commands(parser=None, path=()):
    """(path, parser) for the top-level parser and every subcommand under it."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from _commands(child, (*path, name))


def _actions(parser):
    """Subcommands whose first positional is an action (`walks show`) get --help per action too."""
    for action in parser._actions:
        if (
            action.choices
            and not action.option_strings
            and not isinstance(action, argparse._SubParsersAction)
        ):
            return list(action.choices)
    return []


COMMANDS = [path for path, _ in _commands()]
CALLS = [list(path) for path in COMMANDS] + [
    [*path, action] for path, parser in _commands() for action in _actions(parser)
]


def test_the_walk_covers_every_command():
    names = {path[0] for path in COMMANDS if path}
    assert {"demo", "steer", "stream", "train", "audit", "walks", "judges", "zoo"} <= names
    assert ["walks", "show"] in CALLS and ["judges", "eval"] in CALLS


@pytest.mark.parametrize("argv", CALLS, ids=" ".join)
def test_help_exits_0_and_shows_each_default_once(argv, capsys):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: fairgen")
    flat = re.sub(r"\s+", " ", text)
    assert "default: None" not in flat
    assert "(default: [" not in flat  # lists are shown as typed: a,b
    options = flat.split(" options: ", 1)[-1]
    for option in re.split(r" (?=--?[a-z])", options):  # one chunk per option
        assert option.count("(default") <= 1, option


@pytest.mark.parametrize("path", [p for p in COMMANDS if p], ids=" ".join)
def test_every_flag_has_help_and_at_most_one_default(path):
    parser = dict(_commands())[path]
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help, f"{' '.join(path)} {action.option_strings or action.dest} has no help"
        shown = formatter._expand_help(action)
        assert shown.count("(default") <= 1, shown
        assert "default: None" not in shown


def test_a_default_the_help_does_not_mention_is_appended():
    parser = dict(_commands())[("stream",)]
    formatter = parser._get_formatter()
    shown = {a.dest: formatter._expand_help(a) for a in parser._actions}
    assert shown["n"].endswith("(default: 1000)")
    assert shown["views"].endswith("(default: anchor,neighbour)")
    assert "default" not in shown["new"]  # no default: nothing appended

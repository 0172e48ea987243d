"""One set of command-line conventions: list arguments read one way everywhere, flags a mode would
ignore refused, and errors that name the flag and value the user typed."""

import pytest
import torch

from fairgen.cli import build_parser, main

# (argv before the list flag, the flag): every list option of every command
LISTS = [
    (["steer"], "--protected"),
    (["audit", "--encoder", "e.safetensors"], "--protected"),
    (["zoo", "train", "world-sprites-z128"], "--protected"),
    (["stream"], "--views"),
    (["walks", "learn"], "--transformations"),
    (["sample"], "--classes"),
]
ITEMS = {
    "--protected": ["texture", "colour"],
    "--views": ["anchor", "flip"],
    "--transformations": ["zoom", "hue"],
    "--classes": ["3", "4"],
}


@pytest.mark.parametrize("head, flag", LISTS, ids=lambda x: x if isinstance(x, str) else x[0])
def test_a_list_reads_the_same_with_commas_spaces_or_both(head, flag):
    a, b = ITEMS[flag]
    parse = build_parser().parse_args
    dest = flag[2:]
    got = [
        getattr(parse([*head, flag, *typed]), dest)
        for typed in ([f"{a},{b}"], [a, b], [f"{a},", b])
    ]
    expected = [a, b]  # --classes holds names too (prompt templates); ints are checked on use
    assert got == [expected] * 3


def test_a_list_item_outside_the_choices_is_named(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["stream", "--views", "anchor,walkk"])
    assert "argument --views: 'walkk' is not one of anchor, neighbour" in capsys.readouterr().err


def test_the_view_kinds_the_command_offers_are_the_librarys():
    from fairgen.cli.stream import VIEW_KINDS
    from fairgen.views import VIEW_KINDS as LIBRARY

    assert tuple(VIEW_KINDS) == tuple(LIBRARY)


# ---------------------------------------------------------------- flags that cannot combine


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["stream", "--new", "{tmp}/s.json", "--spec", "x.json"],
            "--new cannot be combined with --spec",
        ),
        (["stream", "--new", "{tmp}/s.json", "--n", "5"], "--new cannot be combined with --n"),
        (
            ["stream", "--spec", "x.json", "--export", "{tmp}/e", "--views", "anchor,flip"],
            "--spec cannot be combined with --views",
        ),
        (
            ["audit", "--encoder", "e.safetensors", "--test-fraction", "0.3"],
            "--data world cannot be combined with --test-fraction",
        ),
        (
            ["audit", "--encoder", "e", "--data", "{tmp}", "--bias", "0.5"],
            "--data .* cannot be combined with --bias",
        ),
        (["audit", "--encoder", "e", "--eraser-n", "100"], "--eraser-n .* give --erase-with"),
        (["walks", "show", "--steps", "5"], "walks show cannot be combined with --steps"),
        (["walks", "fidelity", "--out", "{tmp}"], "walks fidelity cannot be combined with --out"),
        (["judges", "eval", "--out", "{tmp}/j"], "judges eval cannot be combined with --out"),
    ],
)
def test_a_flag_the_mode_would_ignore_is_refused(argv, message, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    import re

    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "s.json").exists() and not (tmp_path / "j").exists()


def test_the_flags_a_mode_does_use_are_accepted(tmp_path, capsys):
    assert (
        main(["stream", "--new", str(tmp_path / "s.json"), "--views", "anchor", "neighbour"]) == 0
    )
    assert (tmp_path / "s.json").exists()


# ---------------------------------------------------------------- errors in the user's words


@pytest.mark.parametrize(
    "argv, message",
    [
        (["steer", "--n", "50"], "argument --n: expected an integer >= 100, got '50'"),
        (["steer", "--eval-n", "0"], "argument --eval-n: expected a positive integer, got '0'"),
        (
            ["stream", "--spec", "s.json", "--export", "e", "--n", "0"],
            "argument --n: expected a positive integer, got '0'",
        ),
        (
            ["stream", "--new", "{tmp}/s.json", "--views", "anchor"],
            "--views needs at least 2 views .*got anchor",
        ),
        (["steer", "--protected", "species"], "--protected species: without --labeler"),
        (
            ["stream", "--new", "{tmp}/s.json", "--views", "anchor,flip"],
            "--views flip needs --eraser",
        ),
        (["stream", "--new", "{tmp}/s.json", "--views", "walk,walk"], "--views walk needs --walks"),
        (
            ["steer", "--labeler", "world:colour", "--protected", "a,b"],
            "--protected a,b: a --labeler labels one attribute",
        ),
        (["steer", "--protected", "shape"], "--protected shape labels the generator's class"),
        (["walks", "show", "--out", "{tmp}/walks.png"], "--out is a folder"),
        (
            [
                "sample",
                "--generator",
                "test_confirmed_stream:make_tiny",
                "--class",
                "1",
                "--out",
                "{tmp}",
            ],
            "--class 1: .* is unconditional",
        ),
        (
            ["walks", "learn", "--card", "{tmp}/w", "--transformations", "hue,zoom,hue"],
            "--transformations names hue ",
        ),
        (
            [
                "walks",
                "learn",
                "--card",
                "{tmp}/w",
                "--transformations",
                "hue",
                "--alpha",
                "zoom=0:1",
            ],
            "--alpha zoom: not",
        ),
        (
            ["sample", "--generator", "biggan-deep-128", "--out", "{tmp}"],
            "give that folder as --generator FOLDER",
        ),
    ],
)
def test_errors_name_the_flag_and_value_typed(argv, message, tmp_path, capsys):
    import re

    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    if argv[0] == "steer":  # its card (and lock) go to a fresh folder, not the working directory
        argv += ["--out", str(tmp_path / "card")]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code == 2
    err = capsys.readouterr().err
    assert re.search(message, err), err
    assert "weights_dir" not in err and "kinds must" not in err


def constant(images):
    """A labeler that says the same for every image: nothing to steer."""
    return torch.zeros(len(images), dtype=torch.long)


def test_a_fitting_error_names_the_attribute_the_user_named(tmp_path, capsys):
    argv = ["steer", "--labeler", "test_cli_conventions:constant", "--protected", "species"]
    assert main([*argv, "--n", "100", "--quiet", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "protected attribute 'species' (--protected species) takes a single value" in err
    assert "'protected'" not in err


# ---------------------------------------------------------------- what audit prints


def _report():
    import numpy as np

    from audits import AuditReport, group_fairness, leakage

    rng = np.random.default_rng(0)
    group = rng.integers(0, 2, 200)
    target = rng.integers(0, 2, 200)
    x = rng.normal(size=(200, 4)) + group[:, None] + 2 * target[:, None]
    report = AuditReport("audit of tiny", {"encoder": "tiny"})
    report.add("hair leakage", leakage(x, group, n_repeats=1, n_permutations=19))
    report.add(
        "hair fairness",
        group_fairness(x[:100], target[:100], x[100:], target[100:], group[100:], n_bootstrap=20),
    )
    return report


def test_audit_prints_the_verdicts_and_where_the_report_is(capsys):
    from fairgen.cli.audit import _print

    report = _report()
    _print(report, "out", verbose=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "audit of tiny" and len(lines) == 4
    assert lines[1].startswith("  hair leakage: leaks (balanced accuracy")
    assert lines[2].startswith("  hair fairness: demographic-parity difference")
    assert lines[3] == "full report: out/report.md (report.json and PNGs beside it)"
    _print(report, "out", verbose=True)  # --verbose: the whole report.md
    assert capsys.readouterr().out.startswith(report.to_markdown())

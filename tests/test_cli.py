"""The `fairgen` command: every subcommand has --help (tests/test_cli_help.py checks each
flag's), the shared options mean one thing everywhere, and the everyday commands work end to end."""

import json
import subprocess
import sys

import pytest
import torch

from fairgen.cli import build_parser, main

COMMANDS = [
    "world",
    "sample",
    "zoo",
    "judges",
    "steer",
    "review",
    "stream",
    "train",
    "audit",
    "memorisation",
    "demo",
]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    assert "usage: fairgen" in capsys.readouterr().out


def test_help_imports_no_torch_and_is_fast():
    code = (
        "import sys; from fairgen.cli import build_parser; build_parser(); print('torch' in "
        "sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "False"


def test_the_walks_command_lists_the_walks_the_library_has():
    from fairgen.cli.walks import TRANSFORMATIONS
    from fairgen.walks import TRANSFORMATIONS as LIBRARY

    assert TRANSFORMATIONS == LIBRARY


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("fairgen 0.")


def test_world_writes_a_labelled_grid_into_the_out_folder(tmp_path):
    assert main(["world", "--n", "8", "--out", str(tmp_path), "--quiet"]) == 0
    assert (tmp_path / "world.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_many_world_images_are_written_as_pages(tmp_path, capsys):
    assert main(["world", "--n", "10", "--per-page", "4", "--out", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "world-000.png",
        "world-001.png",
        "world-002.png",
    ]
    assert "3 pages" in capsys.readouterr().out


def test_sample_writes_a_grid(tmp_path):
    assert main(["sample", "--n", "8", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "samples.png").stat().st_size > 1000


def test_sample_lists_the_registered_generators(capsys):
    assert main(["sample", "--list"]) == 0
    assert "world-sprites-32" in capsys.readouterr().out.split()


def test_unknown_generator_is_a_clean_error(tmp_path, capsys):
    assert main(["sample", "--generator", "nope", "--out", str(tmp_path)]) == 2
    assert "world-sprites-32" in capsys.readouterr().err


def test_out_that_looks_like_a_file_name_is_a_clean_error(tmp_path, capsys):
    assert main(["world", "--n", "4", "--out", str(tmp_path / "grid.png")]) == 2
    assert "--out is a folder" in capsys.readouterr().err


def test_device_auto_picks_what_is_there_and_a_missing_device_is_a_clean_error(tmp_path, capsys):
    from fairgen.cli.common import resolve_device

    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert main(["sample", "--n", "4", "--device", "tpu9", "--out", str(tmp_path)]) == 2
    assert "--device" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(["sample", "--n", "4", "--device", "cuda", "--out", str(tmp_path)]) == 2
        assert "CUDA is not available" in capsys.readouterr().err


def test_quiet_and_tqdm_disable_turn_progress_bars_off(monkeypatch):
    from fairgen.cli.common import progress_enabled

    parser = build_parser()
    assert progress_enabled(parser.parse_args(["world"]))
    assert not progress_enabled(parser.parse_args(["world", "--quiet"]))
    monkeypatch.setenv("TQDM_DISABLE", "1")
    assert not progress_enabled(parser.parse_args(["world"]))


def test_steer_stream_train_audit_chain(tmp_path, capsys):
    card = tmp_path / "card"
    assert main(["steer", "--n", "3000", "--eval-n", "300", "--out", str(card)]) == 0
    printed = capsys.readouterr().out
    assert "Cramér V" in printed and "class fidelity" in printed
    report = json.loads((card / "eraser_card.json").read_text())["report"]
    assert report["steered"]["cramers_v"] < report["raw"]["cramers_v"]

    spec = tmp_path / "stream.json"
    assert (
        main(["stream", "--new", str(spec), "--eraser", str(card), "--views", "anchor,flip"]) == 0
    )
    assert (
        main(
            [
                "stream",
                "--spec",
                str(spec),
                "--export",
                str(tmp_path / "png"),
                "--n",
                "4",
                "--batch-size",
                "4",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "png").rglob("*.png"))) == 8

    run = tmp_path / "run"
    assert (
        main(
            [
                "train",
                "--spec",
                str(spec),
                "--steps",
                "3",
                "--batch-size",
                "8",
                "--out",
                str(run),
                "--supervised",
                "--quiet",
            ]
        )
        == 0
    )
    assert (run / "encoder.safetensors").exists() and (run / "run.json").exists()
    # resuming to a larger --steps trains the missing steps
    assert (
        main(
            [
                "train",
                "--spec",
                str(spec),
                "--steps",
                "5",
                "--batch-size",
                "8",
                "--out",
                str(run),
                "--supervised",
                "--resume",
                "--quiet",
            ]
        )
        == 0
    )
    assert "resumed at step 3, trained 2 steps, now at step 5 of 5" in capsys.readouterr().out

    audit = tmp_path / "audit"
    assert (
        main(
            [
                "audit",
                "--encoder",
                str(run / "encoder.safetensors"),
                "--n-probe",
                "300",
                "--n-test",
                "300",
                "--permutations",
                "19",
                "--bootstrap",
                "50",
                "--out",
                str(audit),
                "--erase-with",
                str(spec),
                "--eraser-n",
                "600",
            ]
        )
        == 0
    )
    assert (audit / "report.json").exists() and (audit / "report.md").exists()
    assert (audit / "erased" / "report.json").exists() and (
        audit / "feature_eraser.safetensors"
    ).exists()
    assert "texture erased" in capsys.readouterr().out


def test_stream_without_a_spec_or_new_is_a_clean_error(capsys):
    assert main(["stream"]) == 2
    assert "--new" in capsys.readouterr().err


def test_confirmed_steer_stream_train_chain(tmp_path, capsys):
    """--method confirmed: the card records its guarantee and labelers, the stream (whose world:
    labelers
    load by name) exports exact batches, and training runs on it."""
    card = tmp_path / "card"
    assert (
        main(
            [
                "steer",
                "--method",
                "confirmed",
                "--n",
                "2000",
                "--eval-n",
                "400",
                "--target",
                "0.4,0.2,0.2,0.2",
                "--out",
                str(card),
                "--quiet",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert (
        "syntheses" in printed
        and "shares of texture" in printed
        and "0.40/0.20/0.20/0.20" in printed
    )
    written = json.loads((card / "eraser_card.json").read_text())
    assert written["guarantee"] == "confirmed" and written["labelers"] == {
        "protected": "world:texture"
    }
    assert (
        written["report"]["steered"]["cramers_v_by"]["protected"]
        < 0.02
        < written["report"]["raw"]["cramers_v_by"]["protected"]
    )
    assert written["report"]["steered"]["class_fidelity"] >= 0.99

    spec = tmp_path / "stream.json"
    assert (
        main(["stream", "--new", str(spec), "--eraser", str(card), "--views", "anchor,neighbour"])
        == 0
    )
    assert json.loads(spec.read_text())["labelers"] == {"protected": "world:texture"}
    assert (
        main(
            [
                "stream",
                "--spec",
                str(spec),
                "--export",
                str(tmp_path / "png"),
                "--n",
                "10",
                "--batch-size",
                "10",
            ]
        )
        == 0
    )
    assert len(list((tmp_path / "png").rglob("*.png"))) == 20
    assert (
        main(
            [
                "train",
                "--spec",
                str(spec),
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(tmp_path / "run"),
                "--supervised",
                "--quiet",
                "--labeler",
                "world:texture",
            ]
        )
        == 0
    )
    assert main(["steer", "--keep-labeler", "world:colour", "--n", "200", "--out", str(card)]) == 2
    assert "--keep-labeler needs --method confirmed" in capsys.readouterr().err

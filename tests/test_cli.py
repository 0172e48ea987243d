"""The `fairgen` command: every subcommand has --help, and the everyday ones work end to end."""

import json

import pytest

from fairgen.cli import build_parser, main

COMMANDS = ["world", "sample", "zoo", "judges", "steer", "stream", "train", "audit", "memorisation", "demo"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args([command, "--help"])
    assert info.value.code == 0
    assert "usage: fairgen" in capsys.readouterr().out


def test_world_writes_a_labelled_grid(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["world", "--n", "8", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sample_writes_a_grid(tmp_path):
    out = tmp_path / "samples.png"
    assert main(["sample", "--n", "8", "--out", str(out)]) == 0
    assert out.stat().st_size > 1000


def test_unknown_generator_is_a_clean_error(tmp_path, capsys):
    assert main(["sample", "--generator", "nope", "--out", str(tmp_path / "x.png")]) == 2
    assert "world-sprites-32" in capsys.readouterr().err


def test_steer_stream_train_audit_chain(tmp_path, capsys):
    card = tmp_path / "card"
    assert main(["steer", "--n", "3000", "--eval-n", "1000", "--out", str(card)]) == 0
    printed = capsys.readouterr().out
    assert "Cramér V" in printed and "class fidelity" in printed
    report = json.loads((tmp_path / "card.json").read_text())["report"]
    assert report["steered"]["cramers_v"] < report["raw"]["cramers_v"]

    spec = tmp_path / "stream.json"
    assert main(["stream", "--new", str(spec), "--eraser", str(card), "--views", "anchor,flip"]) == 0
    assert main(["stream", "--spec", str(spec), "--export", str(tmp_path / "png"), "--n", "4", "--batch-size", "4"]) == 0
    assert len(list((tmp_path / "png").rglob("*.png"))) == 8

    run = tmp_path / "run"
    assert main(["train", "--spec", str(spec), "--steps", "3", "--batch-size", "8", "--out", str(run), "--supervised"]) == 0
    assert (run / "encoder.safetensors").exists()
    # resuming a finished run restores its checkpoint and has nothing left to do
    assert main(["train", "--spec", str(spec), "--steps", "3", "--batch-size", "8", "--out", str(run), "--supervised", "--resume"]) == 0
    assert "trained 3 steps" in capsys.readouterr().out

    audit = tmp_path / "audit"
    assert main(["audit", "--encoder", str(run / "encoder.safetensors"), "--n-probe", "300", "--n-test", "300", "--out", str(audit),
                 "--erase-with", str(spec), "--eraser-n", "600"]) == 0
    assert (audit / "report.json").exists() and (audit / "report.md").exists()
    assert (audit / "erased" / "report.json").exists() and (audit / "feature_eraser.safetensors").exists()
    assert "texture erased" in capsys.readouterr().out


def test_stream_without_a_spec_or_new_is_a_clean_error(capsys):
    assert main(["stream"]) == 2
    assert "--new" in capsys.readouterr().err

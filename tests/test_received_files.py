"""Files from someone else are data (issue 18, part A): an entry point named inside a stream card
or a
checkpoint runs only when the user allows it on the command line (positive controls here; the
refusals are in tests/bad_input_cases.py), and weights files hash the same wherever they are
saved."""

import hashlib
import json
import sys

import pytest

from fairgen.cli import main

HUBCONF = """
def x(device="cpu", **options):
    open({marker!r}, "w").write("ran")
    from fairgen import load_generator
    return load_generator("world-sprites-32", device=device)
"""


@pytest.fixture()
def hub_card(tmp_path):
    """A stream card naming torch.hub:load, with the hubconf.py it loads in its own folder."""
    from fairgen import load_generator
    from fairgen.stream import make_spec

    folder = tmp_path / "card"
    (folder / "hub").mkdir(parents=True)
    marker = tmp_path / "ran.txt"
    (folder / "hub" / "hubconf.py").write_text(HUBCONF.format(marker=str(marker)))
    spec = make_spec(load_generator("world-sprites-32"), augment="none").to_dict()
    spec.update(
        generator="torch.hub:load",
        generator_options={"repo_or_dir": "hub", "model": "x", "source": "local"},
    )
    (folder / "stream.json").write_text(json.dumps(spec))
    return folder / "stream.json", marker


def _export(card, out, *flags):
    return main(
        [
            "stream",
            "--spec",
            str(card),
            "--export",
            str(out),
            "--n",
            "2",
            "--batch-size",
            "2",
            "--quiet",
            *flags,
        ]
    )


def test_a_cards_entry_point_runs_only_when_the_user_allows_that_one(hub_card, tmp_path, capsys):
    card, marker = hub_card
    for flags in ([], ["--allow-entry-point", "logging:basicConfig"]):
        assert _export(card, tmp_path / "refused", *flags) == 2
        assert "--allow-entry-point torch.hub:load" in capsys.readouterr().err
        assert not marker.exists()
    assert (
        _export(card, tmp_path / "allowed", "--allow-entry-point", "torch.hub:load") == 0
    )  # positive control
    assert marker.read_text() == "ran"
    assert len(list((tmp_path / "allowed").rglob("*.png"))) == 4  # 2 samples, 2 views each


def test_trust_entry_points_allows_any_and_python_takes_an_explicit_list(hub_card, tmp_path):
    from fairgen.stream import Stream, StreamSpec

    card, marker = hub_card
    assert _export(card, tmp_path / "trusted", "--trust-entry-points") == 0
    marker.unlink()
    with pytest.raises(ValueError, match=r"allow_entry_points=\['torch.hub:load'\]"):
        StreamSpec.load(card)
    spec = StreamSpec.load(card, allow_entry_points=["torch.hub:load"])
    assert spec.generator_options["repo_or_dir"] == str(
        card.parent / "hub"
    )  # resolved inside the card's folder
    assert Stream.from_spec(spec, 2).next_batch()["views"].shape[0] == 2
    assert marker.exists()


def test_a_resumed_run_whose_checkpoint_names_an_entry_point_needs_the_flag_again(
    hub_card, tmp_path, capsys
):
    card, marker = hub_card
    out = (
        card.parent
    )  # the run folder holds the card and its hub, so the checkpoint names them relative to it
    train = ["train", "--spec", str(card), "--out", str(out), "--batch-size", "4", "--quiet"]
    assert main([*train, "--steps", "1", "--allow-entry-point", "torch.hub:load"]) == 0
    marker.unlink()
    resume = [
        "train",
        "--resume",
        "--out",
        str(out),
        "--steps",
        "2",
        "--batch-size",
        "4",
        "--quiet",
    ]
    assert main(resume) == 2
    assert "--allow-entry-point torch.hub:load" in capsys.readouterr().err
    assert not marker.exists()
    assert main([*resume, "--allow-entry-point", "torch.hub:load"]) == 0
    assert marker.exists()


def test_an_entry_point_the_user_types_runs_and_the_card_it_writes_asks_again(
    tmp_path, monkeypatch, capsys
):
    (tmp_path / "mygen_received.py").write_text(
        "def make(device='cpu', **options):\n"
        "    from fairgen import load_generator\n"
        "    return load_generator('world-sprites-32', device=device)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    card = tmp_path / "s.json"
    assert (
        main(
            [
                "stream",
                "--new",
                str(card),
                "--generator",
                "mygen_received:make",
                "--augment",
                "none",
            ]
        )
        == 0
    )
    assert _export(card, tmp_path / "x") == 2
    assert "--allow-entry-point mygen_received:make" in capsys.readouterr().err
    assert _export(card, tmp_path / "y", "--allow-entry-point", "mygen_received:make") == 0
    sys.modules.pop("mygen_received", None)


def test_the_same_encoder_weights_hash_the_same_wherever_they_are_saved(tmp_path):
    from fairgen.contrastive import TrainConfig, Trainer
    from plumbing.files import read_safetensors_metadata

    digests = []
    for name in ("a", "some/other/folder"):
        folder = tmp_path / name
        config = TrainConfig(
            encoder="small_cnn",
            projection_hidden_dim=8,
            projection_dim=4,
            augment=None,
            checkpoint_dir=str(folder),
            progress=name == "a",
            seed=3,
        )
        trainer = Trainer(config)
        trainer.save_encoder(folder / "encoder.safetensors")
        data = (folder / "encoder.safetensors").read_bytes()
        assert str(tmp_path).encode() not in data  # no local path travels with the weights
        assert (
            read_safetensors_metadata(folder / "encoder.safetensors")["config"]["checkpoint_dir"]
            is None
        )
        digests.append(hashlib.sha256(data).hexdigest())
    assert digests[0] == digests[1]

    from fairgen.contrastive import load_encoder

    load_encoder(tmp_path / "a" / "encoder.safetensors")

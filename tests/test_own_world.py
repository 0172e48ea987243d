"""End to end from the shell on a world of one's own: a tiny random BigGAN folder, a labeler given
as package.module:callable and a small labelled image folder written here.
steer -> stream --new -> train -> audit --data; every folder still works after it is moved,
every report carries its provenance."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
import torch
from test_biggan import save_weights, tiny_state
from torchvision.io import encode_png

from fairgen.cli import main

LABELER = '''
import torch

def brightness(images):
    """1 where the image's mean is above 0.485 (about the tiny random BigGAN's median), else 0."""
    return (images.mean(dim=(1, 2, 3)) > 0.485).long()

def wrong_shape(images):
    return torch.zeros(len(images), 3, 2)
'''


@pytest.fixture(scope="module")
def own_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("own")
    save_weights(root / "biggan", tiny_state())
    (root / "mylabels.py").write_text(LABELER)
    images = root / "photos"
    g = torch.Generator().manual_seed(0)
    for i in range(48):  # target: which half is red; protected: bright or dark
        kind, tone = ("left", "right")[i % 2], ("dark", "bright")[(i // 2) % 2]
        image = torch.rand(3, 32, 32, generator=g) * 0.3 + (0.6 if tone == "bright" else 0.1)
        image[0, :, :16] += 0.3 if kind == "left" else 0.0
        image[0, :, 16:] += 0.3 if kind == "right" else 0.0
        folder = images / f"side={kind}" / f"tone={tone}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:03d}.png").write_bytes(
            encode_png((image.clamp(0, 1) * 255).byte()).numpy().tobytes()
        )
    sys.path.insert(0, str(root))
    yield root
    sys.path.remove(str(root))


def test_steer_stream_train_audit_on_a_tiny_biggan_and_an_image_folder(own_world, tmp_path, capsys):
    work = tmp_path / "work"
    biggan = own_world / "biggan"
    assert (
        main(
            [
                "steer",
                "--generator",
                str(biggan),
                "--truncation",
                "0.5",
                "--labeler",
                "mylabels:brightness",
                "--n",
                "400",
                "--eval-n",
                "200",
                "--quiet",
                "--out",
                str(work / "card"),
            ]
        )
        == 0
    )
    text = (work / "card" / "eraser_card.json").read_text()  # steer --out is the card's folder
    card = json.loads(text)
    assert card["labeler"] == {"name": "mylabels:brightness"}
    assert card["generator"]["name"] == "biggan" and len(card["generator"]["sha256"]) == 64
    assert str(own_world) not in text  # no absolute path in a card

    assert (
        main(
            [
                "stream",
                "--new",
                str(work / "stream.json"),
                "--generator",
                str(biggan),
                "--truncation",
                "0.5",
                "--eraser",
                str(work / "card"),
                "--views",
                "anchor,neighbour",
            ]
        )
        == 0
    )
    spec = json.loads((work / "stream.json").read_text())
    assert spec["generator"] == "biggan" and spec["eraser"] == "card/eraser_card.json"
    assert spec["resolution"] == 32 and spec["generator_options"] == {"truncation": 0.5}
    assert (work / "biggan" / "pytorch_model.bin").is_file()  # brought beside the spec

    assert (
        main(
            [
                "train",
                "--spec",
                str(work / "stream.json"),
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(work / "run"),
            ]
        )
        == 0
    )
    # the whole folder moves: the run's spec still finds its generator and card
    moved = shutil.move(str(work), str(tmp_path / "elsewhere"))
    assert (
        main(
            [
                "stream",
                "--spec",
                f"{moved}/run/stream.json",
                "--export",
                str(tmp_path / "x"),
                "--n",
                "2",
                "--batch-size",
                "2",
                "--quiet",
            ]
        )
        == 0
    )

    out = tmp_path / "audit"
    assert (
        main(
            [
                "audit",
                "--encoder",
                f"{moved}/run/encoder.safetensors",
                "--data",
                str(own_world / "photos"),
                "--target",
                "side",
                "--protected",
                "tone",
                "--permutations",
                "9",
                "--bootstrap",
                "50",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert set(report["sections"]) == {"tone leakage", "target fairness by tone"}
    provenance = report["provenance"]
    assert (
        provenance["encoder"]["sha256"]
        and provenance["data"]["sha256"]
        and provenance["data"]["rows"] == 48
    )
    assert provenance["sizes"] == {
        "probe_rows": 24,
        "test_rows": 24,
        "features": provenance["sizes"]["features"],
    }
    assert provenance["seed"] == 0 and provenance["fairgen_version"]
    groups = report["sections"]["target fairness by tone"]["summary"]["groups"]
    assert groups == ["bright", "dark"]
    assert "## provenance" in (out / "report.md").read_text()


def test_world_judges_are_refused_on_a_biggan_unless_forced(own_world, tmp_path, capsys):
    args = [
        "steer",
        "--generator",
        str(own_world / "biggan"),
        "--labeler",
        "world:texture",
        "--n",
        "200",
        "--eval-n",
        "100",
        "--quiet",
        "--out",
        str(tmp_path / "card"),
    ]
    assert main(args) == 2
    assert "judges images of the embedded world only" in capsys.readouterr().err
    from fairgen.generators import load_generator
    from fairgen.labelers import load_labeler

    forced = load_labeler(
        "world:texture", generator=load_generator(own_world / "biggan"), force=True
    )
    assert forced.name == "world:texture"


@pytest.mark.parametrize(
    "labeler, message",
    [
        ("no_such_module:fn", "cannot import module 'no_such_module'"),
        ("mylabels:missing", "has no attribute 'missing'"),
        ("mylabels:wrong_shape", r"returned shape \[8, 3, 2\] for 8 images"),
    ],
)
def test_a_bad_labeler_entry_point_is_a_clear_error(own_world, labeler, message):
    from fairgen.generators import load_generator
    from fairgen.labelers import load_labeler

    generator = load_generator(own_world / "biggan")
    with pytest.raises(ValueError, match=message):
        lab = load_labeler(labeler, generator=generator)
        lab(generator.synthesize(generator.sample_latents(8), torch.zeros(8, dtype=torch.int64)))


def test_the_embedded_world_chain_with_a_named_world_labeler(tmp_path):
    work = tmp_path / "work"
    assert (
        main(
            [
                "steer",
                "--labeler",
                "world:texture",
                "--n",
                "3000",
                "--eval-n",
                "500",
                "--quiet",
                "--out",
                str(work / "card"),
            ]
        )
        == 0
    )
    assert (
        json.loads((work / "card" / "eraser_card.json").read_text())["labeler"]["name"]
        == "world:texture"
    )
    assert main(["stream", "--new", str(work / "stream.json"), "--eraser", str(work / "card")]) == 0
    assert (
        main(
            [
                "train",
                "--spec",
                str(work / "stream.json"),
                "--steps",
                "2",
                "--batch-size",
                "8",
                "--out",
                str(work / "run"),
                "--supervised",
            ]
        )
        == 0
    )
    moved = shutil.move(str(work), str(tmp_path / "moved"))
    out = tmp_path / "audit"
    assert (
        main(
            [
                "audit",
                "--encoder",
                f"{moved}/run/encoder.safetensors",
                "--n-probe",
                "300",
                "--n-test",
                "300",
                "--permutations",
                "9",
                "--bootstrap",
                "50",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["provenance"]["labeler"] == "world ground truth"
    assert report["sections"]["target fairness"]["summary"]["groups"] == [
        "checker",
        "dots",
        "plain",
        "stripes",
    ]

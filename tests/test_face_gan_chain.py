"""The face GAN's shell chain, scaled down on a tiny random twin saved in the package's format:
steer (labeler-confirmed, keeping a second attribute) -> stream --new -> train -> audit --data, with
pixel labelers given as package.module:callable (the face: rules, thresholded for the twin)."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from test_face_gan import tiny_twin
from torchvision.io import write_png

from fairgen.cli import main
from fairgen.generators.face_gan import load_face_gan, save_face_gan
from fairgen.labelers.face import background_luma, face_patch_luma

# The face: rules at thresholds measured on the twin (its random weights keep every pixel near 0.5):
# dark face = face-patch luma below the twin's 20% quantile, light background = corner luma at or
# above its median.
LABELER = """
from fairgen.labelers.face import background_luma, face_patch_luma

def dark_face(images):
    return (face_patch_luma(images) < {face:.9f}).long()

def light_background(images):
    return (background_luma(images) >= {background:.9f}).long()
"""


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    root = tmp_path_factory.mktemp("face-chain")
    weights = save_face_gan(tiny_twin(), root / "twin.tar")
    generator = load_face_gan(weights)
    z = generator.sample_latents(2000, torch.Generator().manual_seed(123))
    images = generator.synthesize(z)
    face, background = face_patch_luma(images), background_luma(images)
    (root / "twinlabels.py").write_text(
        LABELER.format(face=float(face.quantile(0.2)), background=float(background.median()))
    )
    sys.path.insert(0, str(root))
    yield root, weights
    sys.path.remove(str(root))


def write_faces(generator, root, n: int = 120):
    """Held-out twin faces as ``faces/lightness=<v>/background=<v>/<i>.png`` for `fairgen audit
    --data`."""
    import twinlabels

    z = generator.sample_latents(n, torch.Generator().manual_seed(999))
    images = generator.synthesize(z)
    dark, light = twinlabels.dark_face(images), twinlabels.light_background(images)
    folder = root / "faces"
    for i, image in enumerate(images):
        sub = folder / f"lightness={int(dark[i])}" / f"background={int(light[i])}"
        sub.mkdir(parents=True, exist_ok=True)
        write_png((image * 255).round().to(torch.uint8), str(sub / f"{i:04d}.png"))
    return folder


pytestmark = (
    pytest.mark.slow
)  # ~50 s on a busy CPU, nearly all in the confirmed steerer's classifier fits

LABELS = ["--labeler", "twinlabels:dark_face", "--keep-labeler", "twinlabels:light_background"]


@pytest.fixture(scope="module")
def steered(twin, tmp_path_factory):
    """steer (confirmed, keeping the background) -> stream --new, once for the module (the fit is
    the slow part)."""
    root, weights = twin
    work = tmp_path_factory.mktemp("work")
    assert (
        main(
            [
                "steer",
                "--generator",
                str(weights),
                *LABELS,
                "--method",
                "confirmed",
                "--n",
                "1000",
                "--eval-n",
                "400",
                "--out",
                str(work / "card"),
                "--quiet",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "stream",
                "--new",
                str(work / "stream.json"),
                "--generator",
                str(weights),
                "--eraser",
                str(work / "card"),
                "--views",
                "anchor,neighbour",
                "--resolution",
                "32",
                "--quiet",
            ]
        )
        == 0
    )
    return work


def test_steer_stream_train_audit_on_the_tiny_face_twin(twin, steered, capsys):
    root, weights = twin
    work = steered
    report = json.loads((work / "card" / "eraser_card.json").read_text())["report"]
    assert (
        report["raw"]["shares_by"]["protected"][1] < 0.3
    )  # the minority the twin's threshold made
    assert report["steered"]["shares_by"]["protected"] == pytest.approx(
        [0.5, 0.5], abs=0.01
    )  # exact per draw
    assert report["cost"]["syntheses_per_kept"] >= 1
    spec = json.loads((work / "stream.json").read_text())
    assert spec["generator"] == "twin.tar" and (work / "twin.tar").is_file()
    assert spec["labelers"] == {
        "protected": "twinlabels:dark_face",
        "keep": "twinlabels:light_background",
    }
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
                *LABELS,
                "--out",
                str(work / "run"),
                "--quiet",
            ]
        )
        == 0
    )  # SupCon on the keep-labels
    faces = write_faces(load_face_gan(weights), root)
    assert (
        main(
            [
                "audit",
                "--encoder",
                str(work / "run" / "encoder.safetensors"),
                "--data",
                str(faces),
                "--target",
                "background",
                "--protected",
                "lightness",
                "--permutations",
                "19",
                "--bootstrap",
                "50",
                "--out",
                str(work / "audit"),
                "--quiet",
            ]
        )
        == 0
    )
    audit = json.loads((work / "audit" / "report.json").read_text())
    assert audit["provenance"]["target"] == "background"


def test_a_confirmed_face_stream_needs_its_entry_point_labelers_given(steered):
    from fairgen.stream import Stream, StreamSpec

    with pytest.raises(ValueError, match="a card never runs code it names"):
        Stream.from_spec(StreamSpec.load(steered / "stream.json"), 8, "cpu")
    import twinlabels

    batch = Stream.from_spec(
        StreamSpec.load(steered / "stream.json"),
        8,
        "cpu",
        labeler={"protected": twinlabels.dark_face, "keep": twinlabels.light_background},
    ).next_batch()
    assert batch["views"].shape == (8, 2, 3, 32, 32)
    assert set(batch["labels"].tolist()) <= {
        0,
        1,
    }  # the keep-labels (light background) are the stream's labels

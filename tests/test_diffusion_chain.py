"""The shell chain on a tiny random text-to-image pipeline: steer (labeler-confirmed balance of a
pixel rule within each prompt) -> stream --new -> train -> audit --data, the labeler given as
package.module:callable written by the test, thresholded on the pipeline's own images."""

from __future__ import annotations

import json
import sys

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from torchvision.io import write_png  # noqa: E402

from fairgen.cli import main  # noqa: E402
from fairgen.generators import load_generator  # noqa: E402
from fairgen.generators.diffusion import save_random_pipeline  # noqa: E402

pytestmark = pytest.mark.slow  # the confirmed steerer's classifier fits and ~2000 tiny syntheses

PROMPTS = ["a photo of a cat", "a photo of a dog", "a photo of a car"]
OPTIONS = [
    "--prompt-template",
    "a photo of a {}",
    "--classes",
    "cat,dog,car",
    "--sampler-steps",
    "2",
]
LABELER = """
def dark(images):
    return (images.mean(dim=(1, 2, 3)) < {threshold:.9f}).long()
"""
LABELS = ["--labeler", "sdlabels:dark"]


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    root = tmp_path_factory.mktemp("sd-chain")
    folder = save_random_pipeline(root / "tiny-sd")
    generator = load_generator(folder, prompts=PROMPTS, steps=2)
    z = generator.sample_latents(600, torch.Generator().manual_seed(5))
    luma = generator.synthesize(z, torch.arange(600) % 3).mean(dim=(1, 2, 3))
    (root / "sdlabels.py").write_text(LABELER.format(threshold=float(luma.quantile(0.3))))
    sys.path.insert(0, str(root))
    yield root, folder, generator
    sys.path.remove(str(root))


def write_images(generator, root, n: int = 90):
    """Held-out images as ``images/prompt=<c>/dark=<v>/<i>.png`` for `fairgen audit --data`."""
    import sdlabels

    z = generator.sample_latents(n, torch.Generator().manual_seed(999))
    y = torch.arange(n) % 3
    images = generator.synthesize(z, y)
    dark = sdlabels.dark(images)
    folder = root / "images"
    for i, image in enumerate(images):
        sub = folder / f"prompt={int(y[i])}" / f"dark={int(dark[i])}"
        sub.mkdir(parents=True, exist_ok=True)
        write_png((image * 255).round().to(torch.uint8), str(sub / f"{i:04d}.png"))
    return folder


def test_steer_stream_train_audit_on_a_tiny_text_to_image_pipeline(pipeline, tmp_path, monkeypatch):
    import fairgen.stream

    # a confirmed stream fills ~2048 anchors at its first batch; a small block keeps the test short
    monkeypatch.setattr(fairgen.stream, "CONFIRMED_BLOCK", 60)
    root, folder, generator = pipeline
    work = tmp_path
    steer = ["steer", "--generator", str(folder), *OPTIONS, *LABELS, "--method", "confirmed"]
    assert main([*steer, "--n", "600", "--eval-n", "300", "--out", str(work / "card"), "-q"]) == 0
    report = json.loads((work / "card" / "eraser_card.json").read_text())["report"]
    assert report["steered"]["shares_by"]["protected"] == pytest.approx([0.5, 0.5], abs=0.01)
    assert report["cost"]["syntheses_per_kept"] >= 1
    stream = ["stream", "--new", str(work / "stream.json"), "--generator", str(folder), *OPTIONS]
    views = ["--views", "anchor,sibling,renoise", "--eraser", str(work / "card"), "-q"]
    assert main([*stream, *views]) == 0
    spec = json.loads((work / "stream.json").read_text())
    assert spec["generator"] == "tiny-sd" and spec["generator_options"]["prompts"] == PROMPTS
    assert spec["labelers"] == {"protected": "sdlabels:dark"}
    train = ["train", "--spec", str(work / "stream.json"), "--steps", "2", "--batch-size", "6"]
    assert main([*train, *LABELS, "--out", str(work / "run"), "-q"]) == 0
    images = write_images(generator, root)
    audit = ["audit", "--encoder", str(work / "run" / "encoder.safetensors"), "--data", str(images)]
    checks = ["--target", "prompt", "--protected", "dark", "--permutations", "19"]
    assert main([*audit, *checks, "--bootstrap", "50", "--out", str(work / "audit"), "-q"]) == 0
    result = json.loads((work / "audit" / "report.json").read_text())
    assert result["provenance"]["target"] == "prompt"

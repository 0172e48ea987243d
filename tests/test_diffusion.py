"""A text-to-image diffusers folder as a generator: a tiny random pipeline written by the test (its
tokenizer vocabulary too), loaded back through the same path as a real folder; nothing downloaded.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from fairgen.contrastive.loss import supcon_loss  # noqa: E402
from fairgen.generators import load_generator  # noqa: E402
from fairgen.generators.diffusion import save_random_pipeline  # noqa: E402
from fairgen.generators.registry import local_checksum  # noqa: E402
from fairgen.views import ViewRecipe, make_view_latents  # noqa: E402

PROMPTS = ["a photo of a cat", "a photo of a dog", "a red car/truck"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return save_random_pipeline(tmp_path_factory.mktemp("tiny-sd") / "tiny-sd")


@pytest.fixture(scope="module")
def tiny(folder):
    return load_generator(folder, prompts=PROMPTS, steps=3)


def test_the_tiny_folder_loads_as_a_generator_with_prompts_as_classes(folder, tiny):
    assert (tiny.num_classes, tiny.resolution, tiny.latent_dim) == (3, 32, 4 * 8 * 8)
    assert tiny.latent_space == "initial-noise"
    assert tiny.checksum == local_checksum(folder)  # pinned before loading, as cards check it
    z = tiny.sample_latents(6, torch.Generator().manual_seed(0))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    images = tiny.synthesize(z, y)
    assert images.shape == (6, 3, 32, 32) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1
    assert torch.equal(images, tiny.synthesize(z, y))  # a function of (noise, prompt, settings)
    other = tiny.synthesize(z, (y + 1) % 3)
    assert (other - images).abs().amax() > 1e-3  # the prompt matters
    assert tiny.card_options() == {
        "prompts": PROMPTS,
        "steps": 3,
        "guidance_scale": 7.5,
        "scheduler": "ddim",
        "eta": 0.0,
    }


def test_the_checksum_changes_with_any_weight_file(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "copy")
    assert local_checksum(copy) == local_checksum(folder)
    weights = next((copy / "vae").glob("*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert local_checksum(copy) != local_checksum(folder)


def test_pickled_weights_and_custom_classes_are_refused(folder, tmp_path):
    pickled = shutil.copytree(folder, tmp_path / "pickled")
    for f in (pickled / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(ValueError, match="holds no .safetensors weights; fairgen never unpickles"):
        load_generator(pickled, prompts=PROMPTS)
    custom = shutil.copytree(folder, tmp_path / "custom")
    index = json.loads((custom / "model_index.json").read_text())
    index["unet"] = ["my_package", "MyUNet"]
    (custom / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="custom code is never run"):
        load_generator(custom, prompts=PROMPTS)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "give its classes as prompts"),
        ({"prompts": "a cat"}, "prompts must be a non-empty list"),
        ({"prompts": ["a cat", "a cat"]}, "prompts must be distinct"),
        (
            {"prompts": PROMPTS, "classes": [3]},
            r"classes must be distinct prompt indices in \[0, 3\)",
        ),
        ({"prompts": PROMPTS, "steps": 0}, r"steps must be an integer in \[1, 1000\]"),
        ({"prompts": PROMPTS, "scheduler": "euler_a"}, "scheduler must be one of"),
        ({"prompts": PROMPTS, "eta": 1.0}, "eta must be 0"),
    ],
)
def test_bad_options_are_named(folder, options, message):
    with pytest.raises(ValueError, match=message):
        load_generator(folder, **options)


def test_walks_are_refused_with_the_reason(tiny):
    from fairgen.walks import check_differentiable

    with pytest.raises(ValueError, match="latent walks are not supported"):
        check_differentiable(tiny)


def test_renoise_views_keep_the_noise_distribution_and_siblings_are_independent():
    z = torch.randn(20000, 16, generator=torch.Generator().manual_seed(1))
    y = torch.zeros(len(z), dtype=torch.long)
    recipe = ViewRecipe(kinds=("anchor", "renoise", "sibling"), renoise=0.36)
    views = make_view_latents(z, y, recipe, torch.Generator().manual_seed(2))
    anchor, renoised, sibling = views.unbind(1)
    assert torch.equal(anchor, z)
    assert renoised.var().item() == pytest.approx(1.0, abs=0.02)  # still N(0, I)
    correlation = torch.corrcoef(torch.stack([anchor.flatten(), renoised.flatten()]))[0, 1]
    assert correlation.item() == pytest.approx(math.sqrt(1 - 0.36), abs=0.01)
    independent = torch.corrcoef(torch.stack([anchor.flatten(), sibling.flatten()]))[0, 1]
    assert abs(independent.item()) < 0.01 and sibling.var().item() == pytest.approx(1.0, abs=0.02)
    assert "renoise" not in ViewRecipe(kinds=("anchor", "sibling")).to_dict()  # old cards unchanged
    with pytest.raises(ValueError, match=r"renoise must be a number in \(0, 1\]"):
        ViewRecipe(kinds=("anchor", "renoise"), renoise=0)


def stablerep_loss(features: torch.Tensor, captions: torch.Tensor, temperature: float):
    """StableRep's multi-positive loss, written plainly: every image is an anchor; the target is
    spread evenly over the other images of its caption; cross-entropy against the softmax over all
    other images (the anchor itself masked out)."""
    x = torch.nn.functional.normalize(features.double(), dim=-1)
    losses = []
    for i in range(len(x)):
        others = [j for j in range(len(x)) if j != i]
        logits = torch.stack([x[i] @ x[j] / temperature for j in others])
        target = torch.tensor([float(captions[j] == captions[i]) for j in others], dtype=x.dtype)
        if target.sum() == 0:
            continue
        target = target / target.sum()
        losses.append(-(target * torch.log_softmax(logits, dim=0)).sum())
    return torch.stack(losses).mean()


@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_the_contrastive_loss_equals_stablereps_multi_positive_loss(temperature):
    g = torch.Generator().manual_seed(3)
    features = torch.randn(6, 3, 8, generator=g)  # 6 samples, 3 images each (anchor + siblings)
    prompts = torch.tensor([0, 1, 0, 2, 1, 1])
    flat = features.reshape(18, 8)
    # each sample's views are images of its prompt: SupCon labels = prompts is StableRep by caption
    ours = supcon_loss(features, prompts, temperature)
    reference = stablerep_loss(flat, prompts.repeat_interleave(3), temperature)
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)
    # without labels (SimCLR form) the caption is the sample: its V views are the positives
    ours = supcon_loss(features, None, temperature)
    reference = stablerep_loss(flat, torch.arange(6).repeat_interleave(3), temperature)
    assert ours.item() == pytest.approx(reference.item(), abs=1e-6)


def test_prompt_options_on_the_command_line(tmp_path):
    import argparse

    from fairgen.cli.common import add_generator_options, generator_options

    parser = argparse.ArgumentParser()
    add_generator_options(parser)
    args = parser.parse_args(
        ["--prompt-template", "a photo of a {}", "--classes", "cat,dog", "--sampler-steps", "4"]
    )
    assert generator_options(args) == {
        "prompts": ["a photo of a cat", "a photo of a dog"],
        "steps": 4,
    }
    (tmp_path / "p.txt").write_text("a cat\n\n a dog \n")
    args = parser.parse_args(["--prompts", str(tmp_path / "p.txt"), "--guidance-scale", "1"])
    assert generator_options(args) == {"prompts": ["a cat", "a dog"], "guidance_scale": 1.0}
    with pytest.raises(ValueError, match="--prompt-template needs --classes"):
        generator_options(parser.parse_args(["--prompt-template", "a {}"]))
    with pytest.raises(FileNotFoundError, match="--prompts .*no such file"):
        generator_options(parser.parse_args(["--prompts", str(tmp_path / "none.txt")]))


REPLAY = """
import sys, torch
from fairgen.stream import Stream, StreamSpec
stream = Stream.from_spec(StreamSpec.load(sys.argv[1]), 4)
batches = [stream.next_batch() for _ in range(2)]
torch.save([b["views"] for b in batches], sys.argv[2])
"""


@pytest.mark.slow  # ~30 s on a busy CPU, most of it the fresh process importing diffusers
def test_a_stream_card_replays_the_same_batches_in_a_fresh_process(folder, tmp_path):
    from fairgen.cli import main
    from fairgen.stream import Stream, StreamSpec

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS))
    card = tmp_path / "card" / "stream.json"
    assert (
        main(
            [
                "stream", "--new", str(card), "--generator", str(folder),
                "--prompts", str(prompts), "--sampler-steps", "2",
                "--views", "anchor,sibling,renoise", "--augment", "none", "--quiet",
            ]
        )
        == 0
    )  # fmt: skip
    spec = json.loads(card.read_text())
    assert (
        spec["generator"] == "tiny-sd" and (card.parent / "tiny-sd" / "model_index.json").is_file()
    )
    assert spec["generator_sha256"] == local_checksum(folder)
    assert spec["generator_options"] == {
        "prompts": PROMPTS,  # 'car/truck' stays a prompt, not a path
        "steps": 2,
        "guidance_scale": 7.5,
        "scheduler": "ddim",
        "eta": 0.0,
    }
    assert spec["views"]["renoise"] == 0.25
    stream = Stream.from_spec(StreamSpec.load(card), 4)
    here = [stream.next_batch() for _ in range(2)]
    assert here[0]["views"].shape == (4, 3, 3, 32, 32)
    script = tmp_path / "replay.py"
    script.write_text(REPLAY)
    root = Path(__file__).resolve().parents[1]
    subprocess.run(
        [sys.executable, str(script), str(card), str(tmp_path / "there.pt")],
        check=True,
        cwd=root,
        env={"PYTHONPATH": str(root), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )
    there = torch.load(tmp_path / "there.pt", weights_only=True)
    for a, b in zip(here, there, strict=True):
        assert torch.equal(a["views"], b)

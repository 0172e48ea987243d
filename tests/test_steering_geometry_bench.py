"""The steering-geometry benchmark's geometries build, decode through the world, and one geometry
runs
end to end at a tiny size (every balance method and every twin method produce a row)."""

import importlib.util
import sys
from argparse import Namespace
from pathlib import Path

import pytest
import torch

import steering
from fairgen.generators import load_generator
from fairgen.world.judges import load_judges


@pytest.fixture(scope="module")
def bench():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "steering_geometry.py"
    spec = importlib.util.spec_from_file_location("steering_geometry", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["steering_geometry"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def base():
    return load_generator("world-sprites-z128")


def test_failure_geometries_build_and_decode(bench, base):
    built = bench.geometries(base, quick=True)
    assert [name for name, _, _ in built] == [
        "deep-96",
        "truncated-warp",
        "rare-1%",
        "world-sprites-z128",
        "deep-96 texture+colour",
        "unconditional shape+texture+colour",
    ]
    for name, generator, _ in built:
        z = generator.sample_latents(8, torch.Generator().manual_seed(0))
        images = generator.synthesize(z, torch.arange(8) % 4)
        assert (
            images.shape == (8, 3, 32, 32) and float(images.min()) >= 0 and float(images.max()) <= 1
        ), name
    unconditional = bench.UnconditionalWorld(base)
    z = unconditional.sample_latents(400, torch.Generator().manual_seed(0))
    assert (
        unconditional.num_classes == 0
        and abs(torch.bincount(unconditional.latent_class(z)).float() / 400 - 0.25).max() < 0.08
    )
    shapes = load_judges()["shape"].predict(unconditional.synthesize(z))
    assert (
        float((shapes.cpu() == unconditional.latent_class(z)).float().mean()) > 0.95
    )  # the latent's quartile is the shape
    warp = bench.TruncatedWarpGeometry(base)
    z = warp.sample_latents(4000, torch.Generator().manual_seed(1))
    assert float(z.abs().max()) <= warp.latent_prior.box  # the declared truncation holds
    assert bool(steering.in_prior_support(warp, z).float().mean() > 0.999)


def test_rare_geometry_shows_each_minority_one_percent_of_the_time(bench, base):
    probs = torch.diff(bench.rare(base).cdf_texture, prepend=torch.zeros(4, 1), dim=1)
    assert torch.allclose(probs.sort(1).values[:, :3], torch.full((4, 3), 0.01))


def test_one_geometry_end_to_end_at_tiny_size(bench, base, monkeypatch):
    monkeypatch.setattr(
        steering.classifier, "STEPS", 150
    )  # short classifier fits: this checks the plumbing, not the numbers
    args = Namespace(fit_n=1200, eval_n=160, flip_n=24, seed=0)
    rows, flips = bench.run_geometry(
        "world-sprites-z128",
        base,
        ["texture"],
        load_judges(),
        ["quantile", "resample", "rejection"],
        args,
    )
    assert [r["method"] for r in rows] == ["quantile", "resample", "rejection"]
    rejection = rows[-1]
    assert (
        rejection["V (texture)"] < 0.05 and rejection["syntheses/kept"] > 1
    )  # exact quotas in the judge's terms
    assert [f["twins"] for f in flips] == [
        "quantile",
        "gradient",
        "checked",
        "confirmed",
        "confirmed+keep",
    ]
    assert all(0 <= f.get("anchors with a landed twin", 0) <= 1 for f in flips)
    assert (
        flips[-1]["second kept"] == 1.0
    )  # a twin that must keep colour keeps it in the judge's terms

"""The world renderer: determinism, bias statistics, resolutions, devices and clear errors."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fairgen.world.render import CATEGORICAL, RESOLUTIONS, World, render, sample_factors
from plumbing.tables import cramers_v


def test_same_seed_gives_same_pixels():
    a = World(32).sample(64, seed=3, bias=0.5)
    b = World(32).sample(64, seed=3, bias=0.5)
    assert torch.equal(a.images, b.images)
    assert all(torch.equal(a.factors[k], b.factors[k]) for k in a.factors)


def test_different_seeds_give_different_images():
    a = World(32).sample(64, seed=0).images
    b = World(32).sample(64, seed=1).images
    assert not torch.equal(a, b)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_images_follow_the_contract_at_each_resolution(resolution):
    images = World(resolution).sample(8, seed=0).images
    assert images.shape == (8, 3, resolution, resolution)
    assert images.dtype == torch.float32
    assert 0.0 <= images.min() and images.max() <= 1.0


def test_resolutions_agree_after_downsampling():
    """The same factors at 64 px, averaged down, look like the 32 px rendering (same scene)."""
    world32, world64 = World(32), World(64)
    factors = world32.sample_factors(32, seed=5)
    small = world32.render(factors)
    big = torch.nn.functional.avg_pool2d(world64.render(factors), 2)
    assert (small - big).abs().mean() < 0.03


def test_edges_are_anti_aliased():
    """A rendered object's border has intermediate values, not only object or background."""
    factors = World(32).sample_factors(16, seed=0)
    factors["texture"][:] = 0  # plain background: grey 0.5
    images = render(factors, 32)
    background = (images - 0.5).abs().amax(1) < 1e-6
    colour = torch.stack([images[i, :, 16, 16] for i in range(16)])
    partial = ~background & ((images - colour[:, :, None, None]).abs().amax(1) > 1e-3)
    assert partial.float().mean() > 0.005


def test_device_argument_is_honoured():
    images = World(32).sample(4, seed=0, device="cpu").images
    assert images.device.type == "cpu"
    if torch.cuda.is_available():
        on_gpu = World(32).sample(4, seed=0, device="cuda").images
        assert torch.allclose(on_gpu.cpu(), images, atol=1e-4)


@settings(max_examples=6, deadline=None)
@given(bias=st.sampled_from([0.0, 0.3, 0.6, 0.9, 1.0]), seed=st.integers(0, 1000))
def test_split_cramers_v_matches_requested_bias(bias, seed):
    n = 20_000
    factors = sample_factors(n, torch.Generator().manual_seed(seed), bias=bias)
    v = cramers_v(factors["shape"].numpy(), factors["texture"].numpy())
    # sampling error of V is about 1/sqrt(n); plain V has an upward bias of ~sqrt(k/n) near 0
    assert abs(v - bias) < 0.03


def test_biased_split_ties_protected_to_target_and_test_split_is_balanced():
    splits = World(32).splits(n_train=8000, n_test=8000, bias=0.9, seed=0)
    train, test = splits["train"], splits["test"]
    own = (train.labels("texture") == train.labels("shape")).float().mean().item()
    assert abs(own - (0.9 + 0.1 / 4)) < 0.015
    assert test.cramers_v() < 0.05
    assert abs(train.cramers_v() - 0.9) < 0.02


def test_other_factors_stay_in_their_ranges():
    factors = World(32).sample_factors(5000, seed=0, bias=0.9)
    assert factors["rotation"].min() >= 0 and factors["rotation"].max() < 2 * math.pi
    colour_of_hue = torch.floor(factors["hue"] * len(CATEGORICAL["colour"])).long()
    assert torch.equal(colour_of_hue, factors["colour"])
    counts = np.bincount(factors["colour"].numpy(), minlength=6)
    assert counts.min() > 0.8 * counts.mean()


def test_dataframe_names_categories():
    frame = World(32).sample(10, seed=0).to_dataframe()
    assert set(frame["shape"].unique()) <= set(CATEGORICAL["shape"])
    assert len(frame) == 10


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: World(32).sample(0), "n"),
        (lambda: World(32).sample(-5), "n"),
        (lambda: World(32).sample(10, bias=1.5), "bias"),
        (lambda: World(32).sample(10, bias=-0.1), "bias"),
        (lambda: World(48), "resolution"),
        (lambda: World(32, target="weight"), "target"),
        (lambda: World(32, protected="mood"), "protected"),
        (lambda: World(32, target="shape", protected="shape").sample(4), "target and protected"),
        (lambda: World(32).sample(4).labels("size"), "name"),
    ],
)
def test_bad_inputs_name_the_argument(call, argument):
    with pytest.raises(ValueError, match=argument):
        call()


def test_error_lists_allowed_resolutions():
    with pytest.raises(ValueError) as info:
        World(48)
    assert all(str(r) in str(info.value) for r in RESOLUTIONS)

"""Guarantees of the batch augmentation: determinism, per-sample randomness, faithful operations."""

import json

import pytest
import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from hypothesis import example, given, settings
from hypothesis import strategies as st

from fairgen.augment import (
    PRESETS,
    AugmentRecipe,
    adjust_brightness,
    adjust_contrast,
    adjust_hue,
    adjust_saturation,
    augment,
    gaussian_blur,
    hsv_to_rgb,
    rgb_to_hsv,
)


def images(n=6, size=16, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


def gen(seed):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_same_generator_seed_gives_identical_output(preset):
    x = images()
    assert torch.equal(augment(x, preset, gen(3)), augment(x, preset, gen(3)))


@pytest.mark.parametrize("preset", ["simclr", "light"])
def test_different_seeds_and_successive_calls_differ(preset):
    x = images()
    g = gen(0)
    first, second = augment(x, preset, g), augment(x, preset, g)
    assert not torch.allclose(first, second)
    assert not torch.allclose(augment(x, preset, gen(0)), augment(x, preset, gen(1)))


@settings(max_examples=15, deadline=None)
@given(
    n=st.integers(1, 5),
    h=st.integers(4, 24),
    w=st.integers(4, 24),
    out=st.one_of(st.none(), st.integers(2, 20), st.tuples(st.integers(2, 20), st.integers(2, 20))),
    preset=st.sampled_from(sorted(PRESETS)),
    seed=st.integers(0, 2**16),
)
@example(n=2, h=4, w=7, out=None, preset="simclr", seed=4728)  # once overshot 1 by a rounding error
def test_output_has_requested_shape_and_stays_in_unit_range(n, h, w, out, preset, seed):
    x = torch.rand(n, 3, h, w, generator=gen(seed))
    y = augment(x, preset, gen(seed), out_size=out)
    expected = (h, w) if out is None else ((out, out) if isinstance(out, int) else out)
    assert y.shape == (n, 3, *expected)
    assert y.dtype == x.dtype
    assert torch.isfinite(y).all() and y.min() >= 0 and y.max() <= 1


def test_each_sample_gets_its_own_parameters():
    x = images(n=1).expand(8, -1, -1, -1).contiguous()
    y = augment(x, "simclr", gen(0))
    flat = y.flatten(1)
    distinct = torch.cdist(flat, flat) > 1e-4
    assert distinct.fill_diagonal_(True).all(), (
        "two samples of one batch got identical augmentations"
    )


def test_none_recipe_is_identity():
    x = images()
    assert torch.equal(augment(x, "none", gen(0)), x)


def test_none_recipe_with_out_size_is_a_bilinear_resize():
    x = images(size=8)
    y = augment(x, "none", gen(0), out_size=16)
    assert torch.allclose(
        y, F.interpolate(x, size=16, mode="bilinear", align_corners=False), atol=1e-5
    )


def test_full_image_crop_with_certain_flip_mirrors_every_image():
    recipe = AugmentRecipe(crop=False, flip_p=1.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0)
    x = images()
    assert torch.allclose(augment(x, recipe, gen(0)), x.flip(-1), atol=1e-5)


def test_crop_of_a_smooth_ramp_is_a_sub_range_of_it():
    ramp = torch.linspace(0, 1, 32).expand(1, 3, 32, 32).repeat(16, 1, 1, 1)
    recipe = AugmentRecipe(crop_scale=(0.1, 0.3), flip_p=0.0, jitter_p=0.0, grey_p=0.0, blur_p=0.0)
    y = augment(ramp, recipe, gen(0))
    spans = y.amax(dim=(1, 2, 3)) - y.amin(dim=(1, 2, 3))
    assert (spans < 0.8).all() and (spans > 0.05).all()
    assert spans.unique().numel() > 1, "every crop had the same width"


def test_certain_greyscale_makes_channels_equal():
    recipe = AugmentRecipe(crop=False, flip_p=0.0, jitter_p=0.0, grey_p=1.0, blur_p=0.0)
    y = augment(images(), recipe, gen(0))
    assert torch.allclose(y[:, 0], y[:, 1]) and torch.allclose(y[:, 1], y[:, 2])


def test_colour_operations_match_torchvision_per_image():
    x = images(n=5)
    factors = torch.tensor([0.0, 0.5, 1.0, 1.3, 1.8])
    shifts = torch.tensor([-0.5, -0.2, 0.0, 0.1, 0.45])
    ours = {
        "brightness": adjust_brightness(x, factors),
        "contrast": adjust_contrast(x, factors),
        "saturation": adjust_saturation(x, factors),
        "hue": adjust_hue(x, shifts),
    }
    for i in range(x.shape[0]):
        f, s = float(factors[i]), float(shifts[i])
        assert torch.allclose(ours["brightness"][i], TF.adjust_brightness(x[i], f), atol=1e-5)
        assert torch.allclose(ours["contrast"][i], TF.adjust_contrast(x[i], f), atol=1e-5)
        assert torch.allclose(ours["saturation"][i], TF.adjust_saturation(x[i], f), atol=1e-5)
        assert torch.allclose(ours["hue"][i], TF.adjust_hue(x[i], s), atol=1e-4)


def test_hsv_round_trip_recovers_rgb():
    x = images(n=4)
    x[0, :, :2] = 0.5  # grey pixels (zero saturation) and black pixels take the edge branches
    x[1, :, :2] = 0.0
    assert torch.allclose(hsv_to_rgb(rgb_to_hsv(x)), x, atol=1e-5)


def test_blur_matches_torchvision_with_each_samples_sigma():
    x = images(n=3)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    y = gaussian_blur(x, sigma, kernel_size=5)
    for i in range(3):
        expected = TF.gaussian_blur(x[i], kernel_size=[5, 5], sigma=[float(sigma[i])] * 2)
        assert torch.allclose(y[i], expected, atol=1e-5)


def test_recipe_round_trips_through_json():
    recipe = PRESETS["light"]
    assert AugmentRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert augment(images(), recipe.to_dict(), gen(1)).shape == images().shape


def test_unknown_recipe_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown augment recipe keys"):
        AugmentRecipe.from_dict({"flip_p": 0.5, "solarize_p": 0.2})


@pytest.mark.parametrize(
    "bad",
    [
        {"flip_p": 1.5},
        {"crop_scale": (0.5, 0.2)},
        {"hue": 0.7},
        {"blur_sigma": (0, 1)},
        {"contrast": -1},
        {"flip_p": "0.5"},
        {"crop_ratio": (1.0,)},
        {"crop": "yes"},
    ],
)
def test_out_of_range_or_mistyped_recipe_values_are_rejected(bad):
    with pytest.raises(ValueError):
        AugmentRecipe(**bad)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"images": torch.rand(3, 16, 16)}, "images"),
        ({"images": torch.randint(0, 255, (2, 3, 8, 8))}, "images"),
        ({"recipe": "autoaugment"}, "recipe"),
        ({"out_size": 0}, "out_size"),
        ({"generator": 0}, "generator"),
    ],
)
def test_bad_arguments_raise_clear_errors(kwargs, match):
    args = {"images": images(), "recipe": "simclr", "generator": gen(0), **kwargs}
    with pytest.raises(ValueError, match=match):
        augment(**args)

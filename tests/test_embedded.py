"""The embedded default generator: offline loading, the image contract, judged quality, the
recipe."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fairgen.generators import list_generators, load_generator
from fairgen.world.generator import LATENT_DIM, NAME, WEIGHTS, MappedSpriteGenerator
from fairgen.world.judges import load_judges
from fairgen.world.quality import judge_generator
from fairgen.world.recipe import RecipeConfig, split_cramers_v, train_embedded, training_split
from plumbing.files import read_safetensors_metadata, sha256_file
from plumbing.tables import cramers_v


@pytest.fixture(scope="module")
def generator():
    return load_generator(NAME)


@pytest.fixture(scope="module")
def quality(generator):
    return judge_generator(generator, n=3000, seed=2024, judges=load_judges())


def test_registry_lists_the_embedded_and_biggan_names():
    names = list_generators()
    assert {NAME, "world-sprites-32"} <= set(
        names
    )  # the default, and the first 6-d model for comparison
    assert {"biggan-deep-128", "biggan-deep-256", "biggan-deep-512"} <= set(names)


def test_loads_offline_with_a_checksum_of_its_weights(generator):
    assert generator.checksum == sha256_file(WEIGHTS)
    assert WEIGHTS.stat().st_size < 10 * 2**20
    assert (
        generator.num_classes == 4
        and generator.resolution == 32
        and generator.latent_dim == LATENT_DIM >= 64
    )


def test_images_follow_the_contract_and_are_deterministic(generator):
    z = generator.sample_latents(16, torch.Generator().manual_seed(0))
    y = torch.arange(16) % 4
    a, b = generator.synthesize(z, y), generator.synthesize(z.clone(), y)
    assert a.shape == (16, 3, 32, 32) and a.dtype == torch.float32
    assert 0 <= a.min() and a.max() <= 1
    assert torch.equal(a, b)
    z2 = generator.sample_latents(16, torch.Generator().manual_seed(1))
    assert not torch.equal(a, generator.synthesize(z2, y))


def test_class_fidelity_is_at_least_99_percent(quality):
    assert quality["class_fidelity"] >= 0.99


def test_inherits_the_training_splits_bias(quality):
    recorded = read_safetensors_metadata(WEIGHTS)["train_split_cramers_v"]["texture"]
    assert abs(quality["cramers_v"] - recorded) <= 0.03


def test_no_latent_coordinate_is_the_attribute(generator):
    """Texture depends on z through the mapping network: no single coordinate predicts it well."""
    z = generator.sample_latents(4000, torch.Generator().manual_seed(3))
    y = torch.zeros(4000, dtype=torch.long)
    texture = generator.factors_from_latents(z, y)["texture"].numpy()
    best = max(abs(np.corrcoef(z[:, i].numpy(), texture)[0, 1]) for i in range(LATENT_DIM))
    assert best < 0.5


def test_synthesize_is_differentiable_in_z(generator):
    z = generator.sample_latents(4, torch.Generator().manual_seed(0)).requires_grad_(True)
    images = generator.synthesize(z, torch.arange(4))
    (grad,) = torch.autograd.grad(images.mean(), z)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_texture_varies_within_each_class_with_z(quality):
    """Every class shows each texture sometimes: the latent carries within-class variation."""
    histogram = quality["texture_histogram"].to_numpy()
    own = np.diag(histogram)
    assert np.all(own > 0.85)
    off_diagonal = histogram[~np.eye(4, dtype=bool)]
    assert np.all(off_diagonal > 0.005)


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda g: g.synthesize(torch.zeros(2, 5), torch.zeros(2, dtype=torch.long)),
            r"shape \[n, 128\]",
        ),
        (
            lambda g: g.synthesize(
                torch.zeros(2, 128, dtype=torch.long), torch.zeros(2, dtype=torch.long)
            ),
            "floating",
        ),
        (
            lambda g: g.synthesize(
                torch.full((2, 128), float("nan")), torch.zeros(2, dtype=torch.long)
            ),
            "NaN",
        ),
        (lambda g: g.synthesize(torch.zeros(2, 128), torch.tensor([0, 4])), "outside"),
        (lambda g: g.synthesize(torch.zeros(2, 128), None), "class-conditional"),
        (lambda g: g.sample_latents(0), "n must be"),
    ],
)
def test_bad_inputs_get_clear_errors(generator, call, match):
    with pytest.raises(ValueError, match=match):
        call(generator)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match=NAME):
        load_generator("no-such-generator")


def test_recipe_resumes_exactly(tmp_path):
    config = RecipeConfig(n_train=256, steps=4, batch_size=16, checkpoint_every=2)
    train_embedded(
        tmp_path / "new" / "folder" / "full.safetensors", config, progress=False
    )  # creates folders
    train_embedded(tmp_path / "pieces.safetensors", config, progress=False, max_steps=2)
    assert not (tmp_path / "pieces.safetensors").exists()  # unfinished: only the checkpoint
    train_embedded(tmp_path / "pieces.safetensors", config, progress=False)
    retrained = load_generator(tmp_path / "new" / "folder" / "full.safetensors")  # a path loads too
    assert retrained.checksum == sha256_file(tmp_path / "new" / "folder" / "full.safetensors")
    a = load_file(str(tmp_path / "new" / "folder" / "full.safetensors"))
    b = load_file(str(tmp_path / "pieces.safetensors"))
    # equal up to float summation order (multi-threaded grid_sample backward): ~1e-7
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_recipe_refuses_a_checkpoint_of_another_recipe(tmp_path):
    config = RecipeConfig(n_train=256, steps=4, batch_size=16, checkpoint_every=2)
    train_embedded(tmp_path / "g.safetensors", config, progress=False, max_steps=2)
    with pytest.raises(ValueError, match="another recipe"):
        train_embedded(
            tmp_path / "g.safetensors",
            RecipeConfig(n_train=256, steps=8, batch_size=16),
            progress=False,
        )


def test_recipe_leaves_no_temporary_files(tmp_path):
    config = RecipeConfig(n_train=256, steps=4, batch_size=16, checkpoint_every=2)
    train_embedded(tmp_path / "g.safetensors", config, progress=False, max_steps=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.ckpt.safetensors"]
    train_embedded(tmp_path / "g.safetensors", config, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g.safetensors"]


@pytest.mark.parametrize("protected", [("colour",), ("texture", "colour")])
def test_recipe_models_whichever_factor_is_protected(protected):
    """The prior reproduces the split's V(class, factor) for every protected factor (within
    0.03)."""
    config = RecipeConfig(n_train=8000, bias=0.95, protected=protected)
    split = training_split(config)
    model = MappedSpriteGenerator()
    model.mapping.calibrate(1 << 15)
    model.fit_prior(split.factors, protected)
    rng = torch.Generator().manual_seed(1)
    z, y = model.sample_latents(20_000, rng), model.sample_classes(20_000, rng)
    factors = model.factors_from_latents(z, y)
    for name, split_v in split_cramers_v(split, protected).items():
        assert split_v > 0.9
        assert abs(cramers_v(y.numpy(), factors[name].numpy()) - split_v) <= 0.03
    others = {"texture", "colour"} - set(protected)
    for name in others:  # not protected: independent of the class, as in the split
        assert cramers_v(y.numpy(), factors[name].numpy()) < 0.05


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"protected": "size"}, "continuous"),
        ({"protected": "shape"}, "class itself"),
        ({"protected": "hair"}, "among"),
        ({"protected": ("texture", "texture")}, "distinct"),
        ({"target": "colour"}, "target"),
        ({"bias": 1.5}, "bias"),
    ],
)
def test_recipe_refuses_what_it_cannot_honour(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RecipeConfig(**kwargs)


def test_weights_record_the_recipe_and_the_split(generator):
    info = read_safetensors_metadata(WEIGHTS)
    assert info["protected"] == ["texture"] and info["recipe"]["protected"] == ["texture"]
    assert json.loads(json.dumps(info["train_split_cramers_v"]))["texture"] == pytest.approx(
        0.899, abs=0.01
    )

"""The BigGAN adapter, on a tiny randomly initialised BigGAN-deep saved the way the package saves
it."""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import warnings

import pytest
import torch
from pytorch_pretrained_biggan import BigGAN, BigGANConfig
from pytorch_pretrained_biggan.file_utils import url_to_filename
from pytorch_pretrained_biggan.model import (
    PRETRAINED_CONFIG_ARCHIVE_MAP,
    PRETRAINED_MODEL_ARCHIVE_MAP,
)
from scipy.stats import truncnorm

from fairgen.generators import Generator, load_generator
from fairgen.generators.biggan import BigGANGenerator, interpolate_statistics, load_biggan

TINY = dict(
    z_dim=16,
    channel_width=4,
    num_classes=10,
    layers=[[False, 16, 16], [True, 16, 8], [True, 8, 4], [True, 4, 2], [False, 2, 1]],
    attention_layer_position=2,
)


def tiny_state() -> dict[str, torch.Tensor]:
    """A tiny BigGAN-deep's state dict with well-scaled random weights and varied BN statistics."""
    torch.manual_seed(0)
    model = BigGAN(BigGANConfig(**TINY))
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_means"):  # every truncation row different, so t matters
                buffer.normal_(0.0, 0.5)
            elif name.endswith("running_vars"):
                buffer.uniform_(0.5, 2.0)
        model.generator.bn.weight.fill_(1.0)  # the package leaves these uninitialised
        model.generator.bn.bias.zero_()
        model.generator.layers[2].gamma.fill_(0.5)  # switch the attention block on
        for module in model.modules():  # converged power iteration: sigma = top singular value
            if hasattr(module, "weight_orig"):
                u, _, vh = torch.linalg.svd(module.weight_orig.flatten(1))
                module.weight_u.copy_(u[:, 0])
                module.weight_v.copy_(vh[0])
    return model.state_dict()


def save_weights(folder, state) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(TINY))
    torch.save(state, folder / "pytorch_model.bin")


def package_model(state) -> BigGAN:
    """The package's own model with the same weights, as a reference."""
    model = BigGAN(BigGANConfig(**TINY))
    model.load_state_dict(state)
    return model.eval()


def package_images(model, z, imagenet_classes, truncation) -> torch.Tensor:
    one_hot = torch.nn.functional.one_hot(imagenet_classes, TINY["num_classes"]).float()
    with torch.no_grad():
        return (model(z, one_hot, truncation) + 1) / 2


@pytest.fixture(scope="module")
def state():
    return tiny_state()


@pytest.fixture(scope="module")
def weights(tmp_path_factory, state):
    folder = tmp_path_factory.mktemp("tiny-biggan")
    save_weights(folder, state)
    return folder


@pytest.fixture(scope="module")
def biggan(weights):
    return load_biggan("biggan-deep-256", weights_dir=weights, truncation=0.5)


@pytest.fixture(autouse=True)
def no_real_weight_locations(monkeypatch, tmp_path):
    """Tests never see a real cache: HOME and the env vars point into tmp_path."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("FAIRGEN_BIGGAN_DIR", raising=False)
    monkeypatch.delenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", raising=False)


def test_loaded_model_meets_the_generator_contract(biggan, weights):
    assert isinstance(biggan, Generator)
    assert (biggan.latent_dim, biggan.num_classes, biggan.resolution) == (16, 10, 32)
    assert biggan.latent_space == "z"
    assert (
        biggan.checksum == hashlib.sha256((weights / "pytorch_model.bin").read_bytes()).hexdigest()
    )
    z = biggan.sample_latents(5, torch.Generator().manual_seed(1))
    images = biggan.synthesize(z, torch.tensor([0, 1, 2, 3, 9]))
    assert images.shape == (5, 3, 32, 32) and images.dtype == torch.float32
    assert images.min() >= 0 and images.max() <= 1
    assert images.std() > 0.05  # not saturated or constant: the checks below mean something


def test_same_seed_same_images_and_different_seed_different_images(biggan):
    y = torch.tensor([4, 4, 7])
    first = biggan.synthesize(biggan.sample_latents(3, torch.Generator().manual_seed(3)), y)
    again = biggan.synthesize(biggan.sample_latents(3, torch.Generator().manual_seed(3)), y)
    other = biggan.synthesize(biggan.sample_latents(3, torch.Generator().manual_seed(4)), y)
    assert torch.equal(first, again)
    assert not torch.allclose(first, other)


def test_latents_follow_the_truncated_normal_prior_scaled_by_truncation(weights):
    biggan = load_biggan("biggan-deep-128", weights_dir=weights, truncation=0.8)
    z = biggan.sample_latents(4000, torch.Generator().manual_seed(0))
    assert z.shape == (4000, 16) and z.dtype == torch.float32
    assert z.abs().max() <= 2 * 0.8
    assert z.abs().max() > 2 * 0.8 * 0.99  # the tails reach the bound
    assert abs(z.mean().item()) < 0.01
    expected_std = 0.8 * truncnorm(-2, 2).std()
    assert z.std().item() == pytest.approx(expected_std, rel=0.01)
    with pytest.raises(ValueError, match="n must"):
        biggan.sample_latents(-1)


def test_sampled_classes_cover_the_adapter_ids_deterministically(weights):
    subset = load_biggan("biggan-deep-256", weights_dir=weights, classes=[9, 4, 0])
    y = subset.sample_classes(300, torch.Generator().manual_seed(2))
    assert y.dtype == torch.int64 and set(y.tolist()) == {0, 1, 2}
    assert torch.equal(y, subset.sample_classes(300, torch.Generator().manual_seed(2)))


def test_grid_truncation_matches_the_package_output(state, weights):
    biggan = load_biggan("biggan-deep-256", weights_dir=weights, truncation=0.4)
    z = biggan.sample_latents(3, torch.Generator().manual_seed(5))
    y = torch.tensor([0, 5, 9])
    expected = package_images(package_model(state), z, y, 0.4)
    torch.testing.assert_close(biggan.synthesize(z, y), expected, rtol=0, atol=1e-5)


def test_statistics_are_exact_on_the_grid_and_linear_between():
    stats = torch.randn(51, 7)
    for i in (0, 7, 20, 25, 50):
        assert torch.equal(interpolate_statistics(stats, i / 50), stats[i])
    for i in (0, 7, 28, 49):
        halfway = interpolate_statistics(stats, (i + 0.5) / 50)
        torch.testing.assert_close(halfway, (stats[i] + stats[i + 1]) / 2)
    quarter = interpolate_statistics(stats, (13 + 0.25) / 50)
    torch.testing.assert_close(quarter, 0.75 * stats[13] + 0.25 * stats[14])


def test_off_grid_truncation_uses_the_interpolated_statistics(state, weights):
    # The package uses the wrong statistics off the grid; give it every row equal to the
    # correct blend (t = 0.234 lies 70% of the way from row 11 to row 12), so whatever row it
    # picks, its output is the correctly interpolated one.
    t = 0.234
    blended = {}
    for key, value in state.items():
        if key.endswith(("running_means", "running_vars")):
            blended[key] = (0.3 * value[11] + 0.7 * value[12]).expand_as(value).clone()
        else:
            blended[key] = value
    biggan = load_biggan("biggan-deep-256", weights_dir=weights, truncation=t)
    z = biggan.sample_latents(2, torch.Generator().manual_seed(6))
    y = torch.tensor([1, 8])
    expected = package_images(package_model(blended), z, y, t)
    torch.testing.assert_close(biggan.synthesize(z, y), expected, rtol=0, atol=1e-5)


def test_truncation_changes_the_images_and_must_lie_in_zero_one(weights):
    low = load_biggan("biggan-deep-256", weights_dir=weights, truncation=0.3)
    high = load_biggan("biggan-deep-256", weights_dir=weights, truncation=1.0)
    z = torch.randn(2, 16, generator=torch.Generator().manual_seed(7)).clamp(-0.5, 0.5)
    y = torch.tensor([2, 3])
    assert not torch.allclose(low.synthesize(z, y), high.synthesize(z, y), atol=1e-3)
    for bad in (0, -0.1, 1.5, math.nan, True, "0.5"):
        with pytest.raises(ValueError, match="truncation"):
            load_biggan("biggan-deep-256", weights_dir=weights, truncation=bad)


def test_class_list_maps_adapter_ids_to_model_classes(biggan, weights):
    subset = load_biggan("biggan-deep-256", weights_dir=weights, classes=[7, 2])
    assert subset.num_classes == 2
    z = subset.sample_latents(2, torch.Generator().manual_seed(8))
    torch.testing.assert_close(
        subset.synthesize(z, torch.tensor([0, 1])), biggan.synthesize(z, torch.tensor([7, 2]))
    )
    single = load_biggan("biggan-deep-256", weights_dir=weights, classes=4)
    assert single.num_classes == 1
    with pytest.raises(ValueError, match=r"y holds class indices outside \[0, 2\)"):
        subset.synthesize(z, torch.tensor([0, 2]))
    for bad in ([10], [-1], [3, 3], [], [1.5], "a"):
        with pytest.raises(ValueError, match="classes"):
            load_biggan("biggan-deep-256", weights_dir=weights, classes=bad)


def test_bad_latents_and_classes_are_rejected_clearly(biggan):
    y = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="NaN"):
        biggan.synthesize(torch.full((2, 16), math.nan), y)
    with pytest.raises(ValueError, match=r"shape \[n, 16\]"):
        biggan.synthesize(torch.zeros(2, 15), y)
    with pytest.raises(ValueError, match="floating-point"):
        biggan.synthesize(torch.zeros(2, 16, dtype=torch.int64), y)
    with pytest.raises(ValueError, match="required"):
        biggan.synthesize(torch.zeros(2, 16))
    with pytest.raises(ValueError, match="outside"):
        biggan.synthesize(torch.zeros(2, 16), torch.tensor([0, 10]))


def test_weights_found_through_fairgen_env_var(weights, tmp_path, monkeypatch):
    shutil.copytree(weights, tmp_path / "models" / "biggan-deep-512")
    monkeypatch.setenv("FAIRGEN_BIGGAN_DIR", str(tmp_path / "models"))
    assert load_biggan("biggan-deep-512").resolution == 32
    with pytest.raises(FileNotFoundError):
        load_biggan("biggan-deep-128")  # only the 512 folder exists


def test_weights_found_in_the_package_cache_under_hashed_names(weights, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    cache.mkdir()
    for url, file in (
        (PRETRAINED_CONFIG_ARCHIVE_MAP["biggan-deep-256"], "config.json"),
        (PRETRAINED_MODEL_ARCHIVE_MAP["biggan-deep-256"], "pytorch_model.bin"),
    ):
        cached = cache / url_to_filename(url, etag='"abc123"')
        shutil.copy(weights / file, cached)
        (cache / (cached.name + ".json")).write_text(json.dumps({"url": url, "etag": '"abc123"'}))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(cache))
    assert load_biggan("biggan-deep-256").latent_dim == 16
    monkeypatch.delenv("PYTORCH_PRETRAINED_BIGGAN_CACHE")
    assert load_biggan("biggan-deep-256", cache_dir=cache).latent_dim == 16
    assert load_generator("biggan-deep-256", cache_dir=cache).latent_dim == 16


def test_local_folder_loads_through_load_generator(weights, state):
    biggan = load_generator(weights, truncation=0.4, classes=[3, 1])
    assert isinstance(biggan, BigGANGenerator) and biggan.num_classes == 2
    z = biggan.sample_latents(2, torch.Generator().manual_seed(9))
    expected = package_images(package_model(state), z, torch.tensor([3, 1]), 0.4)
    torch.testing.assert_close(
        biggan.synthesize(z, torch.tensor([0, 1])), expected, rtol=0, atol=1e-5
    )


def test_missing_weights_name_the_files_the_places_and_the_command(tmp_path, monkeypatch):
    monkeypatch.setenv("FAIRGEN_BIGGAN_DIR", str(tmp_path / "fairgen-models"))
    monkeypatch.setenv("PYTORCH_PRETRAINED_BIGGAN_CACHE", str(tmp_path / "pkg-cache"))
    with pytest.raises(FileNotFoundError) as error:
        load_biggan("biggan-deep-256", cache_dir=tmp_path / "my-cache")
    message = str(error.value)
    for expected in (
        "config.json",
        "pytorch_model.bin",
        str(tmp_path / "fairgen-models" / "biggan-deep-256"),
        str(tmp_path / "pkg-cache"),
        str(tmp_path / "my-cache"),
        str(tmp_path / "home" / ".pytorch_pretrained_biggan"),
        "BigGAN.from_pretrained('biggan-deep-256')",
    ):
        assert expected in message
    with pytest.raises(FileNotFoundError, match="weights_dir"):
        load_biggan("biggan-deep-128", weights_dir=tmp_path / "nowhere")


def test_missing_or_unexpected_state_keys_are_reported(state, tmp_path):
    missing = dict(state)
    del missing["generator.layers.1.bn_2.running_vars"]
    save_weights(tmp_path / "missing", missing)
    with pytest.raises(ValueError, match=r"missing keys generator\.layers\.1\.bn_2\.running_vars"):
        load_biggan("biggan-deep-256", weights_dir=tmp_path / "missing")
    extra = dict(state, **{"generator.surprise": torch.zeros(3)})
    save_weights(tmp_path / "extra", extra)
    with pytest.raises(ValueError, match=r"unexpected keys generator\.surprise"):
        load_biggan("biggan-deep-256", weights_dir=tmp_path / "extra")


def test_load_and_synthesize_emit_no_warnings(weights):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        biggan = load_biggan("biggan-deep-256", weights_dir=weights, truncation=0.7)
        biggan.synthesize(biggan.sample_latents(2), torch.tensor([0, 1]))
        assert len(biggan.checksum) == 64

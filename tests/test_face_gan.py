"""The face GAN adapter (gan-face-generate 1.1.1): a tiny random twin through the real loading path,
the shipped weights themselves, and the pixel labelers face:lightness / face:background."""

from __future__ import annotations

import hashlib
import sys

import pytest
import torch
from gan_face_generate.models import Generator as PackageGenerator

from fairgen.checks import MissingExtraError
from fairgen.generators import Generator, load_generator
from fairgen.generators.base import check_generator
from fairgen.generators.face_gan import load_face_gan, save_face_gan, shipped_weights
from fairgen.labelers import load_labeler
from fairgen.labelers.face import FACE_DARK_BELOW, background_lightness, face_lightness

# SHA-256 of weights.tar in gan-face-generate 1.1.1 (cards pin it; another version changes it)
SHIPPED_SHA256 = "0c3b90b138cfc4e8a73310b9fd5ce2a8f1f3a542a037de277412307fcd28771f"


def tiny_twin(seed: int = 0) -> PackageGenerator:
    """The package's DCGAN with narrow layers (ngf=4), random weights and varied BN statistics."""
    torch.manual_seed(seed)
    model = PackageGenerator(ngpu=0, nc=3, nz=100, ngf=4)
    with torch.no_grad():
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.normal_(0.0, 0.3)
            elif name.endswith("running_var"):
                buffer.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def twin_file(tmp_path_factory):
    model = tiny_twin()
    path = save_face_gan(model, tmp_path_factory.mktemp("face-twin") / "twin.tar")
    return model, path


def test_twin_loads_through_the_same_path_and_matches_the_package_model(twin_file):
    model, path = twin_file
    for generator in (
        load_face_gan(path),
        load_generator(path),
        load_generator("face-gan-64", weights=path),
    ):
        assert isinstance(generator, Generator)
        check_generator(generator, "face GAN")
        assert (generator.latent_dim, generator.num_classes, generator.resolution) == (100, 0, 64)
        assert generator.checksum == hashlib.sha256(path.read_bytes()).hexdigest()
        z = generator.sample_latents(6, torch.Generator().manual_seed(1))
        assert z.shape == (6, 100)
        images = generator.synthesize(z)
        with torch.no_grad():
            expected = (model(z.reshape(6, 100, 1, 1)) + 1) / 2
        assert images.dtype == torch.float32 and images.shape == (6, 3, 64, 64)
        assert torch.equal(images, expected)
        assert 0 <= images.min() and images.max() <= 1


def test_twin_is_deterministic_and_differentiable_only_on_request(twin_file):
    generator = load_face_gan(twin_file[1])
    draw = [generator.sample_latents(4, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(draw[0], draw[1])
    assert torch.equal(generator.synthesize(draw[0]), generator.synthesize(draw[1]))
    assert not generator.synthesize(draw[0]).requires_grad
    z = draw[0].clone().requires_grad_(True)
    generator.synthesize(z).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(not p.requires_grad for p in generator.model.parameters())


def test_bad_inputs_are_clear_errors(twin_file, tmp_path):
    generator = load_face_gan(twin_file[1])
    with pytest.raises(ValueError, match=r"z must have shape \[n, 100\]"):
        generator.synthesize(torch.zeros(2, 100, 1, 1))
    with pytest.raises(FileNotFoundError, match="weights: face GAN checkpoint .* does not exist"):
        load_face_gan(tmp_path / "missing.tar")
    other = tmp_path / "other.tar"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(ValueError, match="must hold 'netG_state_dict'"):
        load_face_gan(other)
    with pytest.raises(ValueError, match="unknown generator|no generator loader"):
        load_generator(other)  # the path loader does not claim a checkpoint of another format
    state = tiny_twin().state_dict()
    del state["main.1.running_mean"]
    broken = tmp_path / "broken.tar"
    torch.save({"netG_state_dict": state}, broken)
    with pytest.raises(ValueError, match="does not match the package's DCGAN generator"):
        load_face_gan(broken)
    with pytest.raises(ValueError, match="takes no options besides weights"):
        load_generator("face-gan-64", truncation=0.5)


class _Code:  # a pickle that would run code when loaded without weights_only
    def __reduce__(self):
        return (print, ("ran",))


def test_a_checkpoint_holding_code_is_refused(tmp_path):
    path = tmp_path / "evil.tar"
    torch.save({"netG_state_dict": _Code()}, path)
    with pytest.raises(ValueError, match="not a checkpoint loadable with weights_only=True"):
        load_face_gan(path)


def test_missing_package_names_the_pip_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "gan_face_generate.models", None)
    with pytest.raises(
        MissingExtraError, match=r"pip install --no-deps gan-face-generate==1\.1\.1"
    ):
        load_face_gan()


def test_shipped_weights_sample_faces_deterministically():
    generator = load_generator("face-gan-64")
    assert generator.checksum == SHIPPED_SHA256
    assert generator.checksum == hashlib.sha256(shipped_weights().read_bytes()).hexdigest()
    z = generator.sample_latents(400, torch.Generator().manual_seed(0))
    images = generator.synthesize(z)
    assert images.shape == (400, 3, 64, 64) and images.dtype == torch.float32
    assert 0 <= images.min() and images.max() <= 1 and images.std() > 0.1
    assert torch.equal(images[:8], generator.synthesize(z[:8]))
    # the labeler's threshold makes dark faces a minority of the prior (16.7% of 20,000 measured)
    dark = face_lightness(images).float().mean().item()
    assert 0.09 < dark < 0.26
    light_background = background_lightness(images).float().mean().item()
    assert 0.35 < light_background < 0.65


def _image(size: int, face: float, background: float) -> torch.Tensor:
    image = torch.full((3, size, size), background)
    s = size // 64
    image[:, 26 * s : 42 * s, 22 * s : 42 * s] = face
    return image


@pytest.mark.parametrize("size", [64, 128])
def test_pixel_labelers_read_the_face_patch_and_the_corners(size):
    images = torch.stack(
        [
            _image(size, 0.05, 0.9),
            _image(size, 0.8, 0.9),
            _image(size, 0.8, 0.1),
            _image(size, FACE_DARK_BELOW + 0.01, 0.1),
        ]
    )
    assert face_lightness(images).tolist() == [1, 0, 0, 0]
    assert background_lightness(images).tolist() == [1, 1, 0, 0]
    labeler = load_labeler("face:lightness")
    assert labeler.values == ["light", "dark"]
    assert labeler(images).tolist() == [1, 0, 0, 0]
    assert load_labeler("fairgen.labelers.face:background_lightness")(images).tolist() == [
        1,
        1,
        0,
        0,
    ]


def test_unknown_face_labeler_and_bad_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="face:eyes is not a face labeler"):
        load_labeler("face:eyes")
    with pytest.raises(ValueError, match=r"images must have shape \[N, 3, H, W\]"):
        face_lightness(torch.zeros(2, 64, 64))

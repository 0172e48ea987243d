"""The pretrained face GAN of ``gan-face-generate`` (PyPI, MIT) behind the fairgen Generator
protocol.

A 64-px DCGAN, unconditional, z ~ N(0, I) in R^100; its weights ship inside the package
(``weights.tar``, a checkpoint holding ``netG_state_dict``). It was trained on DigiFace-1M, rendered
synthetic faces under their own research licence: whoever shows or ships its images says so.

Install without the package's declared dependencies (they pull wandb and matplotlib; the model
needs only torch): ``pip install --no-deps gan-face-generate==1.1.1``.
"""

from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from plumbing.files import sha256_file
from plumbing.validation import check_classes, check_int, check_latents

from ..checks import MissingExtraError
from .registry import register_generator, register_path_loader

NAME = "face-gan-64"
EXTRA = "face"
PIP_LINE = "pip install --no-deps gan-face-generate==1.1.1"
STATE_KEY = "netG_state_dict"  # the package's checkpoint format
WEIGHTS_SUFFIXES = (".tar", ".pt", ".pth")
LICENCE = "face GAN trained on DigiFace-1M (its own research licence)"


def _package():
    """``gan_face_generate.models``, imported only when a face GAN is asked for."""
    try:
        import gan_face_generate.models as models
    except ImportError as error:
        raise MissingExtraError(
            f"the face GAN needs the optional package gan-face-generate ({error}); install it "
            "with: "
            f"{PIP_LINE}  (--no-deps: its declared dependencies pull wandb and matplotlib, it "
            "needs only torch)"
        ) from None
    return models


def shipped_weights() -> Path:
    """The ``weights.tar`` that ships inside ``gan_face_generate``."""
    from importlib.resources import files

    _package()
    return Path(str(files("gan_face_generate") / "weights.tar"))


class FaceGANGenerator:
    """The package's DCGAN generator as a fairgen Generator: unconditional, 64 px, z in R^100.

    Latents are ``[N, latent_dim]`` (reshaped to ``[N, latent_dim, 1, 1]`` inside); images are
    float32 in [0, 1] (the tanh output mapped from [-1, 1]). ``checksum`` is the SHA-256 of the
    weights file. Takes ownership of ``model`` (moved to ``device``, put in eval mode).
    """

    latent_space = "z"
    num_classes = 0

    def __init__(
        self,
        model: nn.Module,
        *,
        weights_file: str | os.PathLike,
        name: str = NAME,
        device: str | torch.device = "cpu",
    ):
        first = model.main[0]  # ConvTranspose2d(nz, 8 * ngf, 4, 1, 0)
        self.name = name
        self.device = torch.device(device)
        self.latent_dim = first.in_channels
        self.resolution = 64
        self.model = model.to(self.device).eval().requires_grad_(False)
        self._weights_file = Path(weights_file)

    @cached_property
    def checksum(self) -> str:
        """SHA-256 of the weights file, streamed once on first use."""
        return sha256_file(self._weights_file)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` latents from the prior N(0, I), drawn on the generator's device, returned on the
        model's."""
        n = check_int(n, "n", 0)
        device = generator.device if generator is not None else self.device
        return torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.device)

    def synthesize(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``[n, 3, 64, 64]`` float32 in [0, 1]; ``y`` is ignored (unconditional)."""
        check_latents(z, "z", self.latent_dim, tensor=True, allow_empty=True)
        check_classes(y, z.shape[0], self.num_classes)
        z = rearrange(z.to(self.device, torch.float32), "n d -> n d 1 1")
        with torch.set_grad_enabled(torch.is_grad_enabled() and z.requires_grad):
            images = self.model(z)
        return images.float().add(1).mul_(0.5)

    def __repr__(self) -> str:
        return (
            f"FaceGANGenerator(name={self.name!r}, resolution=64, latent_dim={self.latent_dim}, "
            f"device={self.device})"
        )


def load_face_gan(
    weights: str | os.PathLike | None = None,
    *,
    device: str | torch.device = "cpu",
    name: str = NAME,
) -> FaceGANGenerator:
    """Load the face GAN from ``weights`` (a checkpoint holding ``netG_state_dict``), by default the
    ``weights.tar`` shipped in the package. The architecture (latent size, widths) is read from the
    checkpoint's shapes, so a smaller twin saved the same way loads through the same path."""
    models = _package()
    path = Path(weights).expanduser() if weights is not None else shipped_weights()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights: face GAN checkpoint {path} does not exist"
            + ("" if weights is not None else f"; reinstall it with: {PIP_LINE}")
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in several types
        raise ValueError(
            f"weights: {path} is not a checkpoint loadable with weights_only=True: {error}"
        ) from None
    state = checkpoint.get(STATE_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict) or "main.0.weight" not in state:
        raise ValueError(
            f"weights: {path} must hold {STATE_KEY!r} (the gan-face-generate checkpoint format) "
            "with "
            "the generator's 'main.*' tensors"
        )
    nz, width = state["main.0.weight"].shape[
        :2
    ]  # ConvTranspose2d weight [in, out, k, k]; out = 8 * ngf
    channels = state["main.12.weight"].shape[1] if "main.12.weight" in state else 3
    if width % 8 or channels != 3:
        raise ValueError(
            f"weights: {path} does not hold the package's DCGAN generator (first width {width}, "
            f"{channels} output channels; expected a multiple of 8 and 3)"
        )
    model = models.Generator(ngpu=0, nc=3, nz=int(nz), ngf=int(width) // 8)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:  # missing/unexpected keys or shape mismatches
        raise ValueError(
            f"weights: {path} does not match the package's DCGAN generator: {error}"
        ) from None
    return FaceGANGenerator(model, weights_file=path, name=name, device=device)


def save_face_gan(model: nn.Module, path: str | os.PathLike) -> Path:
    """Write ``model``'s state dict in the package's checkpoint format (``{'netG_state_dict':
    ...}``)."""
    path = Path(path)
    torch.save({STATE_KEY: model.state_dict()}, path)
    return path


@register_generator(NAME)
def _load_named(
    device="cpu", weights: str | os.PathLike | None = None, **options
) -> FaceGANGenerator:
    """The shipped face GAN (or ``weights=`` a checkpoint in the package's format)."""
    if options:
        raise ValueError(
            f"{NAME} takes no options besides weights (it is unconditional, without truncation), "
            f"got {sorted(options)}"
        )
    return load_face_gan(weights, device=device)


def _is_checkpoint(path: Path) -> bool:
    """A file in the package's format: a torch checkpoint whose top level holds
    ``netG_state_dict``."""
    if path.suffix not in WEIGHTS_SUFFIXES or not path.is_file():
        return False
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:
        return False
    return isinstance(checkpoint, dict) and STATE_KEY in checkpoint


@register_path_loader(_is_checkpoint)
def _load_path(path: Path, device="cpu", **options) -> FaceGANGenerator:
    if options:
        raise ValueError(f"a face GAN checkpoint takes no options, got {sorted(options)}")
    return load_face_gan(path, device=device, name=path.name)

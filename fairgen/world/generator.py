"""The embedded default generator, ``world-sprites-z128``: a 128-d latent, a mapping network and a
layered sprite decoder, learned from a biased world training split.

It looks like a trained GAN from the inside, and trains on a CPU in minutes:

* ``z ~ N(0, I_128)`` goes through a **mapping network** (``mapping.py``): each of seven scene
  codes is a nonlinear function of its own 18 directions of ``z``, calibrated to be uniform. No
  coordinate of ``z`` is an attribute, and the region of ``z`` where an attribute takes a value is
  curved, not a half-space;
* a **learned prior** turns the codes into scene factors. Each categorical factor (texture,
  colour) is read from its code through a table the recipe fitted from the training split: the
  *class-conditional* distribution for the factors it was told are protected (so the generator
  inherits the split's bias in them), the pooled distribution for the others. The continuous
  factors (hue within its colour bin, size, position, rotation) go through the split's quantiles;
* a **learned decoder** composes learned pieces: one alpha sprite per shape (warped by pose), one
  background image per texture, a hue-to-colour table, rendered at 2x and averaged down.

``synthesize(z, y)`` is differentiable in ``z`` along the continuous factors (categorical factors
change in steps). ``decode_codes(h, y)`` decodes Gaussian codes ``h [N, 7]`` directly, so that
benchmarks can build generators with other latent geometries around the same decoder.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from plumbing.files import (
    load_safetensors,
    read_safetensors_metadata,
    save_safetensors,
    sha256_file,
)
from plumbing.validation import check_classes, check_latents

from .legacy import (
    SPRITE_EXTENT,
    SpriteDecoding,
    _disk_logits,
    _interp,
    register_embedded,
)
from .mapping import MappingNetwork
from .render import CATEGORICAL

NAME = "world-sprites-z128"
WEIGHTS = Path(__file__).resolve().parent / "weights" / f"{NAME}.safetensors"
LATENT_DIM = 128
MODELLED = (
    "texture",
    "colour",
)  # categorical factors the prior reads from a code (and can tie to the class)
SMOOTH = (
    "hue",
    "size",
    "x",
    "y",
    "rotation",
)  # continuous factors (hue: the offset inside its colour bin)
CODE_NAMES = MODELLED + SMOOTH
N_QUANTILES = 257

__all__ = [
    "CODE_NAMES",
    "LATENT_DIM",
    "MODELLED",
    "MappedSpriteGenerator",
    "NAME",
    "SPRITE_EXTENT",
    "WEIGHTS",
]


class MappedSpriteGenerator(SpriteDecoding, nn.Module):
    """Class-conditional generator: ``synthesize(z [N, 128], y [N]) -> images [N, 3, 32, 32]``."""

    latent_space = "z"

    def __init__(
        self,
        resolution: int = 32,
        sprite_size: int = 64,
        supersample: int = 2,
        latent_dim: int = LATENT_DIM,
        seed: int = 0,
    ):
        super().__init__()
        self.name = NAME
        self.resolution = resolution
        self.supersample = supersample
        self.num_classes = len(CATEGORICAL["shape"])
        self.num_textures = len(CATEGORICAL["texture"])
        self.num_colours = len(CATEGORICAL["colour"])
        self.latent_dim = latent_dim
        canvas = resolution * supersample
        # learned decoder pieces
        self.sprites = nn.Parameter(_disk_logits(self.num_classes, sprite_size))
        self.backgrounds = nn.Parameter(torch.zeros(self.num_textures, 3, canvas, canvas))
        self.palette = nn.Parameter(
            torch.zeros(24, 3)
        )  # colour vs hue; 24 knots: every knot sees data
        # mapping network and learned prior (``fit_prior`` fills the tables from a training split)
        self.mapping = MappingNetwork(latent_dim, len(CODE_NAMES), seed=seed)
        for name in MODELLED:
            k = len(CATEGORICAL[name])
            self.register_buffer(
                f"cdf_{name}", torch.linspace(0, 1, k + 1)[1:].repeat(self.num_classes, 1)
            )
        self.register_buffer("quantiles", torch.linspace(0, 1, N_QUANTILES).repeat(len(SMOOTH), 1))
        self.protected: tuple[str, ...] = ()
        self.checksum = ""

    # ------------------------------------------------------------ prior

    @torch.no_grad()
    def fit_prior(self, factors: dict[str, torch.Tensor], protected: tuple[str, ...]) -> None:
        """Fit the categorical tables (class-conditional for ``protected``) and the continuous
        quantiles."""
        unknown = [name for name in protected if name not in MODELLED]
        if unknown:
            raise ValueError(
                f"protected must be among {MODELLED} (the categorical factors the prior models), "
                f"got {unknown}"
            )
        shape = factors["shape"]
        for name in MODELLED:
            k = len(CATEGORICAL[name])
            counts = torch.zeros(self.num_classes, k)
            counts.index_put_((shape, factors[name]), torch.ones(len(shape)), accumulate=True)
            if (
                name not in protected
            ):  # independent of the class: the pooled distribution for every class
                counts = counts.sum(0, keepdim=True).expand(self.num_classes, k)
            probs = (counts + 0.5) / (counts + 0.5).sum(1, keepdim=True)
            getattr(self, f"cdf_{name}").copy_(probs.cumsum(1))
        continuous = dict(factors, hue=factors["hue"] * self.num_colours - factors["colour"])
        levels = torch.linspace(0, 1, N_QUANTILES, dtype=torch.float64)
        table = torch.stack([torch.quantile(continuous[k].double(), levels) for k in SMOOTH])
        self.quantiles.copy_(table.to(self.quantiles))
        self.protected = tuple(protected)

    def codes(self, z: torch.Tensor) -> torch.Tensor:
        """Uniform scene codes ``[N, 7]`` of latents (in ``CODE_NAMES`` order)."""
        return self.mapping(z)

    def factors_from_codes(self, u: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scene factors that uniform codes ``u [N, 7]`` and classes stand for, through the
        prior."""
        factors = {"shape": y}
        for i, name in enumerate(MODELLED):
            cdf = getattr(self, f"cdf_{name}")[y]
            factors[name] = (u[:, i : i + 1] > cdf[:, :-1]).sum(1)
        for i, name in enumerate(SMOOTH):
            factors[name] = _interp(u[:, len(MODELLED) + i], self.quantiles[i])
        factors["hue"] = (factors["colour"] + factors["hue"]) / self.num_colours
        return factors

    def factors_from_latents(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.factors_from_codes(self.codes(z), y)

    # ------------------------------------------------------------ decoder (``SpriteDecoding``)

    def decode_codes(self, h: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Images of Gaussian codes ``h [N, 7]`` (``N(0, I)`` under the prior), bypassing the
        mapping."""
        check_latents(h, "h", len(CODE_NAMES), tensor=True, allow_empty=True)
        check_classes(y, len(h), self.num_classes)
        u = torch.special.ndtr(h.to(self.device).float())
        return self.decode(self.factors_from_codes(u, y.to(self.device))).clamp(0, 1)

    # ------------------------------------------------------------ files

    def save(self, path: str | Path, metadata: dict | None = None) -> str:
        """Write the weights as safetensors (reproducible bytes, atomic); returns the SHA-256."""
        info = {
            "name": NAME,
            "resolution": self.resolution,
            "supersample": self.supersample,
            "latent_dim": self.latent_dim,
            "protected": list(self.protected),
            **(metadata or {}),
        }
        self.checksum = save_safetensors(self.state_dict(), path, info)
        return self.checksum

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> MappedSpriteGenerator:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"embedded generator weights not found at {path}; rebuild them with `fairgen zoo "
                f"train {NAME}`"
            )
        state = load_safetensors(path, "embedded generator weights")
        info = read_safetensors_metadata(path, "embedded generator weights")
        try:
            model = cls(
                sprite_size=state["sprites"].shape[-1],
                supersample=int(info["supersample"]),
                latent_dim=state["mapping.projection"].shape[2],
            )
            model.load_state_dict(state)
        except (KeyError, RuntimeError) as error:
            raise ValueError(
                f"embedded generator weights {path} do not fit {NAME}: {error}"
            ) from None
        model.protected = tuple(info.get("protected", ()))
        model.checksum = sha256_file(path)
        return model.to(device).eval().requires_grad_(False)


register_embedded(NAME, MappedSpriteGenerator, WEIGHTS)

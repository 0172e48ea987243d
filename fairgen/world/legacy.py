"""The first embedded generator, ``world-sprites-32`` (kept registered for comparison): a layered
sprite generator learned from a biased world training split, with a 6-d latent in which texture
is a threshold on one rotated coordinate. The default is now ``world-sprites-z128``
(``generator.py``); this model is the 6-d linear geometry of ``benchmarks/steering_geometry.py``
and keeps old stream cards (which pin its SHA-256) working. Its recipe lived in
``fairgen/world/recipe.py`` up to commit 4c89f34.

Why not a GAN: on a 2-core CPU a small conditional GAN runs about 1 iteration/s and had learned
no shapes after 20 minutes (issue #3). This model has the structure of the images built in, and
learns everything else from the data, so it trains in minutes on a CPU:

* a **learned prior** maps the latent ``z ~ N(0, I)`` to scene factors. ``z`` is mixed by a fixed
  random rotation (attributes do not sit on axes, as in any real generator) and each coordinate
  is pushed through the training split's empirical quantile function; the texture coordinate
  goes through the *class-conditional* texture distribution of the training split. So the bias
  the split carries (rho between shape and texture) is inherited, and within a class the
  texture varies with ``z`` along one direction with class-dependent thresholds — the structure
  steering must handle;
* a **learned decoder** composes learned pieces: one alpha sprite per shape (warped by pose),
  one background image per texture, a hue-to-colour table, rendered at 2x and averaged down.

Its ``latent_space`` is ``z``: the class is a separate input and ``z`` carries only the
variation within a class.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from plumbing.files import (
    load_safetensors,
    read_safetensors_metadata,
    save_safetensors,
    sha256_file,
)
from plumbing.validation import check_classes, check_int, check_latents

from ..generators.registry import register_generator, register_path_loader
from .render import CATEGORICAL, CONTINUOUS

NAME = "world-sprites-32"
WEIGHTS = Path(__file__).resolve().parent / "weights" / f"{NAME}.safetensors"
N_QUANTILES = 257
SPRITE_EXTENT = 1.25  # the sprite covers [-1.25, 1.25]^2 in object units (radius = 1)


class SpriteDecoding:
    """What both embedded models share: drawing latents and classes, and the layered sprite decoder
    (a subclass supplies ``factors_from_latents`` and the learned ``sprites``, ``backgrounds``,
    ``palette``)."""

    @property
    def device(self) -> torch.device:
        return self.sprites.device

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        n = check_int(n, "n", 1)
        device = _generator_device(generator, self.device)
        return torch.randn(n, self.latent_dim, generator=generator, device=device).to(self.device)

    def sample_classes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        device = _generator_device(generator, self.device)
        return torch.randint(self.num_classes, (n,), generator=generator, device=device).to(
            self.device
        )

    def decode(self, factors: dict[str, torch.Tensor]) -> torch.Tensor:
        """Compose the learned sprite, background and colour for given factors."""
        n = len(factors["shape"])
        canvas = self.resolution * self.supersample
        theta = _pose_to_affine(factors["x"], factors["y"], factors["size"], factors["rotation"])
        grid = F.affine_grid(theta, [n, 1, canvas, canvas], align_corners=False)
        alpha = F.grid_sample(
            torch.sigmoid(self.sprites)[factors["shape"]], grid, align_corners=False
        )
        background = torch.sigmoid(self.backgrounds)[factors["texture"]]
        colour = rearrange(
            torch.sigmoid(_circular_lookup(self.palette, factors["hue"])), "n c -> n c 1 1"
        )
        image = background * (1 - alpha) + colour * alpha
        return F.avg_pool2d(image, self.supersample)

    def synthesize(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images for latents; differentiable in ``z`` when ``z`` requires grad (latent walks),
        else no graph."""
        check_latents(z, "z", self.latent_dim, tensor=True, allow_empty=True)
        check_classes(y, len(z), self.num_classes)
        with torch.set_grad_enabled(torch.is_grad_enabled() and z.requires_grad):
            return self.decode(
                self.factors_from_latents(z.to(self.device), y.to(self.device))
            ).clamp(0, 1)

    def forward(self, z, y):
        return self.synthesize(z, y)


class SpriteWorldGenerator(SpriteDecoding, nn.Module):
    """Class-conditional generator: ``synthesize(z [N, 6], y [N]) -> images [N, 3, 32, 32]``."""

    latent_space = "z"

    def __init__(
        self, resolution: int = 32, sprite_size: int = 64, supersample: int = 2, seed: int = 0
    ):
        super().__init__()
        self.name = NAME
        self.resolution = resolution
        self.supersample = supersample
        self.num_classes = len(CATEGORICAL["shape"])
        self.num_textures = len(CATEGORICAL["texture"])
        self.latent_dim = 1 + len(CONTINUOUS)  # texture code + one code per continuous factor
        canvas = resolution * supersample
        # learned decoder pieces
        self.sprites = nn.Parameter(_disk_logits(self.num_classes, sprite_size))
        self.backgrounds = nn.Parameter(torch.zeros(self.num_textures, 3, canvas, canvas))
        self.palette = nn.Parameter(
            torch.zeros(24, 3)
        )  # colour vs hue; 24 knots: every knot sees data
        # learned prior (fitted from the training split by ``fit_prior``)
        mixing = torch.linalg.qr(
            torch.randn(
                self.latent_dim, self.latent_dim, generator=torch.Generator().manual_seed(seed)
            )
        )[0].contiguous()
        self.register_buffer("mixing", mixing)
        self.register_buffer(
            "texture_cdf",
            torch.linspace(0, 1, self.num_textures + 1)[1:].repeat(self.num_classes, 1),
        )
        self.register_buffer(
            "quantiles", torch.linspace(0, 1, N_QUANTILES).repeat(len(CONTINUOUS), 1)
        )
        self.checksum = ""

    # ------------------------------------------------------------ prior

    @torch.no_grad()
    def fit_prior(self, factors: dict[str, torch.Tensor]) -> None:
        """Estimate the class-conditional texture distribution and each factor's quantiles."""
        shape, texture = factors["shape"], factors["texture"]
        counts = torch.zeros(self.num_classes, self.num_textures)
        counts.index_put_((shape, texture), torch.ones(len(shape)), accumulate=True)
        probs = (counts + 0.5) / (counts + 0.5).sum(1, keepdim=True)
        self.texture_cdf.copy_(probs.cumsum(1).to(self.texture_cdf))
        levels = torch.linspace(0, 1, N_QUANTILES, dtype=torch.float64)
        table = torch.stack([torch.quantile(factors[k].double(), levels) for k in CONTINUOUS])
        self.quantiles.copy_(table.to(self.quantiles))

    def factors_from_latents(self, z: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The scene factors a latent (and class) stand for, through the learned prior."""
        u = torch.special.ndtr(z.float() @ self.mixing.T)  # uniform codes, one per column
        cdf = self.texture_cdf[y]
        texture = (u[:, :1] > cdf[:, :-1]).sum(1)
        factors = {"shape": y, "texture": texture}
        for i, name in enumerate(CONTINUOUS):
            factors[name] = _interp(u[:, 1 + i], self.quantiles[i])
        return factors

    # ------------------------------------------------------------ files

    def save(self, path: str | Path, metadata: dict | None = None) -> str:
        """Write the weights as safetensors (metadata as JSON strings); returns the SHA-256."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        info = {
            "name": NAME,
            "resolution": self.resolution,
            "supersample": self.supersample,
            **(metadata or {}),
        }
        self.checksum = save_safetensors(self.state_dict(), path, info)
        return self.checksum

    @classmethod
    def load(cls, path: str | Path, device="cpu") -> SpriteWorldGenerator:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"embedded generator weights not found at {path} (the {NAME} weights ship with "
                "fairgen)"
            )
        state = load_safetensors(path, "embedded generator weights")
        model = cls(
            sprite_size=state["sprites"].shape[-1], supersample=state["backgrounds"].shape[-1] // 32
        )
        model.load_state_dict(state)
        model.checksum = sha256_file(path)
        return model.to(device).eval().requires_grad_(False)


def _generator_device(generator, fallback):
    return generator.device if generator is not None else fallback


def _disk_logits(count: int, size: int) -> torch.Tensor:
    """Initial sprites: a soft disk of radius 1 object unit (learning starts from a blob)."""
    axis = (torch.arange(size) + 0.5) / size * 2 - 1
    radius = torch.sqrt(axis[None, :] ** 2 + axis[:, None] ** 2) * SPRITE_EXTENT
    return (4.0 * (0.8 - radius)).repeat(count, 1, 1, 1)


def _pose_to_affine(x, y, size, rotation):
    """Affine maps (output normalised coords -> sprite coords) for object pose in image units.

    Object frame: origin at the centre, y up, rotated by ``rotation``, unit = ``size``.
    """
    s = 1.0 / (2 * size.float() * SPRITE_EXTENT)
    cos, sin = torch.cos(rotation.float()), torch.sin(rotation.float())
    cx, cy = 1 - 2 * x.float(), 2 * y.float() - 1
    row_x = torch.stack([s * cos, -s * sin, s * (cos * cx + sin * cy)], dim=1)
    row_y = torch.stack([s * sin, s * cos, s * (sin * cx - cos * cy)], dim=1)
    return torch.stack([row_x, row_y], dim=1)


def _circular_lookup(table: torch.Tensor, hue: torch.Tensor) -> torch.Tensor:
    """Linear interpolation in a table indexed by hue in [0, 1), wrapping around."""
    position = torch.remainder(hue.float(), 1.0) * len(table)
    low = position.floor().long() % len(table)
    frac = (position - position.floor())[:, None]
    return table[low] * (1 - frac) + table[(low + 1) % len(table)] * frac


def _interp(u: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Evaluate a quantile table (values at evenly spaced levels) at levels ``u`` in [0, 1]."""
    position = u.clamp(0, 1) * (len(table) - 1)
    low = position.floor().long().clamp(max=len(table) - 2)
    frac = position - low
    return table[low] * (1 - frac) + table[low + 1] * frac


def register_embedded(name: str, cls, shipped: Path) -> None:
    """Register an embedded model twice: by ``name`` (its shipped weights, or ``weights=``) and by
    path (any safetensors file whose metadata carries ``name``, as ``cls.save`` writes it)."""

    def load_named(device="cpu", weights: str | Path | None = None, **options):
        if options:
            raise ValueError(f"{name} takes no options besides weights, got {sorted(options)}")
        return cls.load(weights or shipped, device=device)

    def is_weights(path: Path) -> bool:
        if path.suffix != ".safetensors" or not path.is_file():
            return False
        try:
            return read_safetensors_metadata(path).get("name") == name
        except ValueError:
            return False

    def load_file(path: Path, device="cpu", **options):
        if options:
            raise ValueError(f"{name} takes no options, got {sorted(options)}")
        return cls.load(path, device=device)

    register_generator(name)(load_named)
    register_path_loader(is_weights)(load_file)


register_embedded(NAME, SpriteWorldGenerator, WEIGHTS)

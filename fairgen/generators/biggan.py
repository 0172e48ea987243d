"""BigGAN-deep (``pytorch-pretrained-biggan``) behind the fairgen Generator protocol.

Weights are looked up locally and never downloaded. At load the model is prepared for fast,
exact inference: spectral norm is folded into plain weights, the final RGB conv keeps only
the 3 channels it emits, and every conditional batch norm gets statistics correctly
interpolated for the truncation in use (the package blends its 51 stored statistics with the
weights reversed) and folded into one multiply-add.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path

import torch
from einops import rearrange
from torch import nn

from plumbing.files import sha256_file
from plumbing.validation import check_classes, check_int, check_latents, is_number

from ..checks import MissingExtraError
from .registry import register_generator, register_path_loader

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "pytorch_model.bin"
NAMES = ("biggan-deep-128", "biggan-deep-256", "biggan-deep-512")
_INDEX_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
_TRUNC_BOUND = 2.0  # BigGAN samples z from a standard normal truncated to [-2, 2]
EXTRA = "biggan"  # pip install 'fairgen[biggan]'


def _package():
    """The ``pytorch_pretrained_biggan`` package, imported only when a BigGAN is asked for."""
    try:
        import pytorch_pretrained_biggan
        import pytorch_pretrained_biggan.file_utils
        import pytorch_pretrained_biggan.model
    except ImportError as error:
        raise MissingExtraError(
            f"BigGAN generators need the optional dependency pytorch-pretrained-biggan ({error}); "
            f"install it with: pip install 'fairgen[{EXTRA}]'"
        ) from None
    return pytorch_pretrained_biggan


# ---------------------------------------------------------------- truncation statistics


def interpolate_statistics(stats: torch.Tensor, truncation: float) -> torch.Tensor:
    """Blend stored per-truncation statistics ``[n_stats, C]`` linearly at ``truncation``.

    Row ``i`` holds the statistics for truncation ``i / (n_stats - 1)``. Grid points return the
    stored row exactly; in between, the two neighbours are weighted by distance (computed in
    float64 so the blend is exact to the storage precision).
    """
    position = truncation * (stats.shape[0] - 1)
    nearest = round(position)
    if abs(position - nearest) < 1e-9:
        return stats[nearest].clone()
    low = math.floor(position)
    weight = position - low
    blend = stats[low].double() * (1 - weight) + stats[low + 1].double() * weight
    return blend.to(stats.dtype)


class FrozenBatchNorm(nn.Module):
    """BigGAN's (conditional) batch norm with statistics fixed for one truncation.

    Called like the package's ``BigGANBatchNorm`` (``x, truncation, condition_vector``) so it
    drops into the package's blocks; ``truncation`` is ignored because the statistics were
    interpolated once at construction. Normalisation and the conditional gain/bias are folded
    into a single per-sample, per-channel multiply-add.
    """

    def __init__(self, bn: nn.Module, truncation: float):
        super().__init__()
        mean = interpolate_statistics(bn.running_means, truncation)
        var = interpolate_statistics(bn.running_vars, truncation)
        inv_std = torch.rsqrt(var + bn.eps)
        self.conditional = bn.conditional
        if self.conditional:
            self.scale, self.offset = bn.scale, bn.offset
            self.register_buffer("mean", mean)
            self.register_buffer("inv_std", inv_std)
        else:
            gain = bn.weight.detach() * inv_std
            self.register_buffer("gain", gain)
            self.register_buffer("shift", bn.bias.detach() - mean * gain)

    def forward(self, x, truncation=None, condition_vector=None):
        if not self.conditional:
            return torch.addcmul(self.shift[:, None, None], x, self.gain[:, None, None])
        gain = (1 + self.scale(condition_vector)) * self.inv_std
        shift = self.offset(condition_vector) - self.mean * gain
        return torch.addcmul(
            rearrange(shift, "b c -> b c 1 1"), x, rearrange(gain, "b c -> b c 1 1")
        )


def _prepare(model, truncation: float):
    """Make a ``BigGAN`` a frozen inference model for one truncation (in place; same outputs)."""
    BigGANBatchNorm = _package().model.BigGANBatchNorm
    model.eval()
    for module in model.modules():
        if hasattr(module, "weight_orig"):  # spectral norm: fold u, v into a plain weight
            nn.utils.remove_spectral_norm(module)
    for module in list(model.modules()):
        for child_name, child in module.named_children():
            if isinstance(child, BigGANBatchNorm):
                setattr(module, child_name, FrozenBatchNorm(child, truncation))
    rgb = model.generator.conv_to_rgb  # computes channel_width channels, the forward keeps 3
    rgb.weight = nn.Parameter(rgb.weight.detach()[:3].clone())
    rgb.bias = nn.Parameter(rgb.bias.detach()[:3].clone())
    rgb.out_channels = 3
    return model.requires_grad_(False)


# ---------------------------------------------------------------- the adapter


class BigGANGenerator:
    """A BigGAN-deep model as a fairgen Generator.

    ``latent_space = "z"``: BigGAN-deep concatenates the noise ``z`` with the class embedding
    and feeds that condition to every block, so the class is a separate input and the
    within-class variation (pose, colour, background, ...) lives in ``z``. Steering therefore
    works on ``z`` and should be fit per class.

    ``truncation`` is fixed per instance (batch-norm statistics are precomputed for it, and a
    compiled model would recompile for each new value): it scales ``sample_latents`` and
    selects the statistics. ``classes`` maps this adapter's class ids ``0..k-1`` to ImageNet
    indices; without it the ids are the model's own classes.

    Takes ownership of ``model`` (it is modified in place and moved to ``device``).
    ``weights_file`` is the ``pytorch_model.bin`` it came from (its SHA-256 is the checksum);
    for an in-memory model the checksum hashes its state dict instead.
    """

    latent_space = "z"

    def __init__(
        self,
        model: nn.Module,
        *,
        name: str,
        truncation: float = 0.5,
        classes: int | Sequence[int] | None = None,
        device: str | torch.device = "cpu",
        weights_file: str | os.PathLike | None = None,
    ):
        config = model.config
        self.truncation = _check_truncation(truncation)
        self.latent_prior = {
            "scale": self.truncation,
            "bound": _TRUNC_BOUND,
        }  # steering.LatentPrior: twins stay inside
        self.classes = _check_class_map(classes, config.num_classes)
        self.name = name
        self.device = torch.device(device)
        self.config = config
        self.latent_dim = config.z_dim
        self.num_classes = len(self.classes) if self.classes is not None else config.num_classes
        self.resolution = 4 * 2 ** sum(bool(layer[0]) for layer in config.layers)
        self._weights_file = Path(weights_file) if weights_file is not None else None
        if self._weights_file is None:
            self.__dict__["checksum"] = _state_dict_sha256(model)
        self.model = _prepare(model.to(self.device), self.truncation)
        table = rearrange(self.model.embeddings.weight, "d k -> k d")  # one row per class
        if self.classes is not None:
            table = table[list(self.classes)]
        self._class_embeddings = table.contiguous()

    @cached_property
    def checksum(self) -> str:
        """SHA-256 of the weights file, streamed once on first use."""
        return sha256_file(self._weights_file)

    def sample_latents(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` latents from BigGAN's prior: a normal truncated to [-2, 2], times truncation.

        Inverse-CDF sampling (one uniform per value), so the result is a fixed function of the
        generator's state. Values are drawn on the generator's device (the model's device when
        none is given) and returned on the model's device.
        """
        n = check_int(n, "n", 0)
        device = generator.device if generator is not None else self.device
        low = _normal_cdf(-_TRUNC_BOUND)
        u = torch.rand(n, self.latent_dim, generator=generator, device=device)
        u = low + (1 - 2 * low) * u
        z = math.sqrt(2) * torch.erfinv(2 * u - 1)
        z = z.clamp_(-_TRUNC_BOUND, _TRUNC_BOUND) * self.truncation
        return z.to(self.device)

    def sample_classes(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Draw ``n`` class ids uniformly from ``0..num_classes-1`` (int64, on the model's
        device)."""
        n = check_int(n, "n", 0)
        device = generator.device if generator is not None else self.device
        y = torch.randint(self.num_classes, (n,), generator=generator, device=device)
        return y.to(self.device)

    def synthesize(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Images ``[n, 3, R, R]`` float32 in [0, 1] for latents ``z`` and class ids ``y``."""
        check_latents(z, "z", self.latent_dim, tensor=True, allow_empty=True)
        check_classes(y, z.shape[0], self.num_classes)
        z = z.to(self.device, torch.float32)
        with torch.set_grad_enabled(
            torch.is_grad_enabled() and z.requires_grad
        ):  # differentiable in z on request
            # Row lookup equals the package's one-hot @ embedding matrix, without the matmul.
            embedding = self._class_embeddings[y.to(self.device)]
            condition = torch.cat([z, embedding], dim=1)
            images = self.model.generator(condition, self.truncation)
        return images.float().add(1).mul_(0.5)

    def __repr__(self) -> str:
        return (
            f"BigGANGenerator(name={self.name!r}, resolution={self.resolution}, "
            f"truncation={self.truncation}, num_classes={self.num_classes}, device={self.device})"
        )


# ---------------------------------------------------------------- loading


def load_biggan(
    name: str = "biggan-deep-256",
    *,
    device: str | torch.device = "cpu",
    weights_dir: str | os.PathLike | None = None,
    truncation: float = 0.5,
    classes: int | Sequence[int] | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> BigGANGenerator:
    """Load a pretrained BigGAN-deep from local files, never downloading.

    Looks in ``weights_dir`` if given (and only there), else ``$FAIRGEN_BIGGAN_DIR/<name>/``,
    then the package's download cache (``cache_dir``, ``$PYTORCH_PRETRAINED_BIGGAN_CACHE``,
    ``~/.pytorch_pretrained_biggan``).
    """
    if name not in NAMES:
        raise ValueError(f"name must be one of {', '.join(NAMES)}, got {name!r}")
    _package()  # a missing extra is named before any weights are looked for
    _check_truncation(truncation)
    config_file, weights_file = find_weights(name, weights_dir=weights_dir, cache_dir=cache_dir)
    return _load_files(name, config_file, weights_file, device, truncation, classes)


def load_biggan_dir(
    path: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    truncation: float = 0.5,
    classes: int | Sequence[int] | None = None,
) -> BigGANGenerator:
    """Load a BigGAN from a local folder holding ``config.json`` and ``pytorch_model.bin``."""
    path = Path(path).expanduser()
    _check_truncation(truncation)
    missing = [f for f in (CONFIG_NAME, WEIGHTS_NAME) if not (path / f).is_file()]
    if missing:
        raise FileNotFoundError(
            f"path {str(path)!r} must be a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}; "
            f"missing: {', '.join(missing)}"
        )
    return _load_files(
        str(path.resolve()), path / CONFIG_NAME, path / WEIGHTS_NAME, device, truncation, classes
    )


def find_weights(
    name: str,
    *,
    weights_dir: str | os.PathLike | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> tuple[Path, Path]:
    """Return ``(config.json, pytorch_model.bin)`` for ``name``, or raise FileNotFoundError."""
    looked: list[str] = []
    if weights_dir is not None:
        folder = Path(weights_dir).expanduser()
        looked.append(f"{folder} (weights_dir)")
        found = _in_folder(folder)
        if found:
            return found
        raise _missing_weights(name, looked)

    env_dir = os.environ.get("FAIRGEN_BIGGAN_DIR")
    if env_dir:
        folder = Path(env_dir).expanduser() / name
        looked.append(f"{folder} ($FAIRGEN_BIGGAN_DIR/{name})")
        found = _in_folder(folder)
        if found:
            return found
    else:
        looked.append(f"$FAIRGEN_BIGGAN_DIR/{name} ($FAIRGEN_BIGGAN_DIR is not set)")

    for folder, why in _package_caches(cache_dir):
        looked.append(f"{folder} ({why}; files named by the SHA-256 of their download URL)")
        found = _in_package_cache(folder, name)
        if found:
            return found
    raise _missing_weights(name, looked)


def _in_folder(folder: Path) -> tuple[Path, Path] | None:
    config_file, weights_file = folder / CONFIG_NAME, folder / WEIGHTS_NAME
    return (config_file, weights_file) if config_file.is_file() and weights_file.is_file() else None


def _package_caches(cache_dir) -> list[tuple[Path, str]]:
    """The package's download caches, in the order the package itself would use them."""
    candidates = []
    if cache_dir is not None:
        candidates.append((Path(cache_dir).expanduser(), "cache_dir"))
    env_cache = os.environ.get("PYTORCH_PRETRAINED_BIGGAN_CACHE")
    if env_cache:
        candidates.append((Path(env_cache).expanduser(), "$PYTORCH_PRETRAINED_BIGGAN_CACHE"))
    candidates.append((Path.home() / ".pytorch_pretrained_biggan", "package default cache"))
    unique, seen = [], set()
    for folder, why in candidates:
        if folder not in seen:
            seen.add(folder)
            unique.append((folder, why))
    return unique


def _in_package_cache(folder: Path, name: str) -> tuple[Path, Path] | None:
    """Find cached files offline: the package names them ``sha256(url)[.sha256(etag)]``."""
    model = _package().model
    config_file = _cached_file(folder, model.PRETRAINED_CONFIG_ARCHIVE_MAP[name])
    weights_file = _cached_file(folder, model.PRETRAINED_MODEL_ARCHIVE_MAP[name])
    return (config_file, weights_file) if config_file and weights_file else None


def _cached_file(folder: Path, url: str) -> Path | None:
    """The newest cached copy of ``url`` in ``folder`` (the etag suffix is unknown offline)."""
    if not folder.is_dir():
        return None
    stem = _package().file_utils.url_to_filename(url)
    copies = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.name.split(".")[0] == stem and not p.name.endswith(".json")
    ]
    return max(copies, key=lambda p: p.stat().st_mtime) if copies else None


def _missing_weights(name: str, looked: list[str]) -> FileNotFoundError:
    places = "\n".join(f"  - {place}" for place in looked)
    return FileNotFoundError(
        f"BigGAN weights for {name!r} not found: need {CONFIG_NAME} and {WEIGHTS_NAME}.\n"
        f"Looked in:\n{places}\n"
        "fairgen never downloads. On a machine with internet access run\n"
        f'  python -c "from pytorch_pretrained_biggan import BigGAN; '
        f"BigGAN.from_pretrained('{name}')\"\n"
        "which fills the package cache (~/.pytorch_pretrained_biggan, or "
        "$PYTORCH_PRETRAINED_BIGGAN_CACHE); copy that folder here, or put the two files in a "
        "folder and pass weights_dir=..."
    )


def _load_files(name, config_file, weights_file, device, truncation, classes) -> BigGANGenerator:
    """Build the model from its config, load the state dict strictly, wrap it."""
    device = torch.device(device)
    package = _package()
    try:
        config = package.BigGANConfig.from_json_file(str(config_file))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"BigGAN config {config_file} is not valid JSON: {error}") from error
    model = package.BigGAN(config)
    try:
        state = torch.load(weights_file, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors come in several types
        raise ValueError(
            f"BigGAN weights {weights_file} are not a state dict loadable with "
            f"weights_only=True: {error}"
        ) from error
    if not isinstance(state, dict):
        raise ValueError(
            f"BigGAN weights {weights_file} must hold a state dict, got {type(state).__name__}"
        )
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as error:  # shape mismatches
        raise ValueError(
            f"BigGAN weights {weights_file} do not match the model in {config_file}: {error}"
        ) from error
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"BigGAN weights {weights_file} do not match the model in {config_file}: "
            f"missing keys {_short(result.missing_keys)}, "
            f"unexpected keys {_short(result.unexpected_keys)}"
        )
    return BigGANGenerator(
        model,
        name=name,
        truncation=truncation,
        classes=classes,
        device=device,
        weights_file=weights_file,
    )


# ---------------------------------------------------------------- small helpers


def _check_truncation(truncation) -> float:
    if not is_number(truncation):
        raise ValueError(f"truncation must be a number in (0, 1], got {truncation!r}")
    if not (0 < truncation <= 1):
        raise ValueError(f"truncation must be in (0, 1], got {truncation}")
    return float(truncation)


def _check_class_map(classes, model_classes: int) -> tuple[int, ...] | None:
    """Normalise ``classes`` (an index or a list of distinct indices) or raise ValueError."""
    if classes is None:
        return None
    try:
        items = torch.as_tensor(classes)
    except (TypeError, ValueError, RuntimeError):
        items = None
    if items is not None and items.numel() == 0:
        raise ValueError("classes must name at least one class index, got an empty list")
    if items is None or items.ndim > 1 or items.dtype not in _INDEX_DTYPES:
        raise ValueError(f"classes must be an int or a flat list of ints, got {classes!r}")
    items = items.reshape(-1).tolist()
    bad = [c for c in items if not 0 <= c < model_classes]
    if bad:
        raise ValueError(f"classes must be indices in [0, {model_classes}), got {bad}")
    if len(set(items)) != len(items):
        raise ValueError(f"classes must not repeat an index, got {items}")
    return tuple(items)


def _normal_cdf(x: float) -> float:
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def _state_dict_sha256(model: nn.Module) -> str:
    """Checksum of an in-memory model: its tensor names, shapes, dtypes and bytes, in order."""
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _short(keys: list[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit]) or "none"
    return shown + (f" (+{len(keys) - limit} more)" if len(keys) > limit else "")


# ---------------------------------------------------------------- registry entries


def _factory(name: str):
    def build(device="cpu", weights_dir=None, truncation=0.5, classes=None, cache_dir=None):
        return load_biggan(
            name,
            device=device,
            weights_dir=weights_dir,
            truncation=truncation,
            classes=classes,
            cache_dir=cache_dir,
        )

    build.__doc__ = f"Load {name} from local files (see ``load_biggan``)."
    return build


for _name in NAMES:
    register_generator(_name)(_factory(_name))


@register_path_loader(
    lambda path: path.is_dir() and (path / WEIGHTS_NAME).is_file(),
    checksum=lambda path: sha256_file(path / WEIGHTS_NAME),
)
def _load_path(path: Path, device="cpu", truncation=0.5, classes=None) -> BigGANGenerator:
    return load_biggan_dir(path, device=device, truncation=truncation, classes=classes)

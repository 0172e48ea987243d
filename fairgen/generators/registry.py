"""A timm-style registry: ``load_generator(name)`` and ``list_generators()`` are the whole story."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ..entry_points import import_object, is_entry_point
from .base import Generator, check_generator

_FACTORIES: dict[str, Callable[..., Generator]] = {}
_PATH_LOADERS: list[tuple[Callable[[Path], bool], Callable[..., Generator]]] = []
_CHECKSUMS: dict[Callable[..., Generator], Callable[[Path], str]] = {}


def register_generator(name: str):
    """Decorator: register ``factory(device=..., **options) -> Generator`` under ``name``."""

    def wrap(factory):
        if name in _FACTORIES:
            raise ValueError(f"generator {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return wrap


def register_path_loader(
    accepts: Callable[[Path], bool], checksum: Callable[[Path], str] | None = None
):
    """Decorator: ``loader(path, device=..., **options)`` handles local paths ``accepts`` likes.

    ``checksum(path)`` is the SHA-256 the loaded generator will report, computed without loading it
    (default: the file's own SHA-256), so a pinned path is checked before anything is read into
    torch."""

    def wrap(loader):
        _PATH_LOADERS.append((accepts, loader))
        if checksum is not None:
            _CHECKSUMS[loader] = checksum
        return loader

    return wrap


def list_generators() -> list[str]:
    """Names ``load_generator`` understands (local paths are accepted too)."""
    _import_builtin()
    return sorted(_FACTORIES)


def load_generator(
    name_or_path: str | os.PathLike, device: str | torch.device = "cpu", **options
) -> Generator:
    """Load a registered generator by name, a local directory/file a path loader accepts, or a
    Python entry point ``package.module:factory`` (called as ``factory(device=..., **options)``)."""
    _import_builtin()
    key = str(name_or_path)
    if key in _FACTORIES:
        return _FACTORIES[key](device=torch.device(device), **options)
    if is_entry_point(key) and not Path(key).exists():
        return load_entry_point(key, device, **options)
    path = Path(key).expanduser()
    if path.exists():
        for accepts, loader in _PATH_LOADERS:
            if accepts(path):
                return loader(path, device=torch.device(device), **options)
        raise ValueError(f"name_or_path {key!r} exists but no generator loader understands it")
    raise ValueError(
        f"unknown generator {key!r}; known names: {', '.join(sorted(_FACTORIES))} "
        "(or pass a local path, or an entry point package.module:factory)"
    )


def local_checksum(path: Path) -> str | None:
    """The SHA-256 a local generator file or folder will report, without loading it (None: no
    loader says)."""
    from plumbing.files import sha256_file

    _import_builtin()
    for accepts, loader in _PATH_LOADERS:
        if accepts(path):
            if loader in _CHECKSUMS:
                return _CHECKSUMS[loader](path)
            return sha256_file(path) if path.is_file() else None
    return None


def load_entry_point(spec: str, device: str | torch.device = "cpu", **options) -> Generator:
    """Call the factory ``package.module:factory`` names and check that it returns a Generator."""
    factory = import_object(spec, "generator")
    if not callable(factory):
        raise ValueError(
            f"generator: {spec!r} names a {type(factory).__name__}, not a factory to call"
        )
    try:
        generator = factory(device=torch.device(device), **options)
    except TypeError as error:
        raise ValueError(
            f"generator: {spec!r} could not be called with device and options {sorted(options)}: "
            f"{error}"
        ) from None
    return check_generator(generator, f"generator factory {spec!r}")


_PLUGINS_LOADED = False


def _import_builtin() -> None:
    """Import the modules that register generators: BigGAN and the face GAN (their packages are
    imported only when
    one is loaded), fairgen's built-in plug-ins and the ``fairgen.plugins`` entry points."""
    global _PLUGINS_LOADED
    if _PLUGINS_LOADED:
        return
    _PLUGINS_LOADED = True
    from importlib import import_module
    from importlib.metadata import entry_points

    import fairgen

    from . import biggan, diffusion, face_gan  # noqa: F401

    for module in fairgen.PLUGINS:
        import_module(module)
    for entry in entry_points(group="fairgen.plugins"):
        entry.load()

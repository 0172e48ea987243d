"""Generators: one protocol, a registry, the BigGAN adapter and the embedded default."""

from .base import Generator
from .registry import list_generators, load_generator, register_generator, register_path_loader

__all__ = [
    "Generator",
    "list_generators",
    "load_generator",
    "register_generator",
    "register_path_loader",
]

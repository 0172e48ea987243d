"""Generators: one protocol, a registry, the BigGAN adapter and the embedded default."""

from .base import Generator, check_classes, check_latents
from .registry import list_generators, load_generator, register_generator, register_path_loader

__all__ = [
    "Generator",
    "check_classes",
    "check_latents",
    "list_generators",
    "load_generator",
    "register_generator",
    "register_path_loader",
]

"""TrainConfig: everything that defines a training run, as plain data.

Importing this module does not import torch (the command line reads the fields and defaults to
build ``fairgen train --help``); validating a config does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from plumbing.validation import is_int, is_number

from ..records import from_plain_dict

__all__ = ["TrainConfig"]


@dataclass
class TrainConfig:
    """Everything that defines a training run; plain data (``to_dict`` / ``from_dict``)."""

    encoder: str = "small_cnn"
    small_images: bool = True
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    supervised: bool = False
    temperature: float = 0.1
    optimizer: str = "adamw"
    lr: float = 2e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    total_steps: int = 1000
    warmup_steps: int = 10
    augment: str | dict | None = "light"
    crop_size: int | None = None
    seed: int = 0
    bf16: bool = True
    channels_last: bool = True
    compile: bool = False
    sync_bn: bool = True
    checkpoint_dir: str | None = None
    checkpoint_every: int = 0
    log_every: int = 10
    progress: bool = True

    def __post_init__(self):
        from ..augment import get_recipe  # torch: imported when a config is made, not when read
        from .encoders import check_encoder_name
        from .optim import OPTIMIZERS

        _check_types(self)
        check_encoder_name(self.encoder)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.augment is not None:
            get_recipe(self.augment)  # raises on unknown presets or keys
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {self.total_steps}, {self.warmup_steps}"
            )
        for name in ("lr", "temperature", "projection_hidden_dim", "projection_dim"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name in ("weight_decay", "momentum"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("checkpoint_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.crop_size is not None and self.crop_size < 1:
            raise ValueError(f"crop_size must be None or a positive int, got {self.crop_size}")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        """Inverse of ``to_dict``; unknown keys are an error."""
        return from_plain_dict(cls, data, "TrainConfig")


_KINDS = {bool: "true or false", int: "an integer", float: "a finite number", str: "a string"}


def _check_types(config: TrainConfig) -> None:
    """Each field holds the kind its default has (ints for counts, finite numbers for rates...)."""
    for f in fields(config):
        value, default = getattr(config, f.name), f.default
        if value is None or default is None or f.name == "augment":
            continue
        kind = type(default)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = is_int(value)
        elif kind is float:
            ok = is_number(value)
            if ok:
                object.__setattr__(config, f.name, float(value))
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise ValueError(f"TrainConfig {f.name} must be {_KINDS[kind]}, got {value!r}")

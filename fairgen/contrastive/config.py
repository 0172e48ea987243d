"""TrainConfig: everything that defines a training run, as plain data.

Importing this module does not import torch (the command line reads the fields and defaults to
build ``fairgen train --help``); validating a config does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from plumbing.validation import is_int, is_number

from ..records import from_plain_dict

__all__ = ["TrainConfig"]


def _field(default, help_text: str):
    """A dataclass field whose help text (``metadata["help"]``) the command line shows."""
    return field(default=default, metadata={"help": help_text})


@dataclass
class TrainConfig:
    """Everything that defines a training run; plain data (``to_dict`` / ``from_dict``)."""

    encoder: str = _field(
        "small_cnn",
        "backbone: small_cnn, resnet18, resnet50, any torchvision classification model "
        "(torchvision:NAME or NAME) or timm:NAME, trained from scratch",
    )
    small_images: bool = _field(
        True, "ResNet stem for 32-64 px images (3x3 stride-1 conv, no max-pool)"
    )
    projection_hidden_dim: int = _field(512, "width of the projection head's hidden layer (units)")
    projection_dim: int = _field(128, "width of the contrastive space (units)")
    supervised: bool = _field(
        False,
        "SupCon with the stream's class labels; --no-supervised is SimCLR "
        "(every sample its own class)",
    )
    temperature: float = _field(0.1, "softmax temperature of the contrastive loss (> 0)")
    optimizer: str = _field("adamw", "sgd, lars or adamw")
    lr: float = _field(2e-3, "peak learning rate (per step, after warm-up)")
    weight_decay: float = _field(
        1e-4, "decoupled/L2 weight decay of weights with >= 2 dims (biases and norms get none)"
    )
    momentum: float = _field(0.9, "SGD/LARS momentum (ignored by adamw)")
    total_steps: int = _field(
        1000, "optimiser steps of the whole run (with --resume: continue up to this many)"
    )
    warmup_steps: int = _field(
        10, "linear warm-up steps before the cosine decay (fewer than the run's steps)"
    )
    augment: str | dict | None = _field(
        "light",
        "augmentation the trainer adds on top of the stream card's: a preset "
        "(simclr, light, none) or a JSON recipe (a file or inline)",
    )
    crop_size: int | None = _field(
        None, "side of the trainer's random crops in pixels (default: the stream's resolution)"
    )
    seed: int = _field(0, "seed of the model initialisation and the trainer's augmentation")
    bf16: bool = _field(True, "bf16 autocast on CUDA")
    channels_last: bool = _field(True, "channels-last memory format on CUDA")
    compile: bool = _field(False, "torch.compile the model")
    sync_bn: bool = _field(
        True, "under torchrun, BatchNorm statistics over the global batch (every backend)"
    )
    checkpoint_dir: str | None = _field(
        None, "folder of checkpoint.pt (the command line: always --out)"
    )
    checkpoint_every: int = _field(0, "steps between checkpoints (0: only at the end)")
    log_every: int = _field(10, "steps between lines of metrics.jsonl (0: none)")
    progress: bool = _field(True, "a progress bar (the command line: off with --quiet)")

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
                "need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got "
                f"{self.total_steps}, {self.warmup_steps}"
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

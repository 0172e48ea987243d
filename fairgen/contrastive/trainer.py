"""Contrastive training loop: SimCLR or SupCon on a stream of multiview batches.

A batch is ``{"views": float [B, V, 3, H, W] in [0, 1], "labels": int64 [B], ...}`` with V >= 2
views of each sample. Each step augments all B * V views at once (optional, recipe in the
config), encodes them in one forward pass, projects, and takes ``supcon_loss`` (SupCon with the
labels when ``config.supervised``, else SimCLR). On CUDA it can use bf16 autocast,
channels_last and ``torch.compile``; under torch.distributed it wraps the model in DDP and
contrasts against every rank's views.

Checkpoints are one ``torch.save`` file of plain tensors and numbers (loaded with
``weights_only=True``), written to a temporary file and moved into place with ``os.replace``, so
a crash never leaves a half-written checkpoint. They hold the model, optimiser, scheduler and
step; augmentation is seeded from (config.seed, rank, step), so resuming and feeding the same
remaining batches reproduces an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from einops import rearrange
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm.auto import tqdm

from ..augment import augment, get_recipe
from ..records import from_plain_dict
from .distributed import rank_and_world_size
from .encoders import ENCODERS, ProjectionHead, build_encoder
from .evaluate import extract_features, knn_accuracy
from .loss import supcon_loss
from .optim import OPTIMIZERS, build_optimizer, warmup_cosine

__all__ = ["ContrastiveModel", "KnnMonitor", "TrainConfig", "Trainer", "load_encoder"]

CHECKPOINT_FORMAT = 1


@dataclass
class TrainConfig:
    """Everything that defines a training run; plain data (``to_dict`` / ``from_dict``)."""

    encoder: str = "small_cnn"
    small_images: bool = True
    projection_hidden_dim: int = 512
    projection_dim: int = 128
    supervised: bool = False
    temperature: float = 0.1
    optimizer: str = "sgd"
    lr: float = 0.05
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
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {sorted(ENCODERS)}, got {self.encoder!r}")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {list(OPTIMIZERS)}, got {self.optimizer!r}")
        if self.augment is not None:
            get_recipe(self.augment)  # raises on unknown presets or keys
        if self.total_steps < 1 or not 0 <= self.warmup_steps <= self.total_steps:
            raise ValueError(
                f"need total_steps >= 1 and 0 <= warmup_steps <= total_steps, got {self.total_steps}, {self.warmup_steps}"
            )
        for name in ("lr", "temperature"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
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


class ContrastiveModel(nn.Module):
    """Backbone (the encoder that is kept) followed by a projection head (used only in training)."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone, self.head = backbone, head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(images))


def _build_model(config: TrainConfig) -> ContrastiveModel:
    """Model initialised from ``config.seed`` without touching the global RNG."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        backbone, dim = build_encoder(config.encoder, config.small_images)
        head = ProjectionHead(dim, config.projection_hidden_dim, config.projection_dim)
    return ContrastiveModel(backbone, head)


def _check_batch(batch, supervised: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not isinstance(batch, dict) or "views" not in batch:
        raise ValueError("each batch must be a dict with 'views' [B, V, 3, H, W] and 'labels' [B]")
    views, labels = batch["views"], batch.get("labels")
    if not isinstance(views, torch.Tensor) or views.ndim != 5 or views.shape[2] != 3:
        raise ValueError(
            f"batch['views'] must have shape [B, V, 3, H, W], got {list(getattr(views, 'shape', []))}"
        )
    if views.shape[1] < 2:
        raise ValueError(f"batch['views'] needs V >= 2 views per sample, got V={views.shape[1]}")
    if supervised or labels is not None:
        if (
            not isinstance(labels, torch.Tensor)
            or labels.is_floating_point()
            or labels.shape != views.shape[:1]
        ):
            got = list(labels.shape) if isinstance(labels, torch.Tensor) else labels
            raise ValueError(
                f"batch['labels'] must be integers of shape [{views.shape[0]}] (one per sample), got {got}"
            )
    return views, labels


def _atomic_save(obj, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class Trainer:
    """Trains ``ContrastiveModel`` from ``config`` on ``device``; ``trainer.encoder`` is the result."""

    def __init__(self, config: TrainConfig, device: str | torch.device = "cpu"):
        if not isinstance(config, TrainConfig):
            raise ValueError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config, self.device = config, torch.device(device)
        self.rank, self.world_size = rank_and_world_size()
        cuda = self.device.type == "cuda"
        self.use_bf16 = config.bf16 and cuda
        self.memory_format = (
            torch.channels_last if config.channels_last and cuda else torch.contiguous_format
        )

        self.model = _build_model(config).to(self.device, memory_format=self.memory_format)
        if self.world_size > 1 and config.sync_bn and cuda:  # global batch statistics (SimCLR)
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.recipe = get_recipe(config.augment) if config.augment is not None else None
        self.augment_generator = torch.Generator(device=self.device)
        self.optimizer = build_optimizer(
            self.model, config.optimizer, config.lr, config.weight_decay, config.momentum
        )
        self.scheduler = warmup_cosine(self.optimizer, config.warmup_steps, config.total_steps)
        self.step = 0
        self.history: list[dict] = []

        train_model: nn.Module = self.model
        if self.world_size > 1:
            device_ids = None
            if cuda:
                device_ids = [
                    self.device.index
                    if self.device.index is not None
                    else torch.cuda.current_device()
                ]
            train_model = nn.parallel.DistributedDataParallel(train_model, device_ids=device_ids)
        self._train_model = torch.compile(train_model) if config.compile else train_model

    def _augment_seed(self) -> int:
        """Augmentation at (seed, rank, step) is fixed: resuming needs no RNG state, ranks differ."""
        return ((self.config.seed * 1_000_003 + self.rank) * 1_000_003 + self.step) % 2**63

    @property
    def encoder(self) -> nn.Module:
        """The backbone: images -> features (what downstream tasks keep)."""
        return self.model.backbone

    def train_step(self, batch: dict) -> torch.Tensor:
        """One optimisation step on one batch; returns the detached loss (no host sync)."""
        views, labels = _check_batch(batch, self.config.supervised)
        b, v = views.shape[:2]
        x = rearrange(views.to(self.device, non_blocking=True), "b v c h w -> (b v) c h w")
        if self.recipe is not None:
            self.augment_generator.manual_seed(self._augment_seed())
            x = augment(x, self.recipe, self.augment_generator, self.config.crop_size)
        x = x.contiguous(memory_format=self.memory_format)
        self.model.train()
        with torch.autocast(
            device_type=self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16
        ):
            z = self._train_model(x)
        z = rearrange(z, "(b v) d -> b v d", b=b, v=v)
        labels = labels.to(self.device, non_blocking=True) if self.config.supervised else None
        loss = supcon_loss(z, labels, self.config.temperature, gather=self.world_size > 1)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.scheduler.step()
        self.step += 1
        return loss.detach()

    def fit(
        self,
        batches: Iterable[dict],
        steps: int | None = None,
        monitor: Callable[[Trainer], dict] | None = None,
        monitor_every: int = 0,
    ) -> Trainer:
        """Train ``steps`` more steps (default: up to ``config.total_steps``), one batch per step.

        Stops early if ``batches`` runs out. ``monitor(trainer)`` (a ``KnnMonitor``, say) runs
        every ``monitor_every`` steps; its results land in ``self.history``.
        """
        steps = self.config.total_steps - self.step if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        config = self.config
        progress = tqdm(total=steps, disable=not config.progress or self.rank != 0, desc="train")
        iterator = iter(batches)
        for _ in range(steps):
            try:
                batch = next(iterator)
            except StopIteration:
                break
            lr = self.scheduler.get_last_lr()[0]
            loss = self.train_step(batch)
            progress.update(1)
            if config.log_every and self.step % config.log_every == 0:
                record = {"step": self.step, "loss": float(loss), "lr": lr}
                self.history.append(record)
                progress.set_postfix(loss=f"{record['loss']:.4f}")
            if monitor is not None and monitor_every and self.step % monitor_every == 0:
                self.history.append({"step": self.step, **monitor(self)})
            if (
                config.checkpoint_dir
                and config.checkpoint_every
                and self.step % config.checkpoint_every == 0
            ):
                self.save(Path(config.checkpoint_dir) / "checkpoint.pt")
        progress.close()
        if config.checkpoint_dir:
            self.save(Path(config.checkpoint_dir) / "checkpoint.pt")
        return self

    def state_dict(self) -> dict:
        """Plain tensors and numbers: everything needed to resume exactly."""
        return {
            "format": CHECKPOINT_FORMAT,
            "config": json.dumps(self.config.to_dict()),
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "history": json.dumps(self.history),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (rank 0 only under torch.distributed)."""
        if self.rank == 0:
            _atomic_save(self.state_dict(), Path(path))

    def load(self, path: str | os.PathLike) -> Trainer:
        """Restore a checkpoint written by ``save`` (data only: ``weights_only=True``)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint at {path}")
        state = torch.load(path, map_location=self.device, weights_only=True)
        if state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(
                f"{path} is not a fairgen trainer checkpoint (format {state.get('format')!r})"
            )
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.history = json.loads(state["history"])
        return self

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, device: str | torch.device = "cpu"
    ) -> Trainer:
        """A trainer rebuilt from the config stored in the checkpoint, then restored."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        return cls(TrainConfig.from_dict(json.loads(state["config"])), device).load(path)

    def save_encoder(self, path: str | os.PathLike) -> None:
        """The backbone alone as safetensors, with the config in the file's metadata."""
        tensors = {k: v.detach().contiguous().cpu() for k, v in self.encoder.state_dict().items()}
        save_file(tensors, str(path), metadata={"config": json.dumps(self.config.to_dict())})


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a backbone saved by ``Trainer.save_encoder``."""
    with safe_open(str(path), framework="pt") as f:
        config = TrainConfig.from_dict(json.loads(f.metadata()["config"]))
    backbone, _ = build_encoder(config.encoder, config.small_images)
    backbone.load_state_dict(load_file(str(path)))
    return backbone.to(device).eval()


class KnnMonitor:
    """Callback for ``Trainer.fit``: cosine kNN accuracy of the current encoder on held-out images."""

    def __init__(
        self,
        train_images,
        train_labels,
        test_images,
        test_labels,
        k: int = 20,
        batch_size: int = 256,
    ):
        self.train_images, self.train_labels = train_images, train_labels
        self.test_images, self.test_labels = test_images, test_labels
        self.k, self.batch_size = k, batch_size

    def __call__(self, trainer: Trainer) -> dict:
        train_x = extract_features(trainer.encoder, self.train_images, self.batch_size)
        test_x = extract_features(trainer.encoder, self.test_images, self.batch_size)
        return {
            "knn_accuracy": knn_accuracy(
                train_x, self.train_labels, test_x, self.test_labels, k=self.k
            )
        }

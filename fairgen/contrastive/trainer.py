"""Contrastive training loop: SimCLR or SupCon on a stream of multiview batches.

A batch is ``{"views": float [B, V, 3, H, W] in [0, 1], "labels": int64 [B], ...}`` with V >= 2
views of each sample. Each step augments all B * V views at once (optional, recipe in the
config), encodes them in one forward pass, projects, and takes ``supcon_loss`` (SupCon with the
labels when ``config.supervised``, else SimCLR). On CUDA it can use bf16 autocast,
channels_last and ``torch.compile``; under torch.distributed it wraps the model in DDP and
contrasts against every rank's views.

Checkpoints are one ``torch.save`` file of plain tensors and numbers (loaded with
``weights_only=True``), written to a temporary file and moved into place with ``os.replace``, so
a crash never leaves a half-written checkpoint (leftover temporary files are removed when a run
starts). They hold the model, optimiser, scheduler and step; augmentation is seeded from
(config.seed, rank, step), so resuming and feeding the same remaining batches reproduces an
uninterrupted run.

Every ``log_every`` steps a line ``{"step", "loss", "lr", "images_per_s"}`` goes to
``metrics.jsonl`` in the checkpoint folder (and TensorBoard events to ``tensorboard/`` when the
``tensorboard`` package is installed). A non-finite loss or parameter stops training with a
``NonFiniteError`` naming the step, before any bad state is checkpointed; a loss that ten steps
after the warm-up has covered less than 2% of the way from chance, ln(2B - 1) for a global batch
of 2B views, to the least possible loss (0 for SimCLR, ln(#positives) for SupCon) raises a
``LossAtChanceWarning``.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.distributed as dist
from einops import rearrange
from torch import nn
from tqdm.auto import tqdm

from plumbing.files import (
    atomic_write_bytes,
    atomic_write_text,
    load_safetensors,
    parse_json,
    read_safetensors_metadata,
    save_safetensors,
)

from ..augment import augment, get_recipe
from .config import TrainConfig
from .distributed import rank_and_world_size, sync_batchnorm
from .encoders import ProjectionHead, build_encoder
from .evaluate import extract_features, knn_accuracy
from .loss import supcon_loss
from .optim import build_optimizer, warmup_cosine

__all__ = [
    "ScheduleChangedWarning",
    "ContrastiveModel",
    "KnnMonitor",
    "LossAtChanceWarning",
    "NonFiniteError",
    "TrainConfig",
    "Trainer",
    "clean_leftovers",
    "load_encoder",
    "read_checkpoint",
]

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


class NonFiniteError(ValueError):
    """The loss or a parameter became NaN or infinite; the message names the step."""


class ScheduleChangedWarning(UserWarning):
    """A run resumed with another length: its learning-rate schedule is not the one it began."""


def _warn_if_schedule_changed(stored: dict, config: TrainConfig, step: int) -> None:
    """Say what a resume with other total/warm-up steps does to the learning rate, in numbers."""
    before = (stored.get("warmup_steps"), stored.get("total_steps"))
    after = (config.warmup_steps, config.total_steps)
    if before == after or not all(isinstance(v, int) for v in before):
        return

    def lr_at(warmup: int, total: int) -> float:
        probe = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=config.lr)
        return config.lr * warmup_cosine(probe, warmup, max(total, warmup, 1)).lr_lambdas[0](step)

    warnings.warn(
        f"resuming at step {step} with {after[1]} total steps (warm-up {after[0]}); the run began "
        f"with {before[1]} (warm-up {before[0]}). The cosine schedule now spans {after[1]} steps, "
        f"so the learning rate at step {step} is {lr_at(*after):.3g} instead of the original "
        f"schedule's {lr_at(*before):.3g}; resume with the original steps to keep its schedule",
        ScheduleChangedWarning,
        stacklevel=3,
    )


class LossAtChanceWarning(UserWarning):
    """The loss has not moved from its chance value ln(2B - 1) ten steps after the warm-up."""


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
            "batch['views'] must have shape [B, V, 3, H, W], got "
            f"{list(getattr(views, 'shape', []))}"
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
                f"batch['labels'] must be integers of shape [{views.shape[0]}] (one per sample), "
                f"got {got}"
            )
    return views, labels


def _atomic_save(obj, path: Path) -> None:
    """``torch.save`` into memory, then a new file renamed over ``path`` (a full disk: one clear
    error)."""
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def clean_leftovers(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files interrupted atomic writes left in a run folder; returns them."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    leftovers = [
        p
        for p in folder.iterdir()
        if p.is_file()
        and p.name.endswith(".tmp")
        and (p.name.startswith(".") or p.name.startswith(CHECKPOINT_NAME))
    ]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A trainer checkpoint's contents (plain data), with a clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zips, foreign pickles, garbage: several error types
        raise ValueError(
            f"checkpoint {path} is not a readable fairgen checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''})"
        ) from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        got = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"checkpoint {path} is not a fairgen trainer checkpoint (format {got!r})")
    missing = sorted({"config", "step", "model", "optimizer", "scheduler"} - set(state))
    if missing:
        raise ValueError(f"checkpoint {path} lacks {missing}")
    try:
        state["config_dict"] = parse_json(state["config"], f"checkpoint {path}: config")
        state["run_dict"] = parse_json(state.get("run", "{}"), f"checkpoint {path}: run")
    except TypeError as error:
        raise ValueError(f"checkpoint {path} has a corrupt config: {error}") from None
    for key in ("config_dict", "run_dict"):
        if not isinstance(state[key], dict):
            raise ValueError(f"checkpoint {path}: its {key.split('_')[0]} is not a JSON object")
    return state


class Trainer:
    """Trains ``ContrastiveModel`` from ``config`` on ``device``; ``trainer.encoder`` is the
    result."""

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
        if self.world_size > 1 and config.sync_bn:  # global batch statistics, on every backend
            self.model = sync_batchnorm(self.model, cuda)
        self.recipe = get_recipe(config.augment) if config.augment is not None else None
        self.augment_generator = torch.Generator(device=self.device)
        self.optimizer = build_optimizer(
            self.model, config.optimizer, config.lr, config.weight_decay, config.momentum
        )
        self.scheduler = warmup_cosine(self.optimizer, config.warmup_steps, config.total_steps)
        self.step = 0
        self.history: list[dict] = []
        # what the caller wants stored with checkpoints (stream, batch size...)
        self.run_info: dict = {}
        self._first_bad = torch.full((), -1, dtype=torch.long, device=self.device)
        self._warned_chance = False
        self._views_per_step, self._views, self._labels = 0, 2, None

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
        """Augmentation at (seed, rank, step) is fixed: resuming needs no RNG state, ranks
        differ."""
        return ((self.config.seed * 1_000_003 + self.rank) * 1_000_003 + self.step) % 2**63

    @property
    def encoder(self) -> nn.Module:
        """The backbone: images -> features (what downstream tasks keep)."""
        return self.model.backbone

    def train_step(self, batch: dict) -> torch.Tensor:
        """One optimisation step on one batch; returns the detached loss (no host sync)."""
        views, labels = _check_batch(batch, self.config.supervised)
        b, v = views.shape[:2]
        if b * self.world_size < 2:
            raise ValueError(
                "a batch needs at least 2 samples (1 gives the contrastive loss no negatives), "
                f"got {b}"
            )
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
        bad = ~torch.isfinite(loss.detach()) & (self._first_bad < 0)  # no host sync; checked in fit
        self._first_bad = torch.where(
            bad, torch.full_like(self._first_bad, self.step), self._first_bad
        )
        self._views_per_step, self._views, self._labels = b * v * self.world_size, v, labels
        return loss.detach()

    def chance_loss(self, views_per_step: int) -> float:
        """The loss of an encoder that tells nothing apart: ln(N - 1) for N views in the global
        batch."""
        return math.log(views_per_step - 1)

    def floor_loss(self) -> float:
        """The least loss of the last batch: ln(V - 1) for SimCLR, the mean ln(#positives) for
        SupCon."""
        if self._labels is None:
            return math.log(self._views - 1) if self._views > 1 else 0.0
        _, inverse, counts = torch.unique(self._labels, return_inverse=True, return_counts=True)
        positives = (
            counts[inverse].double() * self._views * self.world_size - 1
        )  # this rank's mix, all ranks
        return float(torch.log(positives.clamp(min=1)).mean())

    def check_finite(self, parameters: bool = False) -> None:
        """Raise ``NonFiniteError`` if a loss so far (or, with ``parameters``, a weight) is
        NaN/inf."""
        first_bad = self._first_bad.clone()
        if parameters:
            finite = torch.stack([torch.isfinite(p).all() for p in self.model.parameters()]).all()
            first_bad = torch.where(
                ~finite & (first_bad < 0), torch.full_like(first_bad, self.step), first_bad
            )
        if self.world_size > 1:  # every rank stops together
            dist.all_reduce(first_bad, op=dist.ReduceOp.MAX)
        step = int(first_bad)
        if step >= 0:
            where = Path(self.config.checkpoint_dir or ".") / CHECKPOINT_NAME
            kept = (
                f"; the last good checkpoint {where} is kept"
                if self.config.checkpoint_dir and where.exists()
                else ""
            )
            raise NonFiniteError(
                f"training diverged: the loss or the parameters became NaN/inf at step {step} "
                f"(lr {self.config.lr:g}, optimizer {self.config.optimizer}){kept}; lower the "
                "learning rate"
            )

    def fit(
        self,
        batches: Iterable[dict],
        steps: int | None = None,
        monitor: Callable[[Trainer], dict] | None = None,
        monitor_every: int = 0,
    ) -> Trainer:
        """Train ``steps`` more steps (default: up to ``config.total_steps``), one batch per step.

        Stops early if ``batches`` runs out. ``monitor(trainer)`` (a ``KnnMonitor``, say) runs
        every ``monitor_every`` steps; its results land in ``self.history`` (and the metrics file).
        """
        steps = self.config.total_steps - self.step if steps is None else steps
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        config = self.config
        folder = Path(config.checkpoint_dir) if config.checkpoint_dir else None
        logger = (
            _MetricsLogger(folder, self.step) if folder is not None and self.rank == 0 else None
        )
        progress = tqdm(
            total=steps, disable=not config.progress or self.rank != 0 or _tqdm_off(), desc="train"
        )
        iterator = iter(batches)
        tic, since = time.perf_counter(), self.step
        try:
            for _ in range(steps):
                try:
                    batch = next(iterator)
                except StopIteration:
                    break
                lr = self.scheduler.get_last_lr()[0]
                loss = self.train_step(batch)
                progress.update(1)
                if config.log_every and self.step % config.log_every == 0:
                    self.check_finite()
                    now = time.perf_counter()
                    record = {
                        "step": self.step,
                        "loss": float(loss),
                        "lr": lr,
                        "images_per_s": self._views_per_step
                        * (self.step - since)
                        / max(now - tic, 1e-9),
                    }
                    tic, since = now, self.step
                    self.history.append(record)
                    self._warn_if_at_chance(record["loss"])
                    if logger is not None:
                        logger.write(record)
                    progress.set_postfix(loss=f"{record['loss']:.4f}")
                if monitor is not None and monitor_every and self.step % monitor_every == 0:
                    record = {"step": self.step, **monitor(self)}
                    self.history.append(record)
                    if logger is not None:
                        logger.write(record)
                if (
                    folder is not None
                    and config.checkpoint_every
                    and self.step % config.checkpoint_every == 0
                ):
                    self.check_finite(parameters=True)
                    self.save(folder / CHECKPOINT_NAME)
            self.check_finite(parameters=True)
            if folder is not None:
                self.save(folder / CHECKPOINT_NAME)
        finally:
            progress.close()
            if logger is not None:
                logger.close()
        return self

    def _warn_if_at_chance(self, loss: float) -> None:
        if self._warned_chance or self.step < self.config.warmup_steps + 10:
            return
        self._warned_chance = True
        chance, floor = self.chance_loss(self._views_per_step), self.floor_loss()
        if loss >= chance - 0.02 * (
            chance - floor
        ):  # < 2% of the way from chance to the least possible loss
            warnings.warn(
                f"step {self.step}: the loss {loss:.4f} has not moved from chance, ln(2B - 1) = "
                f"{chance:.4f} for "
                f"{self._views_per_step} views per step (the least possible is {floor:.4f}), "
                f"{self.step - self.config.warmup_steps} steps after the warm-up: the encoder is "
                "not learning "
                "(try another --lr or --optimizer)",
                LossAtChanceWarning,
                stacklevel=3,
            )

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
            "run": json.dumps(self.run_info),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint atomically (rank 0 only under torch.distributed)."""
        if self.rank == 0:
            _atomic_save(self.state_dict(), Path(path))

    def load(self, path: str | os.PathLike) -> Trainer:
        """Restore a checkpoint written by ``save`` (data only: ``weights_only=True``).

        The optimiser's hyper-parameters and the schedule's length come from this trainer's
        config, so a resumed run may train to a larger ``total_steps`` (unchanged settings give
        exactly the uninterrupted run).
        """
        path = Path(path)
        state = read_checkpoint(path)
        try:
            self.model.load_state_dict(_match_prefix(state["model"], self.model.state_dict()))
        except RuntimeError as error:
            raise ValueError(
                f"checkpoint {path} holds weights of another model than encoder "
                f"{self.config.encoder!r}: {str(error).splitlines()[0]}"
            ) from None
        fresh = [
            {k: v for k, v in group.items() if k != "params"}
            for group in self.optimizer.param_groups
        ]
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as error:
            raise ValueError(
                f"checkpoint {path} holds the state of another optimiser: {error}"
            ) from None
        for group, settings in zip(self.optimizer.param_groups, fresh, strict=True):
            group.update({k: v for k, v in settings.items() if k not in ("lr", "initial_lr")})
            group["initial_lr"] = settings.get("initial_lr", settings["lr"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scheduler.base_lrs = [group["initial_lr"] for group in self.optimizer.param_groups]
        for group, base, factor in zip(
            self.optimizer.param_groups,
            self.scheduler.base_lrs,
            self.scheduler.lr_lambdas,
            strict=True,
        ):
            group["lr"] = base * factor(self.scheduler.last_epoch)
        self.scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        self.step = int(state["step"])
        _warn_if_schedule_changed(state["config_dict"], self.config, self.step)
        self.history = json.loads(state.get("history", "[]"))
        self.run_info = state["run_dict"]
        return self

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        device: str | torch.device = "cpu",
        config: TrainConfig | None = None,
    ) -> Trainer:
        """A trainer rebuilt from ``config`` (default: the one stored in the checkpoint), then
        restored."""
        if config is None:
            stored = read_checkpoint(path)["config_dict"]
            try:
                config = TrainConfig.from_dict(stored)
            except (TypeError, ValueError) as error:
                raise ValueError(f"checkpoint {path} has an invalid config: {error}") from None
        return cls(config, device).load(path)

    def save_encoder(self, path: str | os.PathLike) -> None:
        """The backbone alone as safetensors (atomic, reproducible bytes), its config in the
        metadata.

        Where and how this run was kept (its folder, progress bars) stays out of the file, so the
        same
        weights have the same SHA-256 wherever they are saved and no local path travels with
        them."""
        if self.rank == 0:
            config = {**self.config.to_dict(), "checkpoint_dir": None, "progress": True}
            save_safetensors(self.encoder.state_dict(), path, metadata={"config": config})


def load_encoder(path: str | os.PathLike, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild a backbone saved by ``Trainer.save_encoder`` (clear errors name a bad file)."""
    metadata = read_safetensors_metadata(path, "encoder")
    config = metadata.get("config")
    if isinstance(config, str):  # files written before the single-key metadata
        try:
            config = json.loads(config)
        except json.JSONDecodeError as error:
            raise ValueError(f"encoder {path} has a corrupt config: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(
            f"encoder {path} has no training config in its metadata; was it written by "
            "save_encoder?"
        )
    try:
        config = TrainConfig.from_dict(config)
    except (TypeError, ValueError) as error:
        raise ValueError(f"encoder {path} has an invalid config: {error}") from None
    backbone, _ = build_encoder(config.encoder, config.small_images)
    try:
        backbone.load_state_dict(load_safetensors(path, "encoder"))
    except RuntimeError as error:
        raise ValueError(
            f"encoder {path}: its weights do not fit encoder {config.encoder!r} named in its "
            f"config ({str(error).splitlines()[0]})"
        ) from None
    return backbone.to(device).eval()


def _match_prefix(saved: dict, current: dict) -> dict:
    """Checkpoints of DDP or non-DDP runs load into either (the model itself is never wrapped)."""
    return (
        saved
        if saved.keys() == current.keys()
        else {k.removeprefix("module."): v for k, v in saved.items()}
    )


def _tqdm_off() -> bool:
    return os.environ.get("TQDM_DISABLE", "").strip().lower() not in ("", "0", "false", "no", "off")


class _MetricsLogger:
    """Appends metric records to ``metrics.jsonl`` (lines past ``start_step`` from a killed run are
    dropped first) and to TensorBoard when it is installed."""

    def __init__(self, folder: Path, start_step: int):
        folder.mkdir(parents=True, exist_ok=True)
        clean_leftovers(folder)
        self.path = folder / METRICS_NAME
        if self.path.exists():
            kept = [
                line for line in self.path.read_text().splitlines() if _step_of(line) <= start_step
            ]
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.handle = open(self.path, "a")
        self.tensorboard = None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional: pip install 'fairgen[tensorboard]'
            return
        self.tensorboard = SummaryWriter(str(folder / "tensorboard"), purge_step=start_step + 1)

    def write(self, record: dict) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.handle.flush()
        if self.tensorboard is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, int | float):
                    self.tensorboard.add_scalar(key, value, record["step"])

    def close(self) -> None:
        self.handle.close()
        if self.tensorboard is not None:
            self.tensorboard.close()


def _step_of(line: str) -> float:
    try:
        return json.loads(line)["step"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return math.inf  # a torn last line of a killed run


class KnnMonitor:
    """Callback for ``Trainer.fit``: cosine kNN accuracy of the current encoder on held-out
    images."""

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

"""StreamSpec, the shareable card of an infinite training stream, and Stream, which plays it.

A spec is plain JSON: the generator (name or path, pinned by SHA-256), classes and their weights,
the seed, an eraser card (pinned by SHA-256), the view and augmentation recipes, the output
resolution and the replay-buffer refresh rate. Given the same spec, device and dtype, ``Stream``
yields the same batches; rank ``r`` of ``w`` gets its own deterministic shard; it resumes from
any step.

Replay: each rank keeps a buffer of ``buffer_size`` generated samples (default: one per-rank
batch) and regenerates ``ceil(refresh * batch)`` of them per step, round-robin; a batch is a random
draw from the buffer, augmented afresh. With ``refresh=1`` and the default buffer every sample is
fresh and used once; a larger buffer keeps samples for several steps even at ``refresh=1``.

Latent bookkeeping (a few numbers per sample) happens on the CPU with seeded generators, so the
stream is the same on every device; images are made, augmented and consumed on the device.
"""

from __future__ import annotations

import json
import numbers
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from .augment import augment, get_recipe
from .records import from_plain_dict
from .views import ViewRecipe, make_view_latents

SPEC_VERSION = 1


@dataclass
class StreamSpec:
    """Everything that defines a training stream (see module docstring)."""

    generator: str = "world-sprites-z128"
    generator_sha256: str = ""
    generator_options: dict = field(default_factory=dict)
    classes: list[int] | None = None
    class_weights: list[float] | None = None
    seed: int = 0
    eraser: str | None = None
    eraser_sha256: str | None = None
    views: dict = field(default_factory=lambda: ViewRecipe().to_dict())
    augment: dict | str = "light"
    resolution: int = 32
    refresh: float = 1.0
    buffer_size: int | None = None
    version: int = SPEC_VERSION

    def __post_init__(self):
        if self.version != SPEC_VERSION:
            raise ValueError(f"this fairgen reads stream spec version {SPEC_VERSION}, got version {self.version!r}")
        if not 0 < self.refresh <= 1:
            raise ValueError(f"refresh must be in (0, 1], got {self.refresh}")
        for name, low in (("seed", 0), ("resolution", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
            setattr(self, name, int(value))  # plain ints, so that the spec stays JSON
        if self.buffer_size is not None:
            if not _is_int(self.buffer_size) or self.buffer_size < 1:
                raise ValueError(f"buffer_size must be None or a positive integer, got {self.buffer_size!r}")
            self.buffer_size = int(self.buffer_size)
        if self.classes is not None:
            if isinstance(self.classes, str) or not self.classes or not all(_is_int(c) for c in self.classes):
                raise ValueError(f"classes must be None or a non-empty list of class indices, got {self.classes!r}")
            self.classes = [int(c) for c in self.classes]
        if self.class_weights is not None:
            if self.classes is None or len(self.class_weights) != len(self.classes):
                raise ValueError("class_weights needs classes of the same length")
            if min(self.class_weights) < 0 or sum(self.class_weights) <= 0:
                raise ValueError(f"class_weights must be non-negative with a positive sum, got {self.class_weights}")
        if (self.eraser is None) != (self.eraser_sha256 is None):
            raise ValueError("eraser and eraser_sha256 go together")
        # stored in the JSON form, so that a spec equals itself after a save/load round trip
        views = self.views if isinstance(self.views, ViewRecipe) else ViewRecipe.from_dict(self.views)
        self.views = views.to_dict()
        recipe = get_recipe(self.augment)
        if not isinstance(self.augment, str):
            self.augment = recipe.to_dict()
        if views.needs_steerer and self.eraser is None:
            raise ValueError("views ask for 'flip' views, which need an eraser card (eraser and eraser_sha256)")

    @property
    def view_recipe(self) -> ViewRecipe:
        return ViewRecipe.from_dict(self.views)

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2))
        return path

    @classmethod
    def from_dict(cls, data: dict) -> StreamSpec:
        return from_plain_dict(cls, data, "stream spec")

    @classmethod
    def load(cls, path: str | Path) -> StreamSpec:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"stream spec {path} does not exist")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"stream spec {path} is not valid JSON: {error}") from None
        eraser = data.get("eraser") if isinstance(data, dict) else None
        if eraser and not Path(eraser).is_absolute() and (path.parent / eraser).is_file():
            data["eraser"] = str(path.parent / eraser)  # a card shared in the spec's folder
        return cls.from_dict(data)


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def make_spec(generator, eraser: str | Path | None = None, **settings) -> StreamSpec:
    """A spec for a loaded generator (and eraser card), pinning both by SHA-256."""
    from steering.files import sha256_file

    if eraser is not None:
        from steering.card import card_paths

        json_path, _ = card_paths(eraser)
        settings.update(eraser=str(json_path), eraser_sha256=sha256_file(json_path))
    return StreamSpec(generator=settings.pop("generator", generator.name), generator_sha256=generator.checksum, **settings)


class Stream:
    """Iterate multiview batches: ``{"views": [B, V, 3, H, W], "labels": [B], "latents": [B, d]}``."""

    def __init__(self, spec: StreamSpec, batch_size: int, device="cpu", rank: int = 0, world_size: int = 1,
                 start_step: int = 0, generator=None, dtype: torch.dtype = torch.float32):
        from .generators import load_generator

        if not isinstance(spec, StreamSpec):
            raise ValueError(f"spec must be a StreamSpec, got {type(spec).__name__}")
        for name, value in (("batch_size", batch_size), ("rank", rank), ("world_size", world_size), ("start_step", start_step)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
        if batch_size <= 0 or batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} must be positive and divisible by world_size {world_size}")
        if start_step < 0:
            raise ValueError(f"start_step must be >= 0, got {start_step}")
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self.batch_size = batch_size // world_size  # per rank
        self.device, self.dtype = torch.device(device), dtype
        self.generator = generator or load_generator(spec.generator, device=self.device, **spec.generator_options)
        if spec.generator_sha256 and self.generator.checksum != spec.generator_sha256:
            raise ValueError(
                f"generator {spec.generator!r} has SHA-256 {self.generator.checksum}, "
                f"but the spec pins {spec.generator_sha256}"
            )
        self.steerer = self._load_steerer()
        self.views = spec.view_recipe
        self.augment = get_recipe(spec.augment)
        self.step = start_step
        self._classes, self._class_probs = self._class_table()
        self.buffer_size = spec.buffer_size or self.batch_size
        if self.buffer_size < self.batch_size:
            raise ValueError(f"buffer_size {self.buffer_size} must be at least the per-rank batch {self.batch_size}")
        self.per_step = max(1, int(np.ceil(spec.refresh * self.batch_size)))
        self._buffer = None

    # ------------------------------------------------------------ set-up

    def _load_steerer(self):
        if self.spec.eraser is None:
            return None
        from steering.card import load_card

        from steering.files import sha256_file

        path = Path(self.spec.eraser)
        if not path.is_file():
            raise FileNotFoundError(f"eraser card {path} named by the spec does not exist")
        try:
            checksum = sha256_file(path)
        except OSError as error:
            raise ValueError(f"eraser card {path} named by the spec cannot be read: {error}") from None
        if checksum != self.spec.eraser_sha256:
            raise ValueError(f"eraser card {path} does not match the SHA-256 pinned in the spec")
        steerer, _ = load_card(path, generator=self.generator)
        if steerer.mode == "erase":
            raise ValueError(
                f"eraser card {path} is in erase mode, which is latent-only: in images it collapses each class onto "
                "its majority protected value; fit a balance card for a stream (fairgen steer --mode balance)"
            )
        return steerer

    def _class_table(self):
        num = self.generator.num_classes
        if num == 0:  # unconditional: every sample gets label 0, and classes cannot be chosen
            if self.spec.classes is not None:
                raise ValueError(f"classes {self.spec.classes} were given, but generator {self.spec.generator!r} is unconditional")
            return torch.zeros(1, dtype=torch.int64), torch.ones(1)
        classes = torch.arange(num) if self.spec.classes is None else torch.tensor(self.spec.classes)
        if num and (classes.min() < 0 or classes.max() >= num):
            raise ValueError(f"classes must lie in [0, {num}), got {self.spec.classes}")
        weights = torch.ones(len(classes)) if self.spec.class_weights is None else torch.tensor(self.spec.class_weights)
        return classes, weights / weights.sum()

    def _rng(self, step: int, purpose: int) -> torch.Generator:
        seed = np.random.SeedSequence([self.spec.seed, self.rank, step, purpose]).generate_state(1)[0]
        return torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------ generation

    def _generate(self, step: int, n: int, purpose: int = 0):
        """``n`` fresh samples for ``step``: steered anchors, their view latents, and images."""
        rng = self._rng(step, purpose)
        z = self.generator.sample_latents(n, generator=rng).cpu()
        y = self._classes[torch.multinomial(self._class_probs, n, replacement=True, generator=rng)]
        if self.steerer is not None and self.steerer.mode != "flip":
            z = self.steerer(z, y, rng)
        latents = make_view_latents(z, y, self.views, rng, self.steerer)
        flat = rearrange(latents, "b v d -> (b v) d").to(self.device)
        labels = y.repeat_interleave(self.views.num_views).to(self.device)
        images = self.generator.synthesize(flat, labels if self.generator.num_classes else None)
        images = rearrange(images.to(self.dtype), "(b v) c h w -> b v c h w", v=self.views.num_views)
        return images, y.to(self.device), z.to(self.device)

    def _slots(self, step: int) -> torch.Tensor:
        """Buffer slots regenerated at ``step`` (round-robin, so any step's buffer can be rebuilt)."""
        return (step * self.per_step + torch.arange(self.per_step)) % self.buffer_size

    def _rebuild_buffer(self, step: int) -> None:
        """The buffer as it stands before ``step``: each slot holds its last write's sample."""
        n = self.buffer_size
        first = self._generate(0, n, purpose=3)  # the initial fill
        images, labels, latents = (t.clone() for t in first)
        last_writer = {}
        for s in range(max(0, step - int(np.ceil(n / self.per_step)) - 1), step):
            for i, slot in enumerate(self._slots(s).tolist()):
                last_writer[slot] = (s, i)
        for s in sorted({s for s, _ in last_writer.values()}):
            fresh = self._generate(s, self.per_step)
            for slot, (writer, i) in last_writer.items():
                if writer == s:
                    images[slot], labels[slot], latents[slot] = fresh[0][i], fresh[1][i], fresh[2][i]
        self._buffer = [images, labels, latents]

    def next_batch(self) -> dict:
        """The batch of the current step; advances the step."""
        step = self.step
        if self.spec.refresh >= 1 and self.buffer_size == self.batch_size:
            images, labels, latents = self._generate(step, self.batch_size)
        else:
            if self._buffer is None:
                self._rebuild_buffer(step)
            fresh = self._generate(step, self.per_step)
            slots = self._slots(step).to(self.device)
            for held, new in zip(self._buffer, fresh, strict=True):
                held[slots] = new
            pick = torch.randperm(self.buffer_size, generator=self._rng(step, 1))[: self.batch_size].to(self.device)
            images, labels, latents = (held[pick] for held in self._buffer)
        flat = rearrange(images, "b v c h w -> (b v) c h w")
        out = augment(flat, self.augment, self._rng(step, 2), out_size=self.spec.resolution)
        views = rearrange(out, "(b v) c h w -> b v c h w", v=self.views.num_views)
        self.step = step + 1
        return {"views": views, "labels": labels, "latents": latents, "step": step}

    def __iter__(self):
        while True:
            yield self.next_batch()

"""Stream: plays a StreamSpec as seeded, sharded multiview batches on one device.

Given the same spec, device and dtype, ``Stream`` yields the same batches; rank ``r`` of ``w``
gets its own deterministic shard; it resumes from any step.

Replay: each rank keeps a buffer of ``buffer_size`` generated samples (default: one per-rank
batch) and regenerates ``ceil(refresh * batch)`` of them per step, round-robin; a batch is a random
draw from the buffer, augmented afresh. With ``refresh=1`` and the default buffer every sample is
fresh and used once; a larger buffer keeps samples for several steps even at ``refresh=1``.

Latent bookkeeping (a few numbers per sample) happens on the CPU with seeded generators, so the
stream is the same on every device; images are made, augmented and consumed on the device.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from plumbing.validation import check_int

from .augment import augment, get_recipe
from .packaging import card_labelers, check_pin_before_loading, make_spec
from .spec import StreamSpec, StreamVersionWarning
from .views import make_view_latents, make_views

__all__ = ["Stream", "StreamSpec", "StreamVersionWarning", "card_labelers", "make_spec"]

CONFIRMED_BLOCK = (
    2048  # a confirmed stream fills about this many anchors at once, dealt into exact batches
)
CONFIRMED_BLOCK_BYTES = 1 << 29  # ... and holds at most this many bytes of their images (512 MiB)


class Stream:
    """Iterate multiview batches: ``{"views": [B, V, 3, H, W], "labels": [B], "latents": [B, d]}``.

    ``Stream.from_spec(path_or_spec, batch_size)`` reads the spec and loads what it names (the
    generator, its eraser and walk cards, labelers it names by a registered scheme); ``Stream(spec,
    batch_size, generator=..., steerer=..., walks=...)`` takes those objects as they are and reads
    no file.

    A spec whose eraser card is labeler-confirmed (``guarantee: "confirmed"``) draws every batch
    with ``steerer.draw``: each per-rank batch meets the target exactly in the labeler's terms, and
    its labels are the generator's classes or, for an unconditional generator with a keep labeler,
    the keep-labels. It needs ``labeler``: a callable or ``{attribute: callable}``, given by the
    caller; without it, ``from_spec`` loads only labelers the spec names by a registered scheme
    (``world:texture``), never code a received card names.

    A spec with 'flip' views and a classifier eraser card, given ``labeler`` (its attributes'),
    makes every flip view a labeler-confirmed twin inside the prior (``steering.ConfirmedFlipper``);
    such batches add ``flip_confirmed`` ``[B]`` and ``flip_missed`` (a missed anchor's flip view is
    the anchor itself: flagged, never dropped)."""

    def __init__(
        self,
        spec: StreamSpec,
        batch_size: int,
        device="cpu",
        rank: int = 0,
        world_size: int = 1,
        start_step: int = 0,
        generator=None,
        dtype: torch.dtype = torch.float32,
        labeler=None,
        steerer=None,
        walks=None,
    ):
        if not isinstance(spec, StreamSpec):
            raise ValueError(
                f"spec must be a StreamSpec, got {type(spec).__name__} "
                "(Stream.from_spec reads a spec file)"
            )
        _check_shard(batch_size, rank, world_size, start_step)
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self.batch_size = batch_size // world_size  # per rank
        self.device, self.dtype = torch.device(device), dtype
        self.generator = _check_generator(spec, generator)
        self.steerer = _check_steerer(spec, steerer)
        self.labelers = self._confirming_labelers(labeler)
        self.flipper = self._confirmed_flipper(labeler)
        self.views = spec.view_recipe
        self.walks = self._check_walks(walks)
        self.augment = get_recipe(spec.augment)
        self.step = start_step
        self._classes, self._class_probs = self._class_table()
        self.buffer_size = spec.buffer_size or self.batch_size
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size {self.buffer_size} must be at least the per-rank batch "
                f"{self.batch_size}"
            )
        self.per_step = max(1, int(np.ceil(spec.refresh * self.batch_size)))
        self._buffer = None

    @classmethod
    def from_spec(
        cls,
        spec: StreamSpec | str | Path,
        batch_size: int,
        device="cpu",
        generator=None,
        labeler=None,
        allow_entry_points=(),
        **options,
    ) -> Stream:
        """A stream from a spec file (or a loaded ``StreamSpec``), with everything it names loaded.

        The generator is loaded from the spec (a local file or folder checked against its pin
        first) unless ``generator`` is given; the eraser and walk cards are read and checked against
        their SHA-256; labelers given by name, or named by the spec with a registered scheme for a
        confirmed card, are loaded. ``options`` go to ``Stream`` (rank, world_size, start_step,
        dtype); ``allow_entry_points`` to ``StreamSpec.load``."""
        from .generators import load_generator

        _check_shard(
            batch_size,
            options.get("rank", 0),
            options.get("world_size", 1),
            options.get("start_step", 0),
        )  # before anything is loaded
        if isinstance(spec, str | Path):
            spec = StreamSpec.load(spec, allow_entry_points=allow_entry_points)
        if not isinstance(spec, StreamSpec):
            raise ValueError(
                f"spec must be a StreamSpec or the path of a spec file, got {type(spec).__name__}"
            )
        if generator is None:
            check_pin_before_loading(spec)
            generator = load_generator(
                spec.generator, device=torch.device(device), **spec.generator_options
            )
        _check_generator(spec, generator)
        steerer = _load_steerer(spec, generator)
        walks = _load_walks(spec, generator)
        labeler = _load_labelers(spec, steerer, labeler, generator, device)
        return cls(
            spec,
            batch_size,
            device,
            generator=generator,
            labeler=labeler,
            steerer=steerer,
            walks=walks,
            **options,
        )

    # ------------------------------------------------------------ set-up

    def _confirming_labelers(self, labeler):
        """The labelers a confirmed steerer needs, by attribute (None for other steerers)."""
        if self.steerer is None or self.steerer.guarantee != "confirmed":
            if labeler is not None and not self.spec.view_recipe.needs_steerer:
                raise ValueError(
                    "labeler is only used by a labeler-confirmed eraser card or by 'flip' views; "
                    "this spec has neither"
                )
            return None
        if self.spec.view_recipe.needs_steerer:
            raise ValueError(
                "views ask for 'flip' views, but this eraser card is a labeler-confirmed balance "
                "card (it draws anchors, it does not move latents); use anchor/neighbour/walk views"
            )
        needed = list(self.steerer.attrs_)
        if labeler is None:
            wanted = ", ".join(f"{a}={(self.spec.labelers or {}).get(a, '?')}" for a in needed)
            raise ValueError(
                "this stream's eraser card is labeler-confirmed: it needs its labelers "
                f"({wanted}); "
                "a card never runs code it names, so pass them: Stream(..., labeler=...) or "
                "--labeler NAME=SPEC on the command line"
            )
        if not isinstance(labeler, dict):
            if len(needed) != 1:
                raise ValueError(
                    f"labeler must be a dict {{attribute: callable}} for {needed}, got one callable"
                )
            labeler = {needed[0]: labeler}
        elif len(needed) == 1 and set(labeler) == {"protected"}:  # one attribute, unnamed
            labeler = {needed[0]: labeler["protected"]}
        if set(labeler) != set(needed):
            raise ValueError(
                f"labeler must give one for each of the card's attributes {needed}, "
                f"got {sorted(labeler)}"
            )
        for attribute in needed:
            if not callable(labeler[attribute]):
                raise ValueError(
                    f"labeler for {attribute!r} must be a callable, got "
                    f"{type(labeler[attribute]).__name__} (Stream.from_spec loads labeler names)"
                )
        return {attribute: labeler[attribute] for attribute in needed}

    def _confirmed_flipper(self, labeler):
        """With 'flip' views and a labeler: ``steering.ConfirmedFlipper`` on the eraser card's
        steerer, so every flip view is a labeler-confirmed twin inside the prior (misses reported
        per batch)."""
        if labeler is None or self.labelers is not None or not self.spec.view_recipe.needs_steerer:
            return None
        from steering import ConfirmedFlipper

        try:
            return ConfirmedFlipper(self.generator, labeler, self.steerer)
        except ValueError as error:
            raise ValueError(
                "confirmed 'flip' views need a classifier eraser card and its attributes' "
                f"labelers: {error}"
            ) from None

    def _check_walks(self, walks):
        """The walk card's walks, on the CPU (latent bookkeeping happens there); checked against
        the recipe."""
        if (self.spec.walks is None) != (walks is None):
            raise ValueError(
                "walks must be given exactly when the spec names a walk card "
                f"(spec walks: {self.spec.walks!r}); Stream.from_spec loads it"
            )
        if walks is None:
            return None
        wanted = self.views.walk_transformations or walks.transformations
        missing = [t for t in wanted if t not in walks.transformations]
        if missing:
            raise ValueError(
                f"views ask for walks {missing} that the walk card lacks "
                f"(it has {list(walks.transformations)})"
            )
        if self.views.walk_compose > len(wanted):
            raise ValueError(
                f"views compose {self.views.walk_compose} walks, but only {len(wanted)} are on "
                "offer"
            )
        return walks.cpu()

    def _class_table(self):
        num = self.generator.num_classes
        if num == 0:  # unconditional: every sample gets label 0, and classes cannot be chosen
            if self.spec.classes is not None:
                raise ValueError(
                    f"classes {self.spec.classes} were given, but generator "
                    f"{self.spec.generator!r} is unconditional"
                )
            return torch.zeros(1, dtype=torch.int64), torch.ones(1)
        classes = (
            torch.arange(num) if self.spec.classes is None else torch.tensor(self.spec.classes)
        )
        if num and (classes.min() < 0 or classes.max() >= num):
            raise ValueError(f"classes must lie in [0, {num}), got {self.spec.classes}")
        weights = (
            torch.ones(len(classes))
            if self.spec.class_weights is None
            else torch.tensor(self.spec.class_weights)
        )
        return classes, weights / weights.sum()

    def _rng(self, step: int, purpose: int) -> torch.Generator:
        seed = np.random.SeedSequence([self.spec.seed, self.rank, step, purpose]).generate_state(1)[
            0
        ]
        return torch.Generator().manual_seed(int(seed))

    # ------------------------------------------------------------ generation

    def _generate(self, step: int, n: int, purpose: int = 0):
        """``n`` fresh samples for ``step``: steered anchors, their view latents, and images."""
        rng = self._rng(step, purpose)
        if self.labelers is not None:
            return self._generate_confirmed(self._confirmed_anchors(step, n, purpose), rng)
        z = self.generator.sample_latents(n, generator=rng).cpu()
        y = self._classes[torch.multinomial(self._class_probs, n, replacement=True, generator=rng)]
        if self.steerer is not None:
            z = self.steerer.anchors(z, y, rng, self.generator.sample_latents)
        made = make_views(z, y, self.views, rng, self.steerer, self.walks, flipper=self.flipper)
        latents = made.latents
        confirmed = (
            torch.ones(n, dtype=torch.bool)
            if made.flip_confirmed is None
            else made.flip_confirmed.cpu()
        )
        flat = rearrange(latents, "b v d -> (b v) d").to(self.device)
        labels = y.repeat_interleave(self.views.num_views).to(self.device)
        images = self.generator.synthesize(flat, labels if self.generator.num_classes else None)
        images = rearrange(
            images.to(self.dtype), "(b v) c h w -> b v c h w", v=self.views.num_views
        )
        return images, y.to(self.device), z.to(self.device), confirmed.to(self.device)

    def confirmed_block(self, n: int) -> int:
        """How many draws of ``n`` a confirmed stream fills at once: about ``CONFIRMED_BLOCK``
        anchors, within ``CONFIRMED_BLOCK_BYTES`` of images (a function of the spec and the batch
        only, so batches repeat)."""
        side = int(getattr(self.generator, "resolution", 0) or 256)
        per_sample = 3 * side * side * 4
        return max(1, min(CONFIRMED_BLOCK // n, CONFIRMED_BLOCK_BYTES // (n * per_sample)))

    def _confirmed_anchors(self, step: int, n: int, purpose: int):
        """Step ``step``'s ``n`` confirmed anchors: part ``step % k`` of block ``step // k``, a
        deterministic function of (seed, rank, block), so a stream resumed at any step repeats the
        uninterrupted one. Every part meets the per-draw quotas exactly; the block pays for its last
        quotas once, not k times."""
        k = (
            1 if purpose == 3 else self.confirmed_block(n)
        )  # the buffer's initial fill is drawn once
        key = (step // k, n, purpose)
        if getattr(self, "_block_key", None) != key:
            probs = torch.zeros(max(1, self.generator.num_classes))
            probs[self._classes] = self._class_probs
            seed = int(torch.randint(2**62, (1,), generator=self._rng(step // k, 16 + purpose)))
            self._block = self.steerer.draw_batches(
                self.generator, self.labelers, n, k, seed=seed, class_probs=probs
            )
            self._block_key = key
        return self._block[step % k]

    def _generate_confirmed(self, draw, rng: torch.Generator):
        """A confirmed steerer's anchors (exact per-cell quotas) and their views; anchor views reuse
        its images."""
        self.last_draw_cost_ = draw.cost()
        z, y = draw.latents, draw.classes  # y: the class input, the keep-label, or zeros
        latents = make_view_latents(z, y, self.views, rng, None, self.walks)
        fresh = [i for i, kind in enumerate(self.views.kinds) if kind != "anchor"]
        images = draw.images.to(self.device, self.dtype)[:, None].repeat(
            1, self.views.num_views, 1, 1, 1
        )
        if fresh:
            flat = rearrange(latents[:, fresh], "b v d -> (b v) d").to(self.device)
            classes = (
                y.repeat_interleave(len(fresh)).to(self.device)
                if self.generator.num_classes
                else None
            )
            made = self.generator.synthesize(flat, classes)
            images[:, fresh] = rearrange(
                made.to(self.dtype), "(b v) c h w -> b v c h w", v=len(fresh)
            )
        return (
            images,
            y.to(self.device),
            z.to(self.device),
            torch.ones(len(y), dtype=torch.bool, device=self.device),
        )

    def _slots(self, step: int) -> torch.Tensor:
        """Buffer slots regenerated at ``step`` (round-robin, so any step's buffer can be
        rebuilt)."""
        return (step * self.per_step + torch.arange(self.per_step)) % self.buffer_size

    def _rebuild_buffer(self, step: int) -> None:
        """The buffer as it stands before ``step``: each slot holds its last write's sample."""
        n = self.buffer_size
        first = self._generate(0, n, purpose=3)  # the initial fill
        held = [t.clone() for t in first]
        last_writer = {}
        for s in range(max(0, step - int(np.ceil(n / self.per_step)) - 1), step):
            for i, slot in enumerate(self._slots(s).tolist()):
                last_writer[slot] = (s, i)
        for s in sorted({s for s, _ in last_writer.values()}):
            fresh = self._generate(s, self.per_step)
            for slot, (writer, i) in last_writer.items():
                if writer == s:
                    for part, new in zip(held, fresh, strict=True):
                        part[slot] = new[i]
        self._buffer = held

    def next_batch(self) -> dict:
        """The batch of the current step; advances the step."""
        step = self.step
        if self.spec.refresh >= 1 and self.buffer_size == self.batch_size:
            images, labels, latents, confirmed = self._generate(step, self.batch_size)
        else:
            if self._buffer is None:
                self._rebuild_buffer(step)
            fresh = self._generate(step, self.per_step)
            slots = self._slots(step).to(self.device)
            for held, new in zip(self._buffer, fresh, strict=True):
                held[slots] = new
            pick = torch.randperm(self.buffer_size, generator=self._rng(step, 1))[
                : self.batch_size
            ].to(self.device)
            images, labels, latents, confirmed = (held[pick] for held in self._buffer)
        flat = rearrange(images, "b v c h w -> (b v) c h w")
        out = augment(flat, self.augment, self._rng(step, 2), out_size=self.spec.resolution)
        views = rearrange(out, "(b v) c h w -> b v c h w", v=self.views.num_views)
        self.step = step + 1
        batch = {"views": views, "labels": labels, "latents": latents, "step": step}
        if (
            self.flipper is not None
        ):  # a missed anchor's flip view is the anchor itself: flagged, never dropped
            batch["flip_confirmed"], batch["flip_missed"] = confirmed, int((~confirmed).sum())
        return batch

    def __iter__(self):
        while True:
            yield self.next_batch()


# ------------------------------------------------------------ what from_spec loads


def _check_shard(batch_size, rank, world_size, start_step) -> None:
    """Integers that make a shard: a positive batch divisible by the ranks, a rank among them."""
    for name, value in (
        ("batch_size", batch_size),
        ("rank", rank),
        ("world_size", world_size),
        ("start_step", start_step),
    ):
        check_int(value, name)
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must lie in [0, world_size), got rank {rank} of {world_size}")
    if batch_size <= 0 or batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} must be positive and divisible by world_size {world_size}"
        )
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")


def _check_generator(spec: StreamSpec, generator):
    """``generator``, which must be given and match the SHA-256 the spec pins."""
    if generator is None:
        raise ValueError(
            "generator must be given (a loaded generator); Stream.from_spec loads the one the "
            "spec names"
        )
    if spec.generator_sha256 and generator.checksum != spec.generator_sha256:
        raise ValueError(
            f"generator {spec.generator!r} has SHA-256 {generator.checksum}, "
            f"but the spec pins {spec.generator_sha256}"
        )
    return generator


def _check_steerer(spec: StreamSpec, steerer):
    """The eraser card's steerer: given exactly when the spec names a card, never in erase mode."""
    if (spec.eraser is None) != (steerer is None):
        raise ValueError(
            "steerer must be given exactly when the spec names an eraser card "
            f"(spec eraser: {spec.eraser!r}); Stream.from_spec loads it"
        )
    if steerer is not None and steerer.mode == "erase":
        raise ValueError(
            f"eraser card {spec.eraser} is in erase mode, which is latent-only: in images it "
            "collapses each class onto its majority protected value; fit a balance card for a "
            "stream (fairgen steer --mode balance)"
        )
    return steerer


def _load_steerer(spec: StreamSpec, generator):
    """The steerer of the spec's eraser card, checked against the SHA-256 the spec pins."""
    if spec.eraser is None:
        return None
    from plumbing.files import sha256_file
    from steering.card import load_card

    path = Path(spec.eraser)
    if not path.is_file():
        raise FileNotFoundError(f"eraser card {path} named by the spec does not exist")
    try:
        checksum = sha256_file(path)
    except OSError as error:
        raise ValueError(f"eraser card {path} named by the spec cannot be read: {error}") from None
    if checksum != spec.eraser_sha256:
        raise ValueError(f"eraser card {path} does not match the SHA-256 pinned in the spec")
    steerer, _ = load_card(path, generator=generator)
    return steerer


def _load_walks(spec: StreamSpec, generator):
    """The walks of the spec's walk card, checked against the SHA-256 the spec pins."""
    if spec.walks is None:
        return None
    from .walks import load_walks

    walks, _ = load_walks(spec.walks, generator=generator, sha256=spec.walks_sha256)
    return walks


def _load_labelers(spec: StreamSpec, steerer, labeler, generator, device):
    """``labeler`` with names loaded; for a confirmed card without one, the labelers the spec
    names by a registered scheme (``world:texture``): a card never runs code it names."""
    from .labelers import load_labeler
    from .labelers.registry import names_registered_scheme

    def load(name):
        return load_labeler(name, generator=generator, device=device).predict

    confirmed = getattr(steerer, "guarantee", None) == "confirmed"
    if labeler is None and confirmed:
        named = spec.labelers or {}
        if all(names_registered_scheme(named.get(a)) for a in steerer.attrs_):
            return {a: load(named[a]) for a in steerer.attrs_}
        return None  # Stream says which labelers it needs
    if isinstance(labeler, dict):
        return {a: load(f) if isinstance(f, str) else f for a, f in labeler.items()}
    return load(labeler) if isinstance(labeler, str) else labeler

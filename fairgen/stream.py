"""StreamSpec, the shareable card of an infinite training stream, and Stream, which plays it.

A spec is plain JSON: the generator (registry name, entry point ``pkg.mod:factory``, or a path relative
to the spec's folder; pinned by SHA-256) and its options, classes and their weights,
the seed, an eraser card and a walk card (each relative to the spec, pinned by SHA-256), the view and
augmentation recipes (in full, never a preset name, so a release that retunes a preset cannot change a
card's stream), the output resolution, the replay-buffer refresh rate, and the fairgen version that
wrote it (a card from another version loads with a warning: its recipes are exact, the code that
plays them may not be). Given the same spec, device and dtype, ``Stream``
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
import os
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from einops import rearrange

from plumbing.validation import check_int, is_int, is_number

from .augment import augment, get_recipe
from .entry_points import is_entry_point
from .records import from_plain_dict
from .views import ViewRecipe, make_view_latents, make_views

SPEC_VERSION = 1
CONFIRMED_BLOCK = (
    2048  # a confirmed stream fills about this many anchors at once, dealt into exact batches
)
CONFIRMED_BLOCK_BYTES = 1 << 29  # ... and holds at most this many bytes of their images (512 MiB)
MAX_RESOLUTION = 4096  # output side in pixels; 30000 would ask for gigabytes per image
# keys a card read from a file must state (a card that leaves them out does not pin a stream)
REQUIRED_KEYS = ("generator", "generator_sha256", "seed", "views", "augment", "resolution")


def _fairgen_version() -> str:
    from . import __version__

    return __version__


class StreamVersionWarning(UserWarning):
    """A stream card written by another fairgen version (or naming a preset instead of a recipe)."""


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
    walks: str | None = None
    walks_sha256: str | None = None
    labelers: dict | None = (
        None  # a confirmed eraser card's labelers, {attribute: name}: recorded, never run from here
    )
    views: dict = field(default_factory=lambda: ViewRecipe().to_dict())
    augment: dict | str = "light"
    resolution: int = 32
    refresh: float = 1.0
    buffer_size: int | None = None
    version: int = SPEC_VERSION
    fairgen_version: str = field(default_factory=_fairgen_version)

    def __post_init__(self):
        if self.version != SPEC_VERSION:
            raise ValueError(
                f"this fairgen reads stream spec version {SPEC_VERSION}, got version {self.version!r}"
            )
        if not is_number(self.refresh) or not 0 < self.refresh <= 1:
            raise ValueError(f"refresh must be a number in (0, 1], got {self.refresh!r}")
        for name, low, high in (("seed", 0, 2**63 - 1), ("resolution", 1, MAX_RESOLUTION)):
            value = getattr(self, name)
            if not is_int(value) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
            setattr(self, name, int(value))  # plain ints, so that the spec stays JSON
        if self.buffer_size is not None:
            if not is_int(self.buffer_size) or self.buffer_size < 1:
                raise ValueError(
                    f"buffer_size must be None or a positive integer, got {self.buffer_size!r}"
                )
            self.buffer_size = int(self.buffer_size)
        if self.classes is not None:
            if (
                isinstance(self.classes, str)
                or not self.classes
                or not all(is_int(c) for c in self.classes)
            ):
                raise ValueError(
                    f"classes must be None or a non-empty list of class indices, got {self.classes!r}"
                )
            self.classes = [int(c) for c in self.classes]
        if self.class_weights is not None:
            if self.classes is None or len(self.class_weights) != len(self.classes):
                raise ValueError("class_weights needs classes of the same length")
            if isinstance(self.class_weights, str) or not all(
                is_number(w) for w in self.class_weights
            ):
                raise ValueError(f"class_weights must be finite numbers, got {self.class_weights}")
            if min(self.class_weights) < 0 or sum(self.class_weights) <= 0:
                raise ValueError(
                    f"class_weights must be non-negative with a positive sum, got {self.class_weights}"
                )
        if (self.eraser is None) != (self.eraser_sha256 is None):
            raise ValueError("eraser and eraser_sha256 go together")
        if (self.walks is None) != (self.walks_sha256 is None):
            raise ValueError("walks and walks_sha256 go together")
        if self.labelers is not None and (
            not isinstance(self.labelers, dict)
            or not self.labelers
            or not all(
                isinstance(k, str) and isinstance(v, str) and v for k, v in self.labelers.items()
            )
        ):
            raise ValueError(
                f"labelers must be None or a non-empty dict {{attribute: labeler name}}, got {self.labelers!r}"
            )
        # stored in the JSON form, so that a spec equals itself after a save/load round trip
        views = (
            self.views if isinstance(self.views, ViewRecipe) else ViewRecipe.from_dict(self.views)
        )
        self.views = views.to_dict()
        self.augment = get_recipe(self.augment).to_dict()  # the full recipe, never a preset name
        if not isinstance(self.fairgen_version, str):
            raise ValueError(
                f"fairgen_version must be a version string, got {self.fairgen_version!r}"
            )
        if views.needs_steerer and self.eraser is None:
            raise ValueError(
                "views ask for 'flip' views, which need an eraser card (eraser and eraser_sha256)"
            )
        if views.needs_walks and self.walks is None:
            raise ValueError(
                "views ask for 'walk' views, which need a walk card (walks and walks_sha256)"
            )

    @property
    def view_recipe(self) -> ViewRecipe:
        return ViewRecipe.from_dict(self.views)

    def to_dict(self) -> dict:
        data = asdict(self)
        if data["labelers"] is None:  # a spec without a confirmed card reads as it always did
            del data["labelers"]
        return data

    def save(self, path: str | Path) -> Path:
        """Write the spec as JSON. Local files it names (the eraser card, a generator folder or file)
        are written as paths relative to the spec's folder; one lying outside that folder is first
        copied beside the spec (hard-linked where possible), so the folder travels as a whole."""
        from plumbing.files import atomic_write_text

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.eraser is not None:
            _bring_card(self.eraser, path.parent)
        if self.walks is not None:
            _bring_walk_card(self.walks, path.parent)
        if _names_local_file(self.generator):
            _bring(Path(self.generator), path.parent)
        atomic_write_text(path, json.dumps(self.portable_dict(path.parent), indent=2))
        return path

    def portable_dict(self, folder: str | Path) -> dict:
        """The spec as ``save`` writes it into ``folder``: local files named relative to it, as they will
        be once placed there (nothing is copied)."""
        from steering.card import card_paths

        from .walks import walk_card_paths

        data = self.to_dict()
        data["generator_options"] = _options_relative(self.generator_options, Path(folder))
        if self.eraser is not None:
            data["eraser"] = _placed_name(card_paths(self.eraser)[0], Path(folder))
        if self.walks is not None:
            data["walks"] = _placed_name(walk_card_paths(self.walks)[0], Path(folder))
        if _names_local_file(self.generator):
            data["generator"] = _placed_name(Path(self.generator), Path(folder))
        return data

    @classmethod
    def from_dict(
        cls, data: dict, folder: str | Path | None = None, allow_entry_points=()
    ) -> StreamSpec:
        """A spec from its JSON form; warns when another fairgen wrote it or it names a preset.

        The dict is data from a file: an entry point it names as the generator is refused unless
        ``allow_entry_points`` allows it (``True``: any; or a collection of ``module:callable``). With
        ``folder`` (the file's folder), every file it names (eraser, walks, a generator file or folder,
        path-like generator options) must lie inside that folder and is resolved there."""
        if isinstance(data, dict):
            data = _received(data, folder, allow_entry_points)
            missing = [key for key in REQUIRED_KEYS if key not in data]
            if missing:
                raise ValueError(
                    f"stream spec lacks {missing}; a card must state {list(REQUIRED_KEYS)}"
                )
            _warn_about_origin(data)
        return from_plain_dict(cls, data, "stream spec")

    @classmethod
    def load(cls, path: str | Path, allow_entry_points=()) -> StreamSpec:
        """Read a spec (strict, bounded JSON); the files it names resolve inside its folder, never outside,
        and an entry point it names runs only when ``allow_entry_points`` allows it."""
        from plumbing.files import read_json

        path = Path(path)
        data = read_json(path, "stream spec")
        return cls.from_dict(data, folder=path.parent, allow_entry_points=allow_entry_points)


# option names that hold a file or folder (and any value that looks like a path)
PATH_OPTIONS = {
    "weights",
    "weights_dir",
    "cache_dir",
    "repo_or_dir",
    "path",
    "file",
    "dir",
    "config",
    "root",
}

TEXT_OPTIONS = {"prompts"}  # option names whose strings are text, never paths ("a cat/dog")


def _received(data: dict, folder, allow_entry_points) -> dict:
    """``data`` with its entry point checked and (given ``folder``) its file names resolved inside ``folder``."""
    from plumbing.files import resolve_inside

    from .entry_points import check_allowed
    from .generators import list_generators

    data = dict(data)
    where = "stream spec" if folder is None else f"stream spec in {folder}"
    generator = data.get("generator")
    if is_entry_point(generator):
        check_allowed(generator, allow_entry_points, where)
    if folder is None:
        return data
    for key in ("eraser", "walks"):
        if data.get(key) is not None:
            data[key] = str(resolve_inside(folder, data[key], f"{where}: {key}"))
    if (
        isinstance(generator, str)
        and not is_entry_point(generator)
        and generator not in list_generators()
    ):
        data["generator"] = str(
            resolve_inside(folder, generator, f"{where}: generator")
        )  # never the current directory
        if not data.get("generator_sha256"):
            raise ValueError(
                f"{where}: the local generator {generator!r} is not pinned (generator_sha256 is empty)"
            )
    if isinstance(data.get("generator_options"), dict):
        data["generator_options"] = _options_inside(
            data["generator_options"], folder, f"{where}: generator_options"
        )
    return data


def _options_inside(options: dict, folder, where: str) -> dict:
    """Generator options from a card, with every path-like string resolved inside ``folder``."""
    from plumbing.files import resolve_inside

    def fix(key, value):
        if isinstance(value, dict):
            return {k: fix(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(key, v) for v in value]
        if key in TEXT_OPTIONS:
            return value
        if isinstance(value, str) and (
            key in PATH_OPTIONS
            or key.endswith(("_dir", "_path", "_file"))
            or any(c in value for c in "/\\")
            or value.startswith((".", "~"))
        ):
            return str(resolve_inside(folder, value, f"{where}[{key!r}]"))
        return value

    return {str(k): fix(str(k), v) for k, v in options.items()}


def _warn_about_origin(data: dict) -> None:
    from plumbing.files import printable

    here = _fairgen_version()
    written = data.get("fairgen_version")
    if written != here:
        by = (
            f"fairgen {printable(written)}"
            if written
            else "a fairgen that did not record its version"
        )
        warnings.warn(
            f"this stream card was written by {by}; this is fairgen {here}. Its recipes are stored "
            "in full, but if the code that plays them changed, so has the stream",
            StreamVersionWarning,
            stacklevel=3,
        )
    if isinstance(data.get("augment"), str):
        warnings.warn(
            f"this stream card names the augmentation preset {printable(repr(data['augment']))}; this fairgen's "
            f"version of it is used and recorded in full",
            StreamVersionWarning,
            stacklevel=3,
        )


def _names_local_file(generator: str) -> bool:
    return isinstance(generator, str) and not is_entry_point(generator) and Path(generator).exists()


def _options_relative(options: dict, folder: Path) -> dict:
    """Generator options with absolute paths inside ``folder`` written relative to it (others as they are)."""
    folder = folder.resolve()

    def fix(value):
        if isinstance(value, dict):
            return {k: fix(v) for k, v in value.items()}
        if isinstance(value, list):
            return [fix(v) for v in value]
        if (
            isinstance(value, str)
            and os.path.isabs(value)
            and folder in Path(value).resolve().parents
        ):
            return _placed_name(Path(value), folder)
        return value

    return fix(dict(options))


def _placed_name(source: Path, folder: Path) -> str:
    """How a spec in ``folder`` names ``source`` once ``_bring`` has placed it there."""
    from plumbing.files import relative_to_card

    source, folder = Path(source).resolve(), Path(folder).resolve()
    return relative_to_card(source, folder) if folder in source.parents else source.name


def _bring(source: Path, folder: Path) -> str:
    """``source`` as a path relative to ``folder``; copied (or hard-linked) in first if it lies outside."""
    import shutil

    from plumbing.files import relative_to_card, sha256_file

    source, folder = source.resolve(), folder.resolve()
    if folder in source.parents:
        return relative_to_card(source, folder)
    target = folder / source.name
    if target.exists():
        same = (
            sha256_file(target) == sha256_file(source)
            if source.is_file()
            else all(
                (target / f.relative_to(source)).is_file()
                and sha256_file(target / f.relative_to(source)) == sha256_file(f)
                for f in source.rglob("*")
                if f.is_file()
            )
        )
        if not same:
            raise ValueError(
                f"cannot place {source} beside the spec: {target} already exists with other content"
            )
        return target.name

    def link_or_copy(src, dst):
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    if source.is_dir():
        shutil.copytree(source, target, copy_function=link_or_copy)
    else:
        link_or_copy(source, target)
    return target.name


def _bring_card(eraser: str, folder: Path) -> str:
    """The eraser card's JSON (and the tensors file it names) beside the spec; its relative name."""
    from steering.card import card_paths, card_tensors, read_card

    json_path, _ = card_paths(eraser)
    tensors = card_tensors(read_card(json_path), json_path)
    if not tensors.is_file():
        raise FileNotFoundError(f"eraser card tensors {tensors} do not exist")
    name = _bring(json_path, folder)
    _bring(tensors, (folder / name).parent)
    return name


def _bring_walk_card(walks: str, folder: Path) -> str:
    """The walk card's JSON (and the tensors file it names) beside the spec; its relative name."""
    from plumbing.files import resolve_inside

    from .walks import read_walk_card, walk_card_paths

    json_path, _ = walk_card_paths(walks)
    entry = read_walk_card(json_path).get("tensors") or {}
    tensors = resolve_inside(
        json_path.parent, entry.get("file"), f"walk card {json_path.name} tensors"
    )
    if not tensors.is_file():
        raise FileNotFoundError(f"walk card tensors {tensors} do not exist")
    name = _bring(json_path, folder)
    _bring(tensors, (folder / name).parent)
    return name


def _check_pin_before_loading(spec: StreamSpec) -> None:
    """A local generator file or folder is checked against the spec's SHA-256 before it is loaded."""
    from .generators.registry import local_checksum

    if not spec.generator_sha256 or not _names_local_file(spec.generator):
        return
    checksum = local_checksum(Path(spec.generator))
    if checksum is not None and checksum != spec.generator_sha256:
        raise ValueError(
            f"generator {spec.generator!r} has SHA-256 {checksum}, but the spec pins "
            f"{spec.generator_sha256}; nothing was loaded from it"
        )


def make_spec(
    generator,
    eraser: str | Path | None = None,
    walks: str | Path | None = None,
    source: str | None = None,
    **settings,
) -> StreamSpec:
    """A spec for a loaded generator (and eraser and walk cards), pinning each by SHA-256.

    ``source`` is how the spec names the generator (a registry name, an entry point or a local
    path, as given to ``load_generator``); by default the generator's own name."""
    from plumbing.files import sha256_file

    if eraser is not None:
        from steering.card import card_paths, read_card

        json_path, _ = card_paths(eraser)
        card = read_card(json_path)
        fitted_on = (card.get("generator") or {}).get("sha256")
        if fitted_on != generator.checksum:
            raise ValueError(
                f"eraser card {json_path} was fitted on a generator with SHA-256 {fitted_on}, "
                f"not on {generator.name!r} ({generator.checksum})"
            )
        settings.update(eraser=str(json_path), eraser_sha256=sha256_file(json_path))
        if card.get("guarantee") == "confirmed" and settings.get("labelers") is None:
            settings["labelers"] = card_labelers(card, json_path)
    if walks is not None:
        from .walks import walk_card_paths

        json_path, _ = walk_card_paths(walks)
        if not json_path.is_file():
            raise FileNotFoundError(f"walk card {json_path} does not exist")
        settings.update(walks=str(json_path), walks_sha256=sha256_file(json_path))
    return StreamSpec(
        generator=str(source or generator.name), generator_sha256=generator.checksum, **settings
    )


def card_labelers(card: dict, path) -> dict:
    """``{attribute: labeler name}`` a confirmed eraser card was fitted with (its ``"labelers"`` entry)."""
    labelers = card.get("labelers")
    if (
        not isinstance(labelers, dict)
        or not labelers
        or not all(isinstance(v, str) for v in labelers.values())
    ):
        raise ValueError(
            f"eraser card {path} is labeler-confirmed but does not name its labelers "
            "('labelers': {attribute: name}); refit it with `fairgen steer --method confirmed`"
        )
    return dict(labelers)


class Stream:
    """Iterate multiview batches: ``{"views": [B, V, 3, H, W], "labels": [B], "latents": [B, d]}``.

    A spec whose eraser card is labeler-confirmed (``guarantee: "confirmed"``) draws every batch with
    ``steerer.draw``: each per-rank batch meets the target exactly in the labeler's terms, and its
    labels are the generator's classes or, for an unconditional generator with a keep labeler, the
    keep-labels. It needs ``labeler``: a callable or ``{attribute: callable}``, given by the caller;
    without it, only labelers the spec names by a registered scheme (``world:texture``) are loaded,
    never code a received card names.

    A spec with 'flip' views and a classifier eraser card, given ``labeler`` (its attributes'), makes
    every flip view a labeler-confirmed twin inside the prior (``steering.ConfirmedFlipper``); such
    batches add ``flip_confirmed`` ``[B]`` and ``flip_missed`` (a missed anchor's flip view is the
    anchor itself: flagged, never dropped).
    """

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
    ):
        from .generators import load_generator

        if not isinstance(spec, StreamSpec):
            raise ValueError(f"spec must be a StreamSpec, got {type(spec).__name__}")
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
        self.spec, self.rank, self.world_size = spec, rank, world_size
        self.batch_size = batch_size // world_size  # per rank
        self.device, self.dtype = torch.device(device), dtype
        if generator is None:
            _check_pin_before_loading(spec)
        self.generator = generator or load_generator(
            spec.generator, device=self.device, **spec.generator_options
        )
        if spec.generator_sha256 and self.generator.checksum != spec.generator_sha256:
            raise ValueError(
                f"generator {spec.generator!r} has SHA-256 {self.generator.checksum}, "
                f"but the spec pins {spec.generator_sha256}"
            )
        self.steerer = self._load_steerer()
        self.labelers = self._confirming_labelers(labeler)
        self.flipper = self._confirmed_flipper(labeler)
        self.views = spec.view_recipe
        self.walks = self._load_walks()
        self.augment = get_recipe(spec.augment)
        self.step = start_step
        self._classes, self._class_probs = self._class_table()
        self.buffer_size = spec.buffer_size or self.batch_size
        if self.buffer_size < self.batch_size:
            raise ValueError(
                f"buffer_size {self.buffer_size} must be at least the per-rank batch {self.batch_size}"
            )
        self.per_step = max(1, int(np.ceil(spec.refresh * self.batch_size)))
        self._buffer = None

    # ------------------------------------------------------------ set-up

    def _load_steerer(self):
        if self.spec.eraser is None:
            return None
        from plumbing.files import sha256_file
        from steering.card import load_card

        path = Path(self.spec.eraser)
        if not path.is_file():
            raise FileNotFoundError(f"eraser card {path} named by the spec does not exist")
        try:
            checksum = sha256_file(path)
        except OSError as error:
            raise ValueError(
                f"eraser card {path} named by the spec cannot be read: {error}"
            ) from None
        if checksum != self.spec.eraser_sha256:
            raise ValueError(f"eraser card {path} does not match the SHA-256 pinned in the spec")
        steerer, _ = load_card(path, generator=self.generator)
        if steerer.mode == "erase":
            raise ValueError(
                f"eraser card {path} is in erase mode, which is latent-only: in images it collapses each class onto "
                "its majority protected value; fit a balance card for a stream (fairgen steer --mode balance)"
            )
        return steerer

    def _confirming_labelers(self, labeler):
        """The labelers a confirmed steerer needs, by attribute (None for other steerers)."""
        if self.steerer is None or self.steerer.guarantee != "confirmed":
            if labeler is not None and not self.spec.view_recipe.needs_steerer:
                raise ValueError(
                    "labeler is only used by a labeler-confirmed eraser card or by 'flip' views; this spec has neither"
                )
            return None
        if self.spec.view_recipe.needs_steerer:
            raise ValueError(
                "views ask for 'flip' views, but this eraser card is a labeler-confirmed balance card "
                "(it draws anchors, it does not move latents); use anchor/neighbour/walk views"
            )
        needed = list(self.steerer.attrs_)
        named = self.spec.labelers or {}
        if labeler is None:
            from .labelers import load_labeler
            from .labelers.registry import names_registered_scheme

            labeler = {}
            for attribute in needed:
                name = named.get(attribute)
                if not names_registered_scheme(name):
                    wanted = ", ".join(f"{a}={named.get(a, '?')}" for a in needed)
                    raise ValueError(
                        f"this stream's eraser card is labeler-confirmed: it needs its labelers ({wanted}); "
                        "a card never runs code it names, so pass them: Stream(..., labeler=...) or "
                        "--labeler NAME=SPEC on the command line"
                    )
                labeler[attribute] = load_labeler(
                    name, generator=self.generator, device=self.device
                ).predict
        elif not isinstance(labeler, dict):
            if len(needed) != 1:
                raise ValueError(
                    f"labeler must be a dict {{attribute: callable}} for {needed}, got one callable"
                )
            labeler = {needed[0]: labeler}
        elif len(needed) == 1 and set(labeler) == {
            "protected"
        }:  # one attribute, given without its name
            labeler = {needed[0]: labeler["protected"]}
        if set(labeler) != set(needed):
            raise ValueError(
                f"labeler must give one for each of the card's attributes {needed}, got {sorted(labeler)}"
            )
        from .labelers import load_labeler

        out = {}
        for attribute in (
            needed
        ):  # names the caller gave (the command line) are loaded; callables used as they are
            f = labeler[attribute]
            if isinstance(f, str):
                f = load_labeler(f, generator=self.generator, device=self.device).predict
            if not callable(f):
                raise ValueError(
                    f"labeler for {attribute!r} must be a callable or a labeler name, got {type(f).__name__}"
                )
            out[attribute] = f
        return out

    def _confirmed_flipper(self, labeler):
        """With 'flip' views and a labeler: ``steering.ConfirmedFlipper`` on the eraser card's steerer,
        so every flip view is a labeler-confirmed twin inside the prior (misses reported per batch)."""
        if labeler is None or self.labelers is not None or not self.spec.view_recipe.needs_steerer:
            return None
        from steering import ConfirmedFlipper

        try:
            return ConfirmedFlipper(self.generator, labeler, self.steerer)
        except ValueError as error:
            raise ValueError(
                f"confirmed 'flip' views need a classifier eraser card and its attributes' labelers: {error}"
            ) from None

    def _load_walks(self):
        """The walk card's walks, on the CPU (latent bookkeeping happens there); checked against the recipe."""
        if self.spec.walks is None:
            return None
        from .walks import load_walks

        walks, _ = load_walks(
            self.spec.walks, generator=self.generator, sha256=self.spec.walks_sha256
        )
        wanted = self.views.walk_transformations or walks.transformations
        missing = [t for t in wanted if t not in walks.transformations]
        if missing:
            raise ValueError(
                f"views ask for walks {missing} that the walk card lacks (it has {list(walks.transformations)})"
            )
        if self.views.walk_compose > len(wanted):
            raise ValueError(
                f"views compose {self.views.walk_compose} walks, but only {len(wanted)} are on offer"
            )
        return walks.cpu()

    def _class_table(self):
        num = self.generator.num_classes
        if num == 0:  # unconditional: every sample gets label 0, and classes cannot be chosen
            if self.spec.classes is not None:
                raise ValueError(
                    f"classes {self.spec.classes} were given, but generator {self.spec.generator!r} is unconditional"
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
        """How many draws of ``n`` a confirmed stream fills at once: about ``CONFIRMED_BLOCK`` anchors, within
        ``CONFIRMED_BLOCK_BYTES`` of images (a function of the spec and the batch only, so batches repeat)."""
        side = int(getattr(self.generator, "resolution", 0) or 256)
        per_sample = 3 * side * side * 4
        return max(1, min(CONFIRMED_BLOCK // n, CONFIRMED_BLOCK_BYTES // (n * per_sample)))

    def _confirmed_anchors(self, step: int, n: int, purpose: int):
        """Step ``step``'s ``n`` confirmed anchors: part ``step % k`` of block ``step // k``, a deterministic
        function of (seed, rank, block), so a stream resumed at any step repeats the uninterrupted one.
        Every part meets the per-draw quotas exactly; the block pays for its last quotas once, not k times."""
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
        """A confirmed steerer's anchors (exact per-cell quotas) and their views; anchor views reuse its images."""
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
        """Buffer slots regenerated at ``step`` (round-robin, so any step's buffer can be rebuilt)."""
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

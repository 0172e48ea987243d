"""StreamSpec: the shareable card of an infinite training stream, as plain, validated data.

A spec is plain JSON: the generator (registry name, entry point ``pkg.mod:factory``, or a path
relative to the spec's folder; pinned by SHA-256) and its options, classes and their weights, the
seed, an eraser card and a walk card (each relative to the spec, pinned by SHA-256), the view and
augmentation recipes (in full, never a preset name, so a release that retunes a preset cannot change
a card's stream), the output resolution, the replay-buffer refresh rate, and the fairgen version
that wrote it (a card from another version loads with a warning: its recipes are exact, the code
that plays them may not be). ``fairgen.packaging`` places the files a spec names beside it;
``fairgen.stream.Stream`` plays it."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

from plumbing.validation import is_int, is_number

from .augment import get_recipe
from .records import from_plain_dict
from .views import ViewRecipe

SPEC_VERSION = 1
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
                f"this fairgen reads stream spec version {SPEC_VERSION}, got version "
                f"{self.version!r}"
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
        self._check_classes()
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
                f"labelers must be None or a non-empty dict {{attribute: labeler name}}, got "
                f"{self.labelers!r}"
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

    def _check_classes(self) -> None:
        """Classes: None or class indices; their weights: finite, non-negative, a positive sum."""
        if self.classes is not None:
            if (
                isinstance(self.classes, str)
                or not self.classes
                or not all(is_int(c) for c in self.classes)
            ):
                raise ValueError(
                    "classes must be None or a non-empty list of class indices, got "
                    f"{self.classes!r}"
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
                    "class_weights must be non-negative with a positive sum, got "
                    f"{self.class_weights}"
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
        """Write the spec as JSON, with the local files it names placed beside it
        (``fairgen.packaging.save_spec``), so the folder travels as a whole."""
        from .packaging import save_spec

        return save_spec(self, path)

    def portable_dict(self, folder: str | Path) -> dict:
        """The spec as ``save`` writes it into ``folder`` (``fairgen.packaging.portable_dict``)."""
        from .packaging import portable_dict

        return portable_dict(self, folder)

    @classmethod
    def from_dict(
        cls, data: dict, folder: str | Path | None = None, allow_entry_points=()
    ) -> StreamSpec:
        """A spec from its JSON form; warns when another fairgen wrote it or it names a preset.

        The dict is data from a file: an entry point it names as the generator is refused unless
        ``allow_entry_points`` allows it (``True``: any; or a collection of ``module:callable``).
        With ``folder`` (the file's folder), every file it names (eraser, walks, a generator file or
        folder, path-like generator options) must lie inside that folder and is resolved there."""
        if isinstance(data, dict):
            from .packaging import received

            data = received(data, folder, allow_entry_points)
            missing = [key for key in REQUIRED_KEYS if key not in data]
            if missing:
                raise ValueError(
                    f"stream spec lacks {missing}; a card must state {list(REQUIRED_KEYS)}"
                )
            _warn_about_origin(data)
        return from_plain_dict(cls, data, "stream spec")

    @classmethod
    def load(cls, path: str | Path, allow_entry_points=()) -> StreamSpec:
        """Read a spec (strict, bounded JSON); the files it names resolve inside its folder, never
        outside, and an entry point it names runs only when ``allow_entry_points`` allows it."""
        from plumbing.files import read_json

        path = Path(path)
        data = read_json(path, "stream spec")
        return cls.from_dict(data, folder=path.parent, allow_entry_points=allow_entry_points)


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
            f"this stream card names the augmentation preset {printable(repr(data['augment']))}; "
            "this fairgen's "
            f"version of it is used and recorded in full",
            StreamVersionWarning,
            stacklevel=3,
        )

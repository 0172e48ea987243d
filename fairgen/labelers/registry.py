"""From a labeler's name to a Labeler: schemes (``world:``), entry points, and JSON model
configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from ..entry_points import import_object, is_entry_point
from .base import Labeler

_SCHEMES: dict[str, Callable[..., Labeler]] = {}


def register_labeler_scheme(scheme: str):
    """Decorator: ``factory(rest, generator=..., force=..., device=...)`` handles
    ``scheme:rest``."""

    def wrap(factory):
        _SCHEMES[scheme] = factory
        return factory

    return wrap


def names_registered_scheme(spec) -> bool:
    """Whether ``spec`` names a labeler by a registered scheme (``world:texture``): no code of its
    own to run."""
    scheme, _, rest = spec.partition(":") if isinstance(spec, str) else ("", "", "")
    return bool(rest) and scheme in _SCHEMES


def load_labeler(spec: str, *, generator=None, force: bool = False, device="cpu") -> Labeler:
    """The labeler ``spec`` names (see the package docstring); errors name ``--labeler``."""
    if isinstance(spec, Labeler):
        return spec
    if not isinstance(spec, str) or not spec:
        raise ValueError(
            f"labeler: expected a name such as world:texture, package.module:callable or "
            f"labeler.json, got {spec!r}"
        )
    scheme, _, rest = spec.partition(":")
    if rest and scheme in _SCHEMES:
        return _SCHEMES[scheme](rest, generator=generator, force=force, device=device)
    if spec.endswith(".json"):
        from .models import load_model_labeler

        return load_model_labeler(Path(spec), device=device)
    if is_entry_point(spec):
        fn = import_object(spec, "labeler")
        return Labeler(fn, spec)
    raise ValueError(
        f"labeler: {spec!r} is none of {sorted(s + ':...' for s in _SCHEMES)}, "
        f"package.module:callable or a labeler .json file"
    )

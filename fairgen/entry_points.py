"""Python entry points ``package.module:attribute``: how users plug in their own generator or labeler."""

from __future__ import annotations

import importlib
import re

_PATTERN = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def is_entry_point(text) -> bool:
    """Whether ``text`` reads as ``package.module:attribute`` (not a path, not a registry name)."""
    return isinstance(text, str) and bool(_PATTERN.match(text))


def import_object(spec: str, argument: str):
    """The object ``spec`` names; a ValueError naming ``argument`` when it cannot be imported."""
    if not is_entry_point(spec):
        raise ValueError(f"{argument}: expected an entry point 'package.module:attribute', got {spec!r}")
    module_name, attribute = spec.split(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or anything the module raises while importing
        raise ValueError(f"{argument}: cannot import module {module_name!r} of {spec!r} "
                         f"({type(error).__name__}: {error})") from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{argument}: module {module_name!r} has no attribute {attribute!r} (from {spec!r})")
        obj = getattr(obj, part)
    return obj

"""Python entry points ``package.module:attribute``: how users plug in their own generator or
labeler.

An entry point typed by the user (``--generator mypkg:make``) is the user's own code and runs. One
named inside a received file (a stream card, a checkpoint's run) would run the file author's code,
so
it runs only when the user allows it: ``--allow-entry-point MODULE:CALLABLE`` or
``--trust-entry-points`` on the command line, ``allow_entry_points=`` in Python (``check_allowed``).
"""

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
        raise ValueError(
            f"{argument}: expected an entry point 'package.module:attribute', got {spec!r}"
        )
    module_name, attribute = spec.split(":")
    try:
        obj = importlib.import_module(module_name)
    except Exception as error:  # ImportError, or anything the module raises while importing
        raise ValueError(
            f"{argument}: cannot import module {module_name!r} of {spec!r} "
            f"({type(error).__name__}: {error})"
        ) from None
    for part in attribute.split("."):
        if not hasattr(obj, part):
            raise ValueError(
                f"{argument}: module {module_name!r} has no attribute {attribute!r} (from {spec!r})"
            )
        obj = getattr(obj, part)
    return obj


ALLOW_FLAG = "--allow-entry-point"
TRUST_FLAG = "--trust-entry-points"


def check_allowed(spec: str, allow, where: str) -> None:
    """Refuse the entry point ``spec`` that a received file names (``where``) unless ``allow`` lets
    it run:
    ``True`` trusts every entry point, a collection of strings allows those named."""
    if allow is True or (allow and not isinstance(allow, str) and spec in allow) or allow == spec:
        return
    raise ValueError(
        f"{where} names the entry point {spec!r}, which would import and run code chosen by "
        "whoever "
        f"wrote the file; fairgen runs it only when you say so: pass {ALLOW_FLAG} {spec} (or "
        f"{TRUST_FLAG}) on the command line, allow_entry_points=[{spec!r}] in Python"
    )

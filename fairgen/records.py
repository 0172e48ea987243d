"""Plain-data records: build a dataclass from a JSON object, refusing keys it does not know."""

from __future__ import annotations

from dataclasses import fields


def from_plain_dict(cls, data, what: str):
    """``cls(**data)`` for a dataclass ``cls``, after checking ``data`` is a dict of known keys.

    ``what`` names the record in errors ("stream spec", "view recipe", ...).
    """
    if not isinstance(data, dict):
        raise ValueError(f"a {what} must be a dict (a JSON object), got {type(data).__name__}")
    from .keys import refuse_unknown_keys

    refuse_unknown_keys(data, {f.name for f in fields(cls)}, what)
    return cls(**data)

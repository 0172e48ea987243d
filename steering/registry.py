"""Steering methods by name, timm-style: ``steerer_class("resample")``, ``steering_methods()``.

Every steerer class registers the method names it answers to (``@register_steerer``); fitting
(``steering.fit_steerer``), steering cards, the command line's choices and streams read this table,
so adding a method is adding one class.
"""

from __future__ import annotations

_STEERERS: dict[str, type] = {}


def register_steerer(cls: type) -> type:
    """Class decorator: register ``cls`` under each of its ``methods``."""
    if not cls.methods or not cls.modes:
        raise ValueError(f"{cls.__name__} must name its methods and modes to be registered")
    for name in cls.methods:
        known = _STEERERS.get(name)
        if known is not None and known.__qualname__ != cls.__qualname__:
            raise ValueError(f"steering method {name!r} is already registered by {known.__name__}")
        _STEERERS[name] = cls
    return cls


def steerer_class(name: str) -> type:
    """The steerer class of method ``name``; a clear error listing the known ones otherwise."""
    if not isinstance(name, str) or name not in _STEERERS:
        raise ValueError(
            f"unknown steering method {name!r}; known methods: {', '.join(steering_methods())}"
        )
    return _STEERERS[name]


def steering_methods() -> tuple[str, ...]:
    """Every registered method name, sorted."""
    return tuple(sorted(_STEERERS))


def steering_modes() -> tuple[str, ...]:
    """Every mode some registered method offers, sorted."""
    return tuple(sorted({mode for cls in _STEERERS.values() for mode in cls.modes}))

"""The ``world:<factor>`` labelers: the world's judges, offered only for the world's own images."""

from __future__ import annotations

from ..labelers import Labeler, register_labeler_scheme
from .generator import NAME
from .render import CATEGORICAL


@register_labeler_scheme("world")
def world_labeler(factor: str, generator=None, force: bool = False, device="cpu") -> Labeler:
    """The judge of ``factor``; refused for a generator that is not the embedded world's unless
    forced.

    ``factor~kind`` (``texture~sym85``, ``texture~asym85``, ``texture~weak``): a labeler with a
    known error (``noisy.py``), for measuring how error correction fares against the exact judge.
    """
    from .judges import load_judges

    factor, _, kind = factor.partition("~")  # world:texture~sym85: a labeler with a known error
    judges = load_judges(device=device)
    if factor not in judges:
        raise ValueError(
            f"labeler: world:{factor} is not a world judge; the judges are "
            f"{', '.join('world:' + f for f in sorted(judges))}"
        )
    if generator is not None and getattr(generator, "name", None) != NAME and not force:
        raise ValueError(
            f"labeler: world:{factor} judges images of the embedded world only, and "
            f"{generator.name!r} is not "
            f"{NAME!r}; its labels on other images mean nothing. Bring your own labeler "
            "(--labeler package.module:callable or a labeler .json), or pass --force-labeler to "
            "use it anyway"
        )
    if kind:
        from .noisy import noisy_labeler

        return noisy_labeler(factor, kind, device)
    return Labeler(
        judges[factor].predict, f"world:{factor}", values=list(CATEGORICAL.get(factor, [])) or None
    )

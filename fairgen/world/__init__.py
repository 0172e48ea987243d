"""The embedded world, one plug-in: a labelled procedural image world, its judges, a generator
trained on a biased split of it (and its recipe), generator quality checks, the world audit and
the demo. Only this package knows the world's factor names; the rest of fairgen is generic.

Importing it registers the embedded generator with ``fairgen.load_generator``.
"""

from . import generator as _generator  # noqa: F401  (registers the embedded default)
from . import labeler as _labeler  # noqa: F401  (registers the world:<factor> labelers)
from . import legacy as _legacy  # noqa: F401  (registers the first, 6-d embedded generator)
from .judges import load_judges
from .render import (
    CATEGORICAL,
    CONTINUOUS,
    FACTORS,
    RESOLUTIONS,
    World,
    WorldSample,
    render,
    sample_factors,
)

CLASS_FACTOR = "shape"  # what the embedded generator's class input is
DEFAULT_PROTECTED = "texture"  # the protected factor of the embedded default's biased split


def captions(sample: WorldSample) -> list[str]:
    """One ``class/protected`` caption per image of a world sample, for grids."""
    classes, protected = CATEGORICAL[CLASS_FACTOR], CATEGORICAL[DEFAULT_PROTECTED]
    pairs = zip(
        sample.labels(CLASS_FACTOR).tolist(), sample.labels(DEFAULT_PROTECTED).tolist(), strict=True
    )
    return [f"{classes[c]}/{protected[p]}" for c, p in pairs]


__all__ = [
    "CATEGORICAL",
    "CLASS_FACTOR",
    "CONTINUOUS",
    "DEFAULT_PROTECTED",
    "FACTORS",
    "RESOLUTIONS",
    "World",
    "WorldSample",
    "captions",
    "load_judges",
    "render",
    "sample_factors",
]

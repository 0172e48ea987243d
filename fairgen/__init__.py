"""fairgen: turn a pretrained generative model into a fair, shareable source of training data.

The everyday API is re-exported here but imported on first use (PEP 562), so that ``import
fairgen`` and ``fairgen --help`` do not pay for torch until something needs it.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# Built-in plug-ins, imported by ``load_generator`` before it looks a name up (third-party
# packages register theirs through the ``fairgen.plugins`` entry-point group).
PLUGINS = ("fairgen.world",)

_EXPORTS = {
    "AugmentRecipe": "fairgen.augment",
    "augment": "fairgen.augment",
    "Generator": "fairgen.generators",
    "list_generators": "fairgen.generators",
    "load_generator": "fairgen.generators",
    "RunConfig": "fairgen.run_config",
    "load_run_config": "fairgen.run_config",
    "Stream": "fairgen.stream",
    "StreamSpec": "fairgen.spec",
    "make_spec": "fairgen.packaging",
    "ViewRecipe": "fairgen.views",
    "World": "fairgen.world",
    "WorldSample": "fairgen.world",
    "load_judges": "fairgen.world",
    "cramers_v": "audits.stats",
    "cramers_v_corrected": "audits.stats",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fairgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

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
    # generators: one protocol and a registry (``load_generator("name")``, ``list_generators()``)
    "Generator": "fairgen.generators",
    "list_generators": "fairgen.generators",
    "load_generator": "fairgen.generators",
    # the stream: a shareable spec (the card) and the player of its batches
    "StreamSpec": "fairgen.spec",
    "make_spec": "fairgen.packaging",
    "Stream": "fairgen.stream",
    # one run (stream + train + steer + audit) from a file, flags over it
    "RunConfig": "fairgen.run_config",
    "load_run_config": "fairgen.run_config",
    "ViewRecipe": "fairgen.views",
    "AugmentRecipe": "fairgen.augment",
    "augment": "fairgen.augment",
    # the embedded world: ground truth for every claim
    "World": "fairgen.world",
    "WorldSample": "fairgen.world",
    "load_judges": "fairgen.world",
    "audit_encoder": "fairgen.audit",
    # association of two categorical labelings
    "cramers_v": "plumbing.tables",
    "cramers_v_corrected": "plumbing.tables",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fairgen' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])

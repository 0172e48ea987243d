"""Labelers: images ``[N, 3, H, W]`` in [0, 1] -> integer labels ``[N]``, one contract everywhere.

Named by a string, on the command line and in every card's provenance:

* ``world:<factor>``: the embedded world's judges (registered by the world plug-in; refused on a
  generator that is not the world's unless forced, since the judges only know world images);
  ``world:<factor>~sym85`` / ``~asym85`` / ``~weak``: world labelers with a known error
  (``fairgen/world/noisy.py``), to measure error correction against the exact judges;
* ``package.module:callable``: any Python callable of the user's;
* ``labeler.json``: a torchvision / timm image classifier with local weights and a mapping from its
  classes to protected values, or CLIP zero-shot through open_clip with one prompt per value;
* ``face:lightness`` / ``face:background``: pixel rules for the face GAN's images (``face.py``).
"""

from . import face  # noqa: F401  (registers the face: scheme)
from .base import Labeler
from .registry import load_labeler, register_labeler_scheme

__all__ = ["Labeler", "load_labeler", "register_labeler_scheme"]

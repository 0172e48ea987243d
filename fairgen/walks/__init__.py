"""Learned latent walks: directions in a generator's latent that perform an image edit (zoom,
shifts,
rotation, hue, brightness), learned through the generator, saved as walk cards, used as views.
"""

from .card import load_walks, read_walk_card, save_walks, walk_card_paths
from .directions import LatentWalks
from .edits import DEFAULT_ALPHAS, TRANSFORMATIONS, apply_edit
from .fidelity import image_fidelity
from .learn import WalkLearner, check_differentiable

__all__ = [
    "DEFAULT_ALPHAS",
    "TRANSFORMATIONS",
    "LatentWalks",
    "WalkLearner",
    "apply_edit",
    "check_differentiable",
    "image_fidelity",
    "load_walks",
    "read_walk_card",
    "save_walks",
    "walk_card_paths",
]

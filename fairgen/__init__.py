"""fairgen: turn a pretrained generative model into a fair, shareable source of training data."""

from .augment import AugmentRecipe, augment
from .generators import Generator, list_generators, load_generator
from .judges import load_judges
from .stats import cramers_v
from .stream import Stream, StreamSpec, make_spec
from .views import ViewRecipe
from .world import World, WorldSample

__all__ = [
    "AugmentRecipe", "Generator", "Stream", "StreamSpec", "ViewRecipe", "World", "WorldSample", "augment",
    "cramers_v", "list_generators", "load_generator", "load_judges", "make_spec",
]
__version__ = "0.1.0"

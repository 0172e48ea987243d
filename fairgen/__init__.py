"""fairgen: turn a pretrained generative model into a fair, shareable source of training data."""

from .generators import Generator, list_generators, load_generator
from .stats import cramers_v
from .world import World, WorldSample

__all__ = ["Generator", "World", "WorldSample", "cramers_v", "list_generators", "load_generator"]
__version__ = "0.1.0"

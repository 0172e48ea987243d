"""fairgen: turn a pretrained generative model into a fair, shareable source of training data."""

from audits.stats import cramers_v, cramers_v_corrected

from .augment import AugmentRecipe, augment
from .generators import Generator, list_generators, load_generator
from .stream import Stream, StreamSpec, make_spec
from .views import ViewRecipe
from .world import (  # the embedded world plug-in (registers its generator)
    World,
    WorldSample,
    load_judges,
)

__all__ = [
    "AugmentRecipe", "Generator", "Stream", "StreamSpec", "ViewRecipe", "World", "WorldSample", "augment",
    "cramers_v", "cramers_v_corrected", "list_generators", "load_generator", "load_judges", "make_spec",
]
__version__ = "0.1.0"

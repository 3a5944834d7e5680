"""The sample world: a seeded simulator of a bilingual clip platform (see ``docs/world.md``).

>>> from clipfeed.world import WorldConfig
>>> WorldConfig(seed=1).n_clips
3200
"""

from clipfeed.world.build import build_world, load_gold, shipped_gold_path
from clipfeed.world.config import WORLD_FILES, WorldConfig

__all__ = ["WORLD_FILES", "WorldConfig", "build_world", "load_gold", "shipped_gold_path"]

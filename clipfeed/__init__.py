"""clipfeed's shared vocabulary: data contracts, taxonomy, settings, stage protocols, sample world.

Stages (``tagger``, ``classifier``, ``recommender``) import this package and never each other;
``cli`` and ``api`` wire them together.

>>> from clipfeed import Taxonomy
>>> Taxonomy.load().name("655")
'Travel Locations'
"""

from clipfeed.errors import ClipfeedError, ConfigError, InputError, NotBuiltError
from clipfeed.jsonl import (
    JsonlReader,
    ReadReport,
    read_catalog,
    read_events,
    read_gold,
    read_queries,
    write_jsonl,
)
from clipfeed.protocols import FilteredTag, IntentTag, IntentTagger, TopicModel, TopicScore
from clipfeed.records import ClickedDoc, Clip, Event, EventType, GoldRow, SearchQuery
from clipfeed.settings import Settings, load_settings
from clipfeed.taxonomy import Taxonomy, TaxonomyNode

__version__ = "0.1.0"

__all__ = [
    "ClickedDoc",
    "Clip",
    "ClipfeedError",
    "ConfigError",
    "Event",
    "EventType",
    "FilteredTag",
    "GoldRow",
    "InputError",
    "IntentTag",
    "IntentTagger",
    "JsonlReader",
    "NotBuiltError",
    "ReadReport",
    "SearchQuery",
    "Settings",
    "Taxonomy",
    "TaxonomyNode",
    "TopicModel",
    "TopicScore",
    "load_settings",
    "read_catalog",
    "read_events",
    "read_gold",
    "read_queries",
    "write_jsonl",
]

"""User context from five signals, candidates, LightGBM LambdaRank, diversified explained feeds,
and offline evaluation. Takes tags and topics through ``clipfeed.protocols`` (never imports the
tagger or the classifier); ``cli/`` and ``api/`` wire them in.
"""

from recommender.catalog import CatalogIndex
from recommender.config import RecommenderConfig
from recommender.evaluate import SYSTEMS, evaluate
from recommender.features import FEATURES, RequestContext
from recommender.feed import Feed, FeedBuilder, FeedItem
from recommender.pipeline import (
    PassThroughFilter,
    SearchTagging,
    SearchTags,
    WorldData,
    replay,
    tags_from_json,
    tags_to_json,
)
from recommender.ranker import Ranker, TrainingData, build_training
from recommender.signals import ContextUpdater, UserContext
from recommender.standin import QueryAsTagTagger

__all__ = [
    "FEATURES",
    "SYSTEMS",
    "CatalogIndex",
    "ContextUpdater",
    "Feed",
    "FeedBuilder",
    "FeedItem",
    "PassThroughFilter",
    "QueryAsTagTagger",
    "Ranker",
    "RecommenderConfig",
    "RequestContext",
    "SearchTagging",
    "SearchTags",
    "TrainingData",
    "UserContext",
    "WorldData",
    "build_training",
    "evaluate",
    "replay",
    "tags_from_json",
    "tags_to_json",
]

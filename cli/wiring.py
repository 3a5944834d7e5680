"""Wires the stages together for the CLI: world data, the topic filter, the tagger, the ranker."""

from __future__ import annotations

import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from api.services import RateLimiter, Services, parse_arms
from classifier import TopicClassifier, TopicFilter
from clipfeed.errors import ClipfeedError
from clipfeed.protocols import IntentTagger
from clipfeed.settings import Settings, load_settings
from recommender import (
    CatalogIndex,
    ContextUpdater,
    FeedBuilder,
    QueryAsTagTagger,
    Ranker,
    RecommenderConfig,
    SearchTagging,
    WorldData,
    build_training,
)
from recommender.candidates import TagVectorCache
from recommender.evaluate import split_time


def shipped_ranker_dir() -> Path:
    return Path(str(resources.files("recommender") / "shipped"))


@dataclass
class Stack:
    world: WorldData
    catalog: CatalogIndex
    tagging: SearchTagging
    cfg: RecommenderConfig
    split: float


def make_tagger(kind: str = "auto") -> IntentTagger:
    """``student`` (the shipped distilled tagger), ``standin`` (query text as tags, a baseline), or
    ``auto``: the student when its artifact is present."""
    if kind not in ("auto", "student", "standin"):
        raise ClipfeedError(f"tagger {kind!r}: expected auto, student or standin")
    from cli.tagger import load_student, shipped

    if kind == "standin" or (kind == "auto" and not (shipped("student") / "adapter_model.safetensors").exists()):
        return QueryAsTagTagger()
    tagger: IntentTagger = load_student(None, persist=True)
    return tagger


def load_stack(
    world_dir: Path,
    skip_invalid: bool = False,
    classifier_dir: Path | None = None,
    tagger: str | None = None,
    prefetch: bool = True,
    progress: bool = False,
) -> Stack:
    if not world_dir.is_dir():
        raise ClipfeedError(f"{world_dir}: not a world directory (build one with `clipfeed world build`)")
    world = WorldData.load(world_dir, skip_invalid=skip_invalid)
    clf = TopicClassifier.load(classifier_dir)
    catalog = CatalogIndex(world.clips, world.taxonomy, clf)
    cfg = RecommenderConfig()
    split = split_time(world, cfg)
    # Quality statistics only from events before the evaluation split (no peeking at the future).
    catalog.fit_stats(e for e in world.events if e.ts.timestamp() < split)
    tagging = SearchTagging(make_tagger(tagger or load_settings().tagger), TopicFilter(clf, world.taxonomy))
    if prefetch:  # every search of the world, tagged once in batches (and kept on disk by the student)
        searches = ((q.query, [d.title for d in q.clicked_docs]) for log in world.users.values() for q in log.queries)
        tagging.prefetch(searches, progress=progress)
    return Stack(world, catalog, tagging, cfg, split)


def train_ranker(
    stack: Stack, cfg: RecommenderConfig | None = None, progress: bool = False
) -> tuple[Ranker, dict[str, float]]:
    """Trains LambdaRank on the stack's world; returns the ranker and timings (features, LightGBM)."""
    cfg = cfg or stack.cfg
    t0 = time.perf_counter()
    data = build_training(
        stack.catalog,
        stack.tagging,
        sorted(stack.world.users.items()),
        cfg,
        TagVectorCache(stack.catalog),
        progress=progress,
    )
    t1 = time.perf_counter()
    ranker = Ranker.train(data, cfg, stack.split)
    timing = {
        "impressions": data.rows,
        "feature_seconds": round(t1 - t0, 2),
        "lightgbm_seconds": round(time.perf_counter() - t1, 2),
    }
    return ranker, timing


def load_ranker(model: Path | None) -> Ranker | None:
    """The given model; else the shipped one if present; else None (the prior score ranks)."""
    if model is not None:
        return Ranker.load(model)
    shipped = shipped_ranker_dir()
    return Ranker.load(shipped) if (shipped / "ranker.json").exists() else None


def feed_builder(stack: Stack, ranker: Ranker | None) -> FeedBuilder:
    return FeedBuilder(stack.catalog, ranker, stack.cfg)


def build_services(
    settings: Settings, world_dir: Path, model: Path | None = None, classifier_dir: Path | None = None
) -> Services:
    """Everything the API holds in memory, from a world and the shipped (or given) models."""
    # a server tags a world user's searches when that user is first seen, not all at start-up
    stack = load_stack(world_dir, classifier_dir=classifier_dir, prefetch=False)
    cands = stack.cfg.candidates
    stack.cfg = stack.cfg.model_copy(
        update={
            "candidates": cands.model_copy(
                update={
                    "min_candidates": settings.min_candidates,
                    "max_candidates": max(cands.max_candidates, settings.min_candidates),
                }
            )
        }
    )
    ranker = load_ranker(model)
    return Services(
        settings=settings,
        world=stack.world,
        catalog=stack.catalog,
        tagging=stack.tagging,
        builder=feed_builder(stack, ranker),
        updater=ContextUpdater(stack.cfg.signals),
        limiter=RateLimiter(settings.rate_limit_per_s, settings.rate_limit_burst),
        arms=parse_arms(settings.experiment_arms),
        world_path=world_dir,
    )

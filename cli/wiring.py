"""Wires the stages together for the CLI: world data, the topic filter, the tagger, the ranker."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from scipy import sparse

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
    TrainingData,
    WorldData,
    build_training,
)
from recommender.candidates import TagVectorCache
from recommender.collab import COLLAB_FOLDS as COLLAB_FOLDS  # re-exported for the Ray trainer
from recommender.collab import CollabConfig, CollabModel
from recommender.collab import fold_of as fold_of  # re-exported for the Ray trainer
from recommender.evaluate import Truth, split_time
from recommender.offline import history_curve


def shipped_ranker_dir() -> Path:
    return Path(str(resources.files("recommender") / "shipped"))


@dataclass
class Stack:
    world: WorldData
    catalog: CatalogIndex
    tagging: SearchTagging
    cfg: RecommenderConfig
    split: float
    # (split, users x clips positives before it, their users), built on first use: a training run
    # fits six collaborative models (one per held-out fold, one to serve), each on rows of it
    _positives: tuple[float, sparse.csr_matrix, list[str]] | None = field(default=None, repr=False, compare=False)

    def positives(self) -> tuple[sparse.csr_matrix, list[str]]:
        """The world's positive clip events before the split as ``CollabModel.interactions`` builds them."""
        if self._positives is None or self._positives[0] != self.split:
            before = (e for e in self.world.events if e.ts.timestamp() < self.split)
            m, users = CollabModel.interactions(before, self.catalog.ids, self.cfg.signals.meaningful_watch_ratio)
            self._positives = (self.split, m, users)
        return self._positives[1], self._positives[2]


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


def fit_collab(
    stack: Stack, cfg: CollabConfig | None = None, progress: bool = False, exclude: Collection[str] = ()
) -> CollabModel:
    """The collaborative models from the world's clip events before the evaluation split (without
    the users in ``exclude``)."""
    user_items, users = stack.positives()
    if exclude:  # the others' rows: the matrix their events alone would build
        skip = set(exclude)
        user_items = user_items[[r for r, u in enumerate(users) if u not in skip]]
    return CollabModel.fit_matrix(user_items, stack.catalog.ids, cfg, progress=progress)


class HeldOutCollab:
    """Per fold of users (``fold_of``), the collaborative model fitted without them, fitted on first
    use: where a training session's collaborative features come from (``train_ranker`` and its
    distributed twin, ``cli.scale.WorldGroups``)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.models: dict[int, CollabModel] = {}

    def fold(self, k: int) -> CollabModel:
        if k not in self.models:
            exclude = [u for u in self.stack.world.users if fold_of(u, COLLAB_FOLDS) == k]
            self.models[k] = fit_collab(self.stack, exclude=exclude)
        return self.models[k]

    def for_user(self, user_id: str) -> CollabModel:
        return self.fold(fold_of(user_id, COLLAB_FOLDS))


def train_ranker(
    stack: Stack, cfg: RecommenderConfig | None = None, progress: bool = False, collab: bool = True
) -> tuple[Ranker, dict[str, float]]:
    """Trains LambdaRank on the stack's world (with the collaborative features of a model fitted on
    the same world unless ``collab`` is False: the content-only ranker); returns the ranker and
    timings (features, LightGBM).

    The collaborative features of a training session must not know its outcome: a model fitted on
    all events has seen the user like the very clips the session shows, and the booster would learn
    that leak (co-engagement took ~60 % of the gain before this). So each fold of users gets its
    features from a model fitted without them, as a served user's new candidates get theirs from
    other users' likes; the model shipped for serving is fitted on everyone."""
    cfg = cfg or stack.cfg
    t0 = time.perf_counter()
    users = sorted(stack.world.users.items())
    vectors = TagVectorCache(stack.catalog)
    vectors.warm(stack.tagging.known_tags())
    data = TrainingData()
    if collab:
        held_out = HeldOutCollab(stack)
        for k in range(COLLAB_FOLDS):
            fold = [(u, log) for u, log in users if fold_of(u, COLLAB_FOLDS) == k]
            model = held_out.fold(k)
            part = build_training(stack.catalog, stack.tagging, fold, cfg, vectors, progress=progress, collab=model)
            data.extend(part)
        served: CollabModel | None = fit_collab(stack, progress=progress)
    else:
        data = build_training(stack.catalog, stack.tagging, users, cfg, vectors, progress=progress)
        served = None
    t1 = time.perf_counter()
    ranker = Ranker.train(data, cfg, stack.split, served)
    timing = {
        "impressions": data.rows,
        "feature_seconds": round(t1 - t0, 2),
        "lightgbm_seconds": round(time.perf_counter() - t1, 2),
    }
    return ranker, timing


def content_ranker(ranker: Ranker | None) -> Ranker | None:
    """The content-only system to compare a hybrid ranker with: the hybrid without its collaborative
    residual; None when ``ranker`` has none."""
    return ranker.content_only() if ranker is not None and ranker.collab is not None else None


def hybrid_curve(
    stack: Stack, ranker: Ranker | None, content: Ranker | None, max_users: int | None = None, progress: bool = False
) -> dict[str, dict[str, dict[str, Any]]]:
    """NDCG@10 by prior clip events for content / cf / hybrid (:func:`recommender.offline.history_curve`)
    on the warm users of one fold, with a collaborative model fitted without them."""
    if ranker is None or ranker.collab is None:
        return {}
    truth = Truth.load(stack.world)
    users = sorted(u for u, t in truth.users.items() if not t["cold"] and fold_of(u) == 0 and u in stack.world.users)
    users = users[:max_users] if max_users else users
    held_out = fit_collab(stack, ranker.collab.cfg, exclude=users)
    full = FeedBuilder(stack.catalog, ranker, stack.cfg, collab=held_out)
    content_only = FeedBuilder(stack.catalog, content or ranker, stack.cfg, full.vectors, use_collab=False)
    return history_curve(stack.world, stack.catalog, stack.tagging, full, content_only, users, progress=progress)


def load_ranker(model: Path | None, stack: Stack | None = None) -> Ranker | None:
    """The given model; else the shipped one if present; else None (the prior score ranks). With
    ``stack``: bound to that world's catalog (:func:`for_catalog`)."""
    if model is not None:
        ranker: Ranker | None = Ranker.load(model)
    else:
        shipped = shipped_ranker_dir()
        ranker = Ranker.load(shipped) if (shipped / "ranker.json").exists() else None
    return for_catalog(stack, ranker) if stack is not None and ranker is not None else ranker


def for_catalog(stack: Stack, ranker: Ranker) -> Ranker:
    """The ranker with a collaborative model of this world's catalog. Clip ids mean nothing across
    catalogs (another world's ``c000010`` is another clip), so a model fitted on another catalog is
    refitted from this world's events before the split (under a second here), with the same config;
    a world with no positive events keeps the content part only."""
    if ranker.collab is None or ranker.collab.ids == stack.catalog.ids:
        return ranker
    try:
        collab = fit_collab(stack, ranker.collab.cfg)
    except ClipfeedError:
        return ranker.content_only()
    return Ranker(ranker.booster, ranker.meta, collab, ranker.residual)


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
    if settings.ann_dir is not None:
        from recommender.ann import ClipVectorIndex

        stack.catalog.attach_ann(ClipVectorIndex.load(settings.ann_dir))
    ranker = load_ranker(model, stack)
    if ranker is not None and settings.compile_ranker:
        ranker.compile(settings.cache_dir / "compiled")
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

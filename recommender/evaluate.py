"""Offline evaluation on a world: cold-start and warm users, every baseline in the same run.

Judgments come from the world's ground truth (``truth/``): the documented relevance of each clip to
the user's latent interests (``docs/world.md``), graded 0-3 over the whole catalog; relevant means
grade >= 2. Cold users' contexts hold their searches only; warm users' contexts hold everything
before the split time, and clips they were shown before it are excluded from their judgments.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
from tqdm import tqdm

from clipfeed.text import tokens
from clipfeed.world.events import oracle_relevance
from recommender.catalog import CatalogIndex
from recommender.collab import CollabModel, cf_ranking
from recommender.config import RecommenderConfig
from recommender.feed import FeedBuilder
from recommender.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    coverage,
    intra_list_diversity,
    ndcg_at_k,
    novelty,
    recall_at_k,
    topic_leak,
)
from recommender.pipeline import PassThroughFilter, SearchTagging, UserLog, WorldData, replay
from recommender.ranker import Ranker
from recommender.signals import ContextUpdater

# ``cf``: collaborative only (popular clips for a user without liked clips); ``content``: the full
# system without collaborative signals (its own ranker, trained without them); ``full``: the hybrid.
SYSTEMS = ("random", "popularity", "raw_keywords", "tags_unfiltered", "cf", "content", "full")
DEPTH = 50


@dataclass
class Truth:
    users: dict[str, dict[str, Any]]
    clip_entity: dict[str, str | None]

    @classmethod
    def load(cls, world: WorldData) -> Truth:
        users = {}
        for line in (world.path / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines():
            u = json.loads(line)
            users[u["user_id"]] = u
        ents = {}
        for line in (world.path / "truth" / "clips.jsonl").read_text(encoding="utf-8").splitlines():
            c = json.loads(line)
            ents[c["clip_id"]] = c["entity"]
        return cls(users, ents)


def split_time(world: WorldData, cfg: RecommenderConfig) -> float:
    start = min(e.ts for e in world.events) if world.events else None
    if start is None:
        return float("inf")
    day0 = start.replace(hour=0, minute=0, second=0)
    return (day0 + timedelta(days=cfg.ranker.valid_after_day)).timestamp()


def user_gains(catalog: CatalogIndex, truth: Truth, user: dict[str, Any], exclude: set[str]) -> dict[str, float]:
    interests = [(i["topic"], i["entity"]) for i in user["interests"]]
    tier1 = catalog.taxonomy.tier1_of
    lang = user["language"]
    out = {}
    for i, cid in enumerate(catalog.ids):
        if cid in exclude:
            continue
        clip_lang = "ko" if catalog.hangul[i] > 0.5 else "en"
        g = oracle_relevance(interests, lang, catalog.topic[i], truth.clip_entity.get(cid), clip_lang, tier1)
        if g > 0:
            out[cid] = g
    return out


def _popular(catalog: CatalogIndex, exclude: set[str], n: int) -> list[str]:
    out = []
    for i in catalog.popularity_rank:
        cid = catalog.ids[int(i)]
        if cid not in exclude:
            out.append(cid)
            if len(out) >= n:
                break
    return out


def raw_keyword_ranking(
    catalog: CatalogIndex, searches: Iterable[str], exclude: set[str], n: int
) -> list[tuple[str, float]]:
    """The raw-keyword baseline (no tagger, no topic filter): ``(clip_id, score)`` of the ``n`` clips
    whose text shares the most idf-weighted words with the searches (one text per search: its query
    and clicked titles), ties broken by views, topped up with popular clips (score 0).

    >>> from datetime import UTC, datetime
    >>> from clipfeed.records import Clip
    >>> from clipfeed.taxonomy import Taxonomy
    >>> def clip(i: str, title: str, views: int) -> Clip:
    ...     return Clip(clip_id=i, title=title, creator_id="cr", language="ko", topics=["533"], duration_s=30,
    ...                 published_at=datetime(2026, 3, 1, tzinfo=UTC), views=views)
    >>> catalog = CatalogIndex([clip("a", "아르헨티나 축구", 900), clip("b", "이과수 폭포 여행", 10),
    ...                         clip("c", "오타니 홈런", 50)], Taxonomy.load())
    >>> [c for c, _ in raw_keyword_ranking(catalog, ["볼리비아 비자", "이과수 폭포"], set(), 3)]
    ['b', 'a', 'c']
    """
    words = [w for text in searches for w in tokens(text)]
    scores = catalog.keyword_scores(words)
    order = sorted(scores.items(), key=lambda kv: (-kv[1], -catalog.log_views[kv[0]]))
    ranked = [(catalog.ids[i], round(s, 4)) for i, s in order if catalog.ids[i] not in exclude][:n]
    have = {c for c, _ in ranked}
    fill = [c for c in _popular(catalog, exclude | have, n) if c not in have][: n - len(ranked)]
    return ranked + [(c, 0.0) for c in fill]


def _raw_keywords(catalog: CatalogIndex, log: UserLog, exclude: set[str], n: int, until: float) -> list[str]:
    texts = (" ".join([q.query, *(d.title for d in q.clicked_docs)]) for q in log.queries if q.ts.timestamp() < until)
    return [c for c, _ in raw_keyword_ranking(catalog, texts, exclude, n)]


def cf_feed(
    model: CollabModel | None, catalog: CatalogIndex, liked: dict[str, float], exclude: set[str], n: int
) -> list[str]:
    """The ``cf`` baseline's feed: collaborative ranking, topped up with popular clips."""
    out = cf_ranking(model, liked, exclude, n)
    have = set(out)
    return out + [c for c in _popular(catalog, exclude | have, n) if c not in have][: n - len(out)]


@dataclass
class EvalRun:
    """Per-user metric values and top-k feeds of one offline evaluation, before averaging (what
    bootstrap intervals over users and per-user drill-downs need)."""

    per_user: dict[str, dict[str, dict[str, list[float]]]]  # population -> system -> metric -> values
    feeds: dict[str, dict[str, list[list[str]]]]  # population -> system -> top-k feed per user
    users: dict[str, list[str]]  # population -> the users evaluated (same order as the values)
    catalog_size: int
    setup: dict[str, Any]


def collect(
    world: WorldData,
    catalog: CatalogIndex,
    tagging: SearchTagging,
    ranker: Ranker | None,
    cfg: RecommenderConfig,
    *,
    max_users: int | None = None,
    seed: int = 0,
    k: int = 10,
    progress: bool = True,
    only: Collection[str] | None = None,
    content_ranker: Ranker | None = None,
) -> EvalRun:
    """Every system's feed for every judged user of both populations, scored per user (``only``:
    just these users, e.g. one case study). ``content_ranker``: the ranker trained without
    collaborative features for the ``content`` system (default: ``ranker`` with them switched off)."""
    truth = Truth.load(world)
    updater = ContextUpdater(cfg.signals)
    unfiltered = SearchTagging(tagging.tagger, PassThroughFilter())
    full = FeedBuilder(catalog, ranker, cfg, None)
    content = FeedBuilder(catalog, content_ranker or ranker, cfg, full.vectors, use_collab=False)
    plain = FeedBuilder(catalog, None, cfg, full.vectors, use_collab=False)
    split = split_time(world, cfg)
    rng = np.random.default_rng(seed)
    views = catalog.log_views
    pop_share = np.expm1(views) / max(float(np.expm1(views).sum()), 1.0)
    popularity = {cid: float(pop_share[i]) for i, cid in enumerate(catalog.ids)}
    topic_of = {cid: catalog.topic[i] for i, cid in enumerate(catalog.ids)}
    tier1 = catalog.taxonomy.tier1_of
    run = EvalRun({}, {}, {}, len(catalog.ids), {})
    for population in ("cold", "warm"):
        ids = sorted(
            u for u, t in truth.users.items() if t["cold"] == (population == "cold") and (only is None or u in only)
        )
        if max_users is not None:
            ids = ids[:max_users]
        per_user: dict[str, dict[str, list[float]]] = {s: {} for s in SYSTEMS}
        feeds: dict[str, list[list[str]]] = {s: [] for s in SYSTEMS}
        judged: list[str] = []
        for uid in tqdm(ids, desc=f"eval: {population}", unit="user", disable=not progress):
            log = world.users.get(uid, UserLog())
            until = float("inf") if population == "cold" else split
            ctx = replay(updater, catalog, tagging, log, until=until)
            seen = set(ctx.seen)
            gains = user_gains(catalog, truth, truth.users[uid], seen)
            relevant = {c for c, g in gains.items() if g >= 2.0}
            if not relevant:
                continue
            judged.append(uid)
            ranked: dict[str, list[str]] = {}
            pool = [c for c in catalog.ids if c not in seen]
            ranked["random"] = [pool[int(j)] for j in rng.choice(len(pool), size=min(DEPTH, len(pool)), replace=False)]
            ranked["popularity"] = _popular(catalog, seen, DEPTH)
            ranked["raw_keywords"] = _raw_keywords(catalog, log, seen, DEPTH, until)
            ctx_plain = replay(updater, catalog, unfiltered, log, until=until)
            ranked["tags_unfiltered"] = [
                it.clip_id for it in plain.build(ctx_plain, DEPTH, explain=False, user_key=uid).items
            ]
            ranked["cf"] = cf_feed(full.collab, catalog, ctx.liked, seen, DEPTH)
            ranked["content"] = [it.clip_id for it in content.build(ctx, DEPTH, explain=False, user_key=uid).items]
            ranked["full"] = [it.clip_id for it in full.build(ctx, DEPTH, explain=False, user_key=uid).items]
            interests = [(i["topic"], i["entity"]) for i in truth.users[uid]["interests"]]
            for system, feed in ranked.items():
                top = feed[:k]
                m = per_user[system]
                m.setdefault("ndcg@10", []).append(ndcg_at_k(feed, gains, k))
                m.setdefault("map@10", []).append(average_precision_at_k(feed, relevant, k))
                m.setdefault("recall@50", []).append(recall_at_k(feed, relevant, DEPTH))
                m.setdefault("diversity", []).append(intra_list_diversity(top, topic_of.__getitem__))
                m.setdefault("novelty", []).append(novelty(top, popularity))
                m.setdefault("topic_leak", []).append(
                    topic_leak(top, topic_of.__getitem__, truth.clip_entity.get, interests, tier1)
                )
                feeds[system].append(top)
        run.per_user[population], run.feeds[population], run.users[population] = per_user, feeds, judged
    run.setup = {
        "tagger": getattr(tagging.tagger, "name", type(tagging.tagger).__name__),
        "ranker": "lambdarank" if ranker is not None else "heuristic",
        "collab": full.collab is not None,
        "k": k,
        "depth": DEPTH,
        "judgments": "world ground truth relevance (docs/world.md), relevant = grade >= 2",
    }
    return run


def evaluate(
    world: WorldData,
    catalog: CatalogIndex,
    tagging: SearchTagging,
    ranker: Ranker | None,
    cfg: RecommenderConfig,
    *,
    max_users: int | None = None,
    seed: int = 0,
    k: int = 10,
    progress: bool = True,
    content_ranker: Ranker | None = None,
) -> dict[str, Any]:
    """Mean metrics per population and system (plus a bootstrap interval of NDCG@10)."""
    run = collect(
        world,
        catalog,
        tagging,
        ranker,
        cfg,
        max_users=max_users,
        seed=seed,
        k=k,
        progress=progress,
        content_ranker=content_ranker,
    )
    results: dict[str, Any] = {p: _summarise(run.per_user[p], run.feeds[p], run.catalog_size) for p in ("cold", "warm")}
    results["setup"] = run.setup
    return results


def _summarise(
    per_user: dict[str, dict[str, list[float]]], feeds: dict[str, list[list[str]]], catalog_size: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for system, metrics in per_user.items():
        row: dict[str, Any] = {name: round(float(np.mean(v)), 4) if v else 0.0 for name, v in metrics.items()}
        row["coverage"] = round(coverage(feeds[system], catalog_size), 4)
        row["users"] = len(metrics.get("ndcg@10", []))
        lo, hi = bootstrap_ci(metrics.get("ndcg@10", []))
        row["ndcg@10_ci95"] = [round(lo, 4), round(hi, 4)]
        out[system] = row
    return out


def ratio(results: dict[str, Any], population: str, metric: str, a: str, b: str) -> float:
    denom = results[population][b][metric]
    return results[population][a][metric] / denom if denom else float("inf")


__all__: Sequence[str] = (
    "SYSTEMS",
    "EvalRun",
    "Truth",
    "collect",
    "evaluate",
    "ratio",
    "raw_keyword_ranking",
    "split_time",
    "user_gains",
)

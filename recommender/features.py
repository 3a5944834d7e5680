"""The ranker's feature schema and its computation for (user context, candidate clip, request)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipfeed.text import tokens
from recommender.candidates import TagVectorCache
from recommender.catalog import CatalogIndex, OverlapWeights
from recommender.collab import CollabModel
from recommender.signals import UserContext

FEATURES: tuple[str, ...] = (
    "intent_share",
    "search_share",
    "doc_click_share",
    "watch_share",
    "skip_share",
    "engage_share",
    "skip_raw",
    "tier1_intent_share",
    "sibling_intent_share",
    "tier1_watch_share",
    "tier2_intent_match",
    "tag_sim",
    "tag_keyword",
    "tag_sim_same_topic",
    "tag_keyword_same_topic",
    "clip_coverage",
    "entity_match",
    "entity_other",
    "creator_watch",
    "creator_skip",
    "creator_engage",
    "creator_follow",
    "cf_score",
    "coengage",
    "liked_sim",
    "log_views",
    "quality",
    "age_days",
    "duration_s",
    "lang_match",
    "history_len",
    "n_searches",
    "hour",
    "device",
)
COL = {f: j for j, f in enumerate(FEATURES)}
DEVICES = {"unknown": 0, "ios": 1, "android": 2, "web": 3}


@dataclass(frozen=True)
class RequestContext:
    hour: int = 12
    device: str = "unknown"


# the per-signal topic shares, in the order of their feature columns (search_share .. engage_share)
_SIGNALS = ("search", "doc_click", "watch", "skip", "engage")


@dataclass
class TagMatch:
    """How a clip matches the user's kept tags: by embedding and by words, overall and restricted to
    tags whose filtered topic is the clip's own topic (the tag -> topic -> clip agreement)."""

    sim: np.ndarray
    sim_same_topic: np.ndarray
    keyword: np.ndarray
    keyword_same_topic: np.ndarray
    best_tag: list[str | None]
    coverage: np.ndarray  # the idf share of the clip's words that the user's tags use
    # 1 where the user's tags of the clip's topic name an entity of the clip (``EntityIndex``), and
    # where they name entities of that topic but none of the clip's (a clip about another entity)
    entity_match: np.ndarray
    entity_other: np.ndarray


@dataclass
class UserSide:
    """The user's half of the features, the same for every clip of one feed: computed once per feed
    (``user_side``) and reused by ``tag_matches`` and ``compute``, and after the response by the
    served log for an exploration pick that still lacks its row (recomputing it cost ~0.4 ms a feed).
    Read-only once built."""

    tags: list[str]
    tag_topic: np.ndarray  # each tag's topic as a catalog code (-1: a topic no clip has)
    tag_vectors: np.ndarray | None  # None without an encoder
    tag_words: list[set[str]]
    tag_overlap: OverlapWeights  # the tags' word weights for token overlaps
    # (entity clusters x P) the clusters the user's tags of each of their topics name, by the topics'
    # catalog codes in ``named_topic`` (sorted)
    named: np.ndarray
    named_topic: np.ndarray
    totals: dict[str, float]  # per signal, over all the user's topics
    intent_total: float
    t1_intent: dict[str, float]
    t1_watch: dict[str, float]
    history: float
    n_searches: float
    creator_codes: np.ndarray  # the user's creators in the catalog, by code (sorted)
    creator_values: np.ndarray  # their (watch, skip, engage, follow)


def user_side(ctx: UserContext, catalog: CatalogIndex, vectors: TagVectorCache) -> UserSide:
    tags = list(ctx.tags)
    tag_topic = np.array([catalog.topic_code.get(ctx.tags[t].topic, -1) for t in tags], dtype=np.int64)
    tag_vectors = vectors.get(tags) if tags and catalog.vectors is not None else None
    # one pass over the user's topics for the totals, then each share as value / total (0 without
    # any), the same floats as per-signal share dicts, built only for the topics candidates have
    totals = dict.fromkeys(_SIGNALS, 0.0)
    for aff in ctx.topics.values():
        for sig in _SIGNALS:
            totals[sig] += getattr(aff, sig)
    intent_total = totals["search"] + totals["doc_click"]
    tax = catalog.taxonomy
    t1_intent: dict[str, float] = {}
    t1_watch: dict[str, float] = {}
    for t, aff in ctx.topics.items():
        t1 = tax.tier1_of(t) if t in tax else t
        t1_intent[t1] = t1_intent.get(t1, 0.0) + ((aff.search + aff.doc_click) / intent_total if intent_total else 0.0)
        t1_watch[t1] = t1_watch.get(t1, 0.0) + (aff.watch / totals["watch"] if totals["watch"] > 0 else 0.0)
    tag_words = [set(tokens(t)) for t in tags]
    tag_weight = np.array([ctx.tags[t].weight for t in tags], dtype=np.float64)
    named_topic, named = _named_entities(catalog, tag_words, tag_topic, tag_weight)
    followed = sorted(
        ((catalog.creator_code[c], a) for c, a in ctx.creators.items() if c in catalog.creator_code),
        key=lambda kv: kv[0],
    )
    return UserSide(
        tags,
        tag_topic,
        tag_vectors,
        tag_words,
        catalog.overlap_weights(tag_words),
        named,
        named_topic,
        totals,
        intent_total,
        t1_intent,
        t1_watch,
        math.log1p(ctx.clip_events),
        float(len(ctx.searches)),
        np.array([code for code, _ in followed], dtype=np.int64),
        np.array([(a.watch, a.skip, a.engage, a.follow) for _, a in followed], dtype=np.float32).reshape(-1, 4),
    )


def _named_entities(
    catalog: CatalogIndex, tag_words: list[set[str]], tag_topic: np.ndarray, tag_weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(topic codes, entity clusters x topics): the entities the user's tags name, per topic of the
    tags. A tag that is nothing but an entity's name ("페루", "뉴진스") gets its topic from the topic
    model's guess, which for a bare name is often one of the entity's other topics (Peru's national
    parks for a Peru travel planner, the K-pop group's music for a dance-challenge fan). Such a tag
    names its entity in the topic, among those the entity has clips in, where the user's other tags
    weigh most; only when none of them is the user's does the guess stand. An entity another tag
    names already is left as that tag has it."""
    entities = catalog.entities
    codes = sorted({int(c) for c in tag_topic.tolist() if c >= 0})
    named = np.zeros((max(len(entities), 1), len(codes)), dtype=np.float32)
    if not codes or not len(entities):
        return np.asarray(codes, dtype=np.int64), named
    col = {c: p for p, c in enumerate(codes)}
    weight = np.zeros(len(codes))  # the user's tag weight per topic, bare names left out
    bare: list[tuple[int, np.ndarray]] = []
    for ws, c, w in zip(tag_words, tag_topic.tolist(), tag_weight.tolist(), strict=True):
        if c < 0:
            continue
        hits = entities.named([ws])
        if hits.any() and entities.is_name(ws):
            bare.append((col[c], hits))
            continue
        weight[col[c]] += w
        if hits.any():
            named[hits, col[c]] = 1.0
    elsewhere = named.any(axis=1)
    for p, hits in bare:
        for j in np.flatnonzero(hits & ~elsewhere).tolist():
            mine = [col[t] for t in catalog.entity_topics[j].tolist() if t in col]
            best = max(mine, key=lambda q: weight[q], default=None)
            named[j, best if best is not None and weight[best] > 0 else p] = 1.0
    return np.asarray(codes, dtype=np.int64), named


def tag_matches(
    ctx: UserContext, catalog: CatalogIndex, vectors: TagVectorCache, idx: list[int], side: UserSide | None = None
) -> TagMatch:
    side = side if side is not None else user_side(ctx, catalog, vectors)
    tags = side.tags
    n = len(idx)
    sim, sim_same, kw, kw_same = (np.zeros(n, dtype=np.float32) for _ in range(4))
    best: list[str | None] = [None] * n
    if not tags or not idx:
        zero = np.zeros(n, dtype=np.float32)
        return TagMatch(sim, sim_same, kw, kw_same, best, zero, zero.copy(), zero.copy())
    at = np.asarray(idx, dtype=np.int64)
    same = catalog.topic_codes[at][:, None] == side.tag_topic[None, :]
    if catalog.vectors is not None and side.tag_vectors is not None:
        sims = catalog.vectors[at] @ side.tag_vectors.T
        sim = sims.max(axis=1).astype(np.float32)
        sim_same = np.where(same, sims, 0.0).max(axis=1).astype(np.float32)
        best = [tags[j] for j in (sims + same).argmax(axis=1).tolist()]
    overlap, coverage = catalog.token_match(idx, side.tag_words, side.tag_overlap)
    kw = overlap.max(axis=1).astype(np.float32)
    kw_same = np.where(same, overlap, 0.0).max(axis=1).astype(np.float32)
    ent_match, ent_other = _entity_match(catalog, side, at)
    return TagMatch(sim, sim_same, kw, kw_same, best, coverage, ent_match, ent_other)


def _entity_match(catalog: CatalogIndex, side: UserSide, at: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(at)
    match, other = np.zeros(n, dtype=np.float32), np.zeros(n, dtype=np.float32)
    p = len(side.named_topic)
    if not p:
        return match, other
    codes = catalog.topic_codes[at]
    where = np.minimum(np.searchsorted(side.named_topic, codes), p - 1)
    hit = np.flatnonzero(side.named_topic[where] == codes)  # clips of a topic the user has tags of
    if not len(hit):
        return match, other
    col = where[hit]
    named = np.asarray(catalog.entities.clip_entities[at[hit]] @ side.named)[np.arange(len(hit)), col] > 0
    match[hit[named]] = 1.0
    # the topic's tags name some entity, the clip has entities, and none of them is named
    any_named = side.named.sum(axis=0)[col] > 0
    other[hit[~named & any_named & catalog.has_entity[at[hit]]]] = 1.0
    return match, other


def compute(
    ctx: UserContext,
    catalog: CatalogIndex,
    vectors: TagVectorCache,
    idx: list[int],
    req: RequestContext | None = None,
    collab: CollabModel | None = None,
    match: TagMatch | None = None,
    side: UserSide | None = None,
) -> np.ndarray:
    """Feature matrix (len(idx) x len(FEATURES)), float32, in schema order. Without ``collab`` (or
    for a user with no liked clips) the collaborative features are 0, as for a cold user. ``match``
    and ``side``: ``tag_matches`` for these ``idx`` and ``user_side`` when the caller has them (the
    feed builder computes each once per feed)."""
    req = req or RequestContext()
    side = side if side is not None else user_side(ctx, catalog, vectors)
    m = match if match is not None else tag_matches(ctx, catalog, vectors, idx, side)
    topics = ctx.topics
    totals, intent_total, t1_intent, t1_watch = side.totals, side.intent_total, side.t1_intent, side.t1_watch
    rows = np.zeros((len(idx), len(FEATURES)), dtype=np.float32)
    if not idx:
        return rows
    # The user's side of the topic features is computed once per distinct topic among the
    # candidates, then gathered by each row's topic code; the creator features likewise.
    at = np.asarray(idx, dtype=np.int64)
    present = np.zeros(len(catalog.topic_names), dtype=bool)
    present[catalog.topic_codes[at]] = True
    codes = np.flatnonzero(present)
    of_row = (np.cumsum(present) - 1)[catalog.topic_codes[at]]
    topic_rows: list[tuple[float, ...]] = []
    for code in codes.tolist():
        topic, t1 = catalog.topic_names[code], catalog.topic_tier1[code]
        a = topics.get(topic)
        share = [getattr(a, sig) / totals[sig] if a is not None and totals[sig] > 0 else 0.0 for sig in _SIGNALS]
        own_intent = (a.search + a.doc_click) / intent_total if a is not None and intent_total else 0.0
        topic_rows.append(
            (
                own_intent,
                *share,
                math.log1p(a.skip) if a else 0.0,
                t1_intent.get(t1, 0.0),
                t1_intent.get(t1, 0.0) - own_intent,
                t1_watch.get(t1, 0.0),
                1.0 if own_intent > 0 else 0.0,
            )
        )
    rows[:, 0:11] = np.asarray(topic_rows, dtype=np.float32)[of_row]
    rows[:, COL["tag_sim"]] = m.sim
    rows[:, COL["tag_keyword"]] = m.keyword
    rows[:, COL["tag_sim_same_topic"]] = m.sim_same_topic
    rows[:, COL["tag_keyword_same_topic"]] = m.keyword_same_topic
    rows[:, COL["clip_coverage"]] = m.coverage
    rows[:, COL["entity_match"]] = m.entity_match
    rows[:, COL["entity_other"]] = m.entity_other
    mine = side.creator_codes
    if len(mine):
        theirs = catalog.creator_codes[at]
        where = np.minimum(np.searchsorted(mine, theirs), len(mine) - 1)
        hit = mine[where] == theirs
        rows[hit, COL["creator_watch"] : COL["creator_follow"] + 1] = side.creator_values[where[hit]]
    if collab is not None and ctx.liked:
        cs = collab.scores(ctx.liked, catalog.ids, idx)
        rows[:, COL["cf_score"]] = cs.cf_score
        rows[:, COL["coengage"]] = cs.coengage
        liked = [catalog.pos[c] for c in ctx.liked if c in catalog.pos]
        if liked and catalog.vectors is not None:
            # the clip-to-clip side of the hybrid: text similarity to the nearest clip the user liked
            rows[:, COL["liked_sim"]] = (catalog.vectors[idx] @ catalog.vectors[liked].T).max(axis=1)
    rows[:, COL["log_views"]] = catalog.log_views[at]
    rows[:, COL["quality"]] = catalog.quality[at]
    rows[:, COL["age_days"]] = catalog.age_days[at]
    rows[:, COL["duration_s"]] = catalog.duration[at]
    rows[:, COL["lang_match"]] = 1.0 - np.abs(ctx.hangul - catalog.hangul[at].astype(np.float64))
    rows[:, COL["history_len"]] = side.history
    rows[:, COL["n_searches"]] = side.n_searches
    rows[:, COL["hour"]] = float(req.hour)
    rows[:, COL["device"]] = float(DEVICES.get(req.device, 0))
    return rows

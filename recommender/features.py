"""The ranker's feature schema and its computation for (user context, candidate clip, request)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clipfeed.text import tokens
from recommender.candidates import TagVectorCache
from recommender.catalog import CatalogIndex
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


def tag_matches(ctx: UserContext, catalog: CatalogIndex, vectors: TagVectorCache, idx: list[int]) -> TagMatch:
    tags = list(ctx.tags)
    n = len(idx)
    sim, sim_same, kw, kw_same = (np.zeros(n, dtype=np.float32) for _ in range(4))
    best: list[str | None] = [None] * n
    if not tags or not idx:
        return TagMatch(sim, sim_same, kw, kw_same, best)
    # topics as catalog codes (-1: a topic no clip has, so it matches none)
    tag_topic = np.array([catalog.topic_code.get(ctx.tags[t].topic, -1) for t in tags], dtype=np.int64)
    at = np.asarray(idx, dtype=np.int64)
    same = catalog.topic_codes[at][:, None] == tag_topic[None, :]
    if catalog.vectors is not None:
        sims = catalog.vectors[at] @ vectors.get(tags).T
        sim = sims.max(axis=1).astype(np.float32)
        sim_same = np.where(same, sims, 0.0).max(axis=1).astype(np.float32)
        best = [tags[j] for j in (sims + same).argmax(axis=1).tolist()]
    overlap = catalog.token_overlap(idx, [set(tokens(t)) for t in tags])
    kw = overlap.max(axis=1).astype(np.float32)
    kw_same = np.where(same, overlap, 0.0).max(axis=1).astype(np.float32)
    return TagMatch(sim, sim_same, kw, kw_same, best)


def compute(
    ctx: UserContext,
    catalog: CatalogIndex,
    vectors: TagVectorCache,
    idx: list[int],
    req: RequestContext | None = None,
    collab: CollabModel | None = None,
    match: TagMatch | None = None,
) -> np.ndarray:
    """Feature matrix (len(idx) x len(FEATURES)), float32, in schema order. Without ``collab`` (or
    for a user with no liked clips) the collaborative features are 0, as for a cold user. ``match``:
    ``tag_matches`` for these ``idx`` when the caller has it (the feed builder reuses it)."""
    req = req or RequestContext()
    m = match if match is not None else tag_matches(ctx, catalog, vectors, idx)
    topics = ctx.topics
    # one pass over the user's topics for the totals, then each share as value / total (0 without
    # any), the same floats as per-signal share dicts, built only for the topics candidates have
    totals = dict.fromkeys(_SIGNALS, 0.0)
    for aff in topics.values():
        for sig in _SIGNALS:
            totals[sig] += getattr(aff, sig)
    intent_total = totals["search"] + totals["doc_click"]
    tax = catalog.taxonomy
    t1_intent: dict[str, float] = {}
    t1_watch: dict[str, float] = {}
    for t, aff in topics.items():
        t1 = tax.tier1_of(t) if t in tax else t
        t1_intent[t1] = t1_intent.get(t1, 0.0) + ((aff.search + aff.doc_click) / intent_total if intent_total else 0.0)
        t1_watch[t1] = t1_watch.get(t1, 0.0) + (aff.watch / totals["watch"] if totals["watch"] > 0 else 0.0)
    history = math.log1p(ctx.clip_events)
    n_searches = float(len(ctx.searches))
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
    rows[:, 11] = m.sim
    rows[:, 12] = m.keyword
    rows[:, 13] = m.sim_same_topic
    rows[:, 14] = m.keyword_same_topic
    followed = [(catalog.creator_code[c], a) for c, a in ctx.creators.items() if c in catalog.creator_code]
    if followed:
        followed.sort(key=lambda kv: kv[0])
        mine = np.array([code for code, _ in followed], dtype=np.int64)
        values = np.array([(a.watch, a.skip, a.engage, a.follow) for _, a in followed], dtype=np.float32)
        theirs = catalog.creator_codes[at]
        where = np.minimum(np.searchsorted(mine, theirs), len(mine) - 1)
        hit = mine[where] == theirs
        rows[hit, 15:19] = values[where[hit]]
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
    rows[:, COL["history_len"]] = history
    rows[:, COL["n_searches"]] = n_searches
    rows[:, COL["hour"]] = float(req.hour)
    rows[:, COL["device"]] = float(DEVICES.get(req.device, 0))
    return rows

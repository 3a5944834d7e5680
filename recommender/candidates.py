"""Candidate generation: topic and keyword indexes, embedding similarity, creators, popularity.

Every source records why a clip is there (for features and explanations); clips the user has
already seen are excluded; the result holds between ``min_candidates`` and ``max_candidates``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clipfeed.text import tokens
from recommender.catalog import CatalogIndex
from recommender.collab import CollabModel
from recommender.config import CandidateConfig
from recommender.signals import UserContext
from recommender.topk import top_k

SOURCES = ("topic", "watch_topic", "embedding", "keyword", "creator", "coengage", "factor", "popular")


class Candidates:
    """The candidates of one feed: their catalog positions in the order sources first added them,
    and per clip the sources that proposed it (a bit per ``SOURCES`` entry).

    Sources add whole arrays of clips (``add``); the per-clip state lives in catalog-sized arrays
    allocated with ``np.zeros`` (calloc: only the pages of touched clips cost anything)."""

    def __init__(self, n_clips: int) -> None:
        self._bits = np.zeros(n_clips, dtype=np.uint16)
        self._prelim = np.zeros(n_clips, dtype=np.float64)
        self._order: list[np.ndarray] = []
        self._index: list[int] | None = []
        self.seen = np.zeros(0, dtype=np.int64)  # catalog positions of the clips the user has seen

    def add(self, clips: np.ndarray, source: str, prelim: float | np.ndarray) -> None:
        """Adds ``clips`` (distinct catalog positions) as proposed by ``source`` with a preliminary
        score each (the max over sources is kept: it decides who stays when there are too many)."""
        if not len(clips):
            return
        new = clips[self._bits[clips] == 0]
        if len(new):
            self._order.append(new)
            self._index = None
        self._bits[clips] |= _BIT[source]
        self._prelim[clips] = np.maximum(self._prelim[clips], prelim)

    def add_new(self, clips: np.ndarray, source: str) -> None:
        """Adds those of ``clips`` no source proposed yet (the popularity fill), score 0."""
        self.add(clips[self._bits[clips] == 0], source, 0.0)

    def has(self, clips: np.ndarray) -> np.ndarray:
        return np.asarray(self._bits[clips] != 0)

    def positions(self) -> np.ndarray:
        return np.concatenate(self._order) if self._order else np.zeros(0, dtype=np.int64)

    def keep(self, n: int) -> None:
        """Keeps the ``n`` best by preliminary score (ties: the earlier added), in added order."""
        at = self.positions()
        if len(at) <= n:
            return
        chosen = np.sort(top_k(self._prelim[at], n))
        # the dropped keep their bits: no later source (the popularity fill) brings them back
        self._order = [at[chosen]]
        self._index = None

    @property
    def index(self) -> list[int]:
        if self._index is None:
            self._index = self.positions().tolist()
        return self._index

    def __len__(self) -> int:
        return sum(len(a) for a in self._order)

    def sources_of(self, i: int) -> set[str]:
        bits = int(self._bits[i])
        return {name for name, bit in _BIT.items() if bits & bit}

    @property
    def sources(self) -> dict[int, set[str]]:
        return {i: self.sources_of(i) for i in self.index}


_BIT = {name: 1 << k for k, name in enumerate(SOURCES)}


def sibling_guard(ctx: UserContext, catalog: CatalogIndex) -> set[str]:
    """Tier-2 topics that must not be recommended: siblings (same tier 1) of the topics the user's
    filtered tags point at, which the user has shown no interest in themselves. This is what keeps
    a soccer fan's feed free of baseball although both are Sports."""
    tax = catalog.taxonomy
    wanted = frozenset(t for t, a in ctx.topics.items() if a.positive > 0 and t in tax)
    hit = catalog.guards.get(wanted)
    if hit is None:  # a few distinct sets of wanted topics serve most users
        if len(catalog.guards) >= 4096:
            catalog.guards.clear()
        hit = catalog.guards[wanted] = frozenset(_guard(wanted, catalog))
    return set(hit)


def _guard(wanted: frozenset[str], catalog: CatalogIndex) -> set[str]:
    tax = catalog.taxonomy
    tier1s = {tax.tier1_of(t) for t in wanted}
    # Ancestors and descendants of a wanted topic are not its siblings (a catalog labelled at tier 1).
    related = {a for t in wanted for a in tax.ancestors(t)}
    return {
        t
        for t, (tier1, ancestors) in catalog.topic_lineage.items()
        if t not in related and tier1 in tier1s and not ancestors & wanted
    }


class TagVectorCache:
    """Tag embeddings are reused across requests (tags repeat far more than they change)."""

    def __init__(self, catalog: CatalogIndex, size: int = 50_000) -> None:
        self.catalog = catalog
        self.size = size
        self.cache: dict[str, np.ndarray] = {}

    def get(self, tags: list[str]) -> np.ndarray:
        enc = self.catalog.encoder
        if enc is None or not tags:
            return np.zeros((0, 1), dtype=np.float32)
        missing = [t for t in tags if t not in self.cache]
        if missing:
            if len(self.cache) + len(missing) > self.size:
                self.cache.clear()
            for t, v in zip(missing, enc.encode(missing), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in tags])

    def warm(self, tags: Iterable[str], batch_size: int = 4096) -> int:
        """Encodes the ``tags`` not yet cached, in large batches, and grows the cache to hold them all
        (a training run asks for every tag of the world again and again, session after session: one
        small encoder call per session cost 40 % of a 1 M-impression run's feature time, and a
        cache smaller than the world's tags kept clearing). Returns how many were encoded."""
        enc = self.catalog.encoder
        if enc is None:
            return 0
        missing = [t for t in dict.fromkeys(tags) if t not in self.cache]
        self.size = max(self.size, len(self.cache) + len(missing))
        for lo in range(0, len(missing), batch_size):
            chunk = missing[lo : lo + batch_size]
            for t, v in zip(chunk, enc.encode(chunk), strict=True):
                self.cache[t] = v
        return len(missing)


def generate(
    ctx: UserContext,
    catalog: CatalogIndex,
    cfg: CandidateConfig,
    vectors: TagVectorCache,
    use_topics: bool = True,
    collab: CollabModel | None = None,
) -> Candidates:
    distinct_seen = set(ctx.seen)
    seen = [j for j in (catalog.pos.get(c) for c in distinct_seen) if j is not None]
    n_seen = len(distinct_seen)  # lists are cut at top + |seen|, before the seen clips are dropped
    out = Candidates(len(catalog.ids))
    out.seen = np.asarray(seen, dtype=np.int64)  # the feed's exploration excludes them too
    guard = sibling_guard(ctx, catalog) if use_topics else set()
    allowed = catalog.allowed(guard, out.seen)

    if use_topics:
        intent = {t: a.intent - 0.5 * a.skip for t, a in ctx.topics.items() if a.intent > 0}
        watched = {t: a.watch + a.engage - a.skip for t, a in ctx.topics.items() if a.watch + a.engage > 0}
        for source, weights in (("topic", intent), ("watch_topic", watched)):
            total = sum(w for w in weights.values() if w > 0)
            for topic, w in sorted(weights.items(), key=lambda kv: -kv[1]):
                clips = catalog.topic_clips.get(topic)
                if w <= 0 or clips is None:
                    continue
                quota = max(5, int(cfg.per_topic * w / total))
                out.add(clips[allowed[clips]][:quota], source, w / total)
    tags = list(ctx.tags)
    if tags:
        vecs = vectors.get(tags)
        if len(vecs) and catalog.ann is not None:
            # each tag's nearest clips from the ANN index, merged per clip by its best tag: the merged
            # top embedding_top + |seen| are the exact branch's (a clip missing from a tag's list scores
            # below all of that list, so below this many clips), up to the index's recall
            want = cfg.embedding_top + n_seen
            found, scores = catalog.ann.knn(vecs, want)
            best_sim: dict[int, float] = {}
            for cids, row in zip(found, scores, strict=True):
                for cid, s in zip(cids, row.tolist(), strict=True):
                    row_of = catalog.pos.get(cid)
                    if row_of is not None and (row_of not in best_sim or s > best_sim[row_of]):
                        best_sim[row_of] = s
            merged = sorted(best_sim.items(), key=lambda kv: (-kv[1], kv[0]))[:want]
            at = np.array([i for i, _ in merged], dtype=np.int64)
            sims = np.array([s for _, s in merged])
            ok = allowed[at] if len(at) else np.zeros(0, dtype=bool)
            out.add(at[ok][: cfg.embedding_top], "embedding", sims[ok][: cfg.embedding_top])
        elif len(vecs) and catalog.vectors is not None:
            # tags x clips: a max down the short axis is ~10x cheaper than an argmax along it (each
            # candidate's best tag is found later, by the features, for the candidates only)
            top = (vecs @ catalog.vectors.T).max(axis=0)
            order = top_k(top, cfg.embedding_top + n_seen)
            ok = order[allowed[order]][: cfg.embedding_top]
            out.add(ok, "embedding", top[ok].astype(np.float64))
        words = [w for t in tags for w in tokens(t)]
        kw_clips, kw = catalog.keyword_ranked(words)
        if len(kw_clips):
            kw_clips, kw = kw_clips[: cfg.keyword_top + n_seen], kw[: cfg.keyword_top + n_seen] / kw[0]
            ok = allowed[kw_clips]
            out.add(kw_clips[ok], "keyword", kw[ok])
    for creator, aff in ctx.creators.items():
        clips = catalog.creator_clips.get(creator)
        if clips is not None and (aff.follow > 0 or aff.watch + aff.engage > 1.0):
            clips = clips[:10]
            out.add(clips[allowed[clips]], "creator", 0.5 + aff.follow)
    if collab is not None and ctx.liked:
        # Warm users only: clips co-engaged with theirs, and the factor model's top clips.
        for source, (clips, scores) in collab.candidate_positions(ctx.liked, catalog.ids, n_seen).items():
            top = scores[0] if len(scores) else 0.0  # best first: normalised by the best, seen or not
            ok = allowed[clips]
            clips, scores = clips[ok][: collab.cfg.candidates], scores[ok][: collab.cfg.candidates]
            out.add(clips, source, scores / top if top > 0 else 0.0)
    out.keep(cfg.max_candidates)
    need = cfg.min_candidates - len(out)
    if need > 0:
        # the most popular allowed clips no source proposed, enough to reach min_candidates
        rank = catalog.popularity_rank
        span = min(len(rank), cfg.min_candidates + n_seen + len(out) + 64)
        while True:
            head = rank[:span]
            fresh = head[allowed[head] & ~out.has(head)]
            if len(fresh) >= need or span >= len(rank):
                break
            span = min(len(rank), span * 4)
        out.add_new(fresh[:need], "popular")
    return out

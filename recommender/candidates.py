"""Candidate generation: topic and keyword indexes, embedding similarity, creators, popularity.

Every source records why a clip is there (for features and explanations); clips the user has
already seen are excluded; the result holds between ``min_candidates`` and ``max_candidates``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from clipfeed.text import tokens
from recommender.catalog import CatalogIndex
from recommender.collab import CollabModel
from recommender.config import CandidateConfig
from recommender.signals import UserContext

SOURCES = ("topic", "watch_topic", "embedding", "keyword", "creator", "coengage", "factor", "popular")


@dataclass
class Candidates:
    index: list[int] = field(default_factory=list)
    sources: dict[int, set[str]] = field(default_factory=dict)
    tag_sim: dict[int, float] = field(default_factory=dict)
    best_tag: dict[int, str] = field(default_factory=dict)
    keyword: dict[int, float] = field(default_factory=dict)

    def add(self, i: int, source: str, prelim: float, scores: dict[int, float]) -> None:
        if i not in self.sources:
            self.sources[i] = set()
            self.index.append(i)
        self.sources[i].add(source)
        scores[i] = max(scores.get(i, 0.0), prelim)


def sibling_guard(ctx: UserContext, catalog: CatalogIndex) -> set[str]:
    """Tier-2 topics that must not be recommended: siblings (same tier 1) of the topics the user's
    filtered tags point at, which the user has shown no interest in themselves. This is what keeps
    a soccer fan's feed free of baseball although both are Sports."""
    tax = catalog.taxonomy
    wanted = {t for t, a in ctx.topics.items() if a.positive > 0 and t in tax}
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


def generate(
    ctx: UserContext,
    catalog: CatalogIndex,
    cfg: CandidateConfig,
    vectors: TagVectorCache,
    use_topics: bool = True,
    collab: CollabModel | None = None,
) -> Candidates:
    seen = set(ctx.seen)
    out = Candidates()
    prelim: dict[int, float] = {}
    guard = sibling_guard(ctx, catalog) if use_topics else set()

    def ok(i: int) -> bool:
        return catalog.ids[i] not in seen and catalog.topic[i] not in guard

    if use_topics:
        intent = {t: a.intent - 0.5 * a.skip for t, a in ctx.topics.items() if a.intent > 0}
        watched = {t: a.watch + a.engage - a.skip for t, a in ctx.topics.items() if a.watch + a.engage > 0}
        for source, weights in (("topic", intent), ("watch_topic", watched)):
            total = sum(w for w in weights.values() if w > 0)
            for topic, w in sorted(weights.items(), key=lambda kv: -kv[1]):
                if w <= 0:
                    continue
                quota = max(5, int(cfg.per_topic * w / total))
                taken = 0
                for i in catalog.by_topic.get(topic, []):
                    if ok(i):
                        out.add(i, source, w / total, prelim)
                        taken += 1
                        if taken >= quota:
                            break
    tags = list(ctx.tags)
    if tags:
        vecs = vectors.get(tags)
        if len(vecs) and catalog.ann is not None:
            # each tag's nearest clips from the ANN index, merged per clip by its best tag: the merged
            # top embedding_top + |seen| are the exact branch's (a clip missing from a tag's list scores
            # below all of that list, so below this many clips), up to the index's recall
            want = cfg.embedding_top + len(seen)
            found, scores = catalog.ann.knn(vecs, want)
            best_sim: dict[int, tuple[float, int]] = {}
            for t, (cids, row) in enumerate(zip(found, scores, strict=True)):
                for cid, s in zip(cids, row.tolist(), strict=True):
                    row_of = catalog.pos.get(cid)
                    if row_of is not None and (row_of not in best_sim or s > best_sim[row_of][0]):
                        best_sim[row_of] = (s, t)
            n = 0
            for i, (s, t) in sorted(best_sim.items(), key=lambda kv: (-kv[1][0], kv[0]))[:want]:
                out.tag_sim[i] = s
                out.best_tag[i] = tags[t]
                if ok(i) and n < cfg.embedding_top:
                    out.add(i, "embedding", s, prelim)
                    n += 1
        elif len(vecs) and catalog.vectors is not None:
            sims = catalog.vectors @ vecs.T
            best = sims.argmax(axis=1)
            top = sims.max(axis=1)
            order = np.argsort(-top)[: cfg.embedding_top + len(seen)]
            n = 0
            for i in order:
                i = int(i)
                out.tag_sim[i] = float(top[i])
                out.best_tag[i] = tags[int(best[i])]
                if ok(i) and n < cfg.embedding_top:
                    out.add(i, "embedding", float(top[i]), prelim)
                    n += 1
        words = [w for t in tags for w in tokens(t)]
        kw = catalog.keyword_scores(words)
        if kw:
            top_kw = max(kw.values())
            for i, s in sorted(kw.items(), key=lambda kv: -kv[1])[: cfg.keyword_top + len(seen)]:
                out.keyword[i] = s / top_kw
                if ok(i):
                    out.add(i, "keyword", s / top_kw, prelim)
    for creator, aff in ctx.creators.items():
        if aff.follow > 0 or aff.watch + aff.engage > 1.0:
            for i in catalog.by_creator.get(creator, [])[:10]:
                if ok(i):
                    out.add(i, "creator", 0.5 + aff.follow, prelim)
    if collab is not None and ctx.liked:
        # Warm users only: clips co-engaged with theirs, and the factor model's top clips.
        for source, ranked in collab.candidates(ctx.liked, collab.cfg.candidates + len(seen)).items():
            top = max((s for _, s in ranked), default=0.0)
            n = 0
            for cid, s in ranked:
                j = catalog.pos.get(cid)
                if j is not None and ok(j) and n < collab.cfg.candidates:
                    out.add(j, source, s / top if top > 0 else 0.0, prelim)
                    n += 1
    if len(out.index) > cfg.max_candidates:
        keep = sorted(out.index, key=lambda i: -prelim[i])[: cfg.max_candidates]
        keep_set = set(keep)
        out.index = [i for i in out.index if i in keep_set]
    for i in catalog.popularity_rank:
        if len(out.index) >= cfg.min_candidates:
            break
        i = int(i)
        if ok(i) and i not in out.sources:
            out.add(i, "popular", 0.0, prelim)
    return out

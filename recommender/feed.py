"""``FeedBuilder``: candidates -> features -> LambdaRank -> diversity -> exploration -> explanations."""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from clipfeed.text import normalize
from recommender.candidates import Candidates, TagVectorCache, generate
from recommender.catalog import CatalogIndex
from recommender.collab import CollabModel
from recommender.config import RecommenderConfig
from recommender.features import FEATURES, RequestContext, UserSide, compute, tag_matches, user_side
from recommender.ranker import Ranker, prior_score
from recommender.signals import UserContext

log = logging.getLogger("clipfeed.recommender")


@dataclass
class FeedItem:
    clip_id: str
    score: float
    topics: list[str]
    explanation: dict[str, Any]


@dataclass
class Feed:
    items: list[FeedItem] = field(default_factory=list)
    fallback: str | None = None  # why the feed is not personalised, when it is not
    candidates: int = 0
    # The ranker's feature rows of the served items as served: one row per item in page order, in
    # the ``FEATURES`` schema (None for fallback feeds, which are not ranked). The served-impression
    # log records them, so training sees what the ranker saw. Exploration picks are never scored;
    # the first few draws get rows in the candidates' call, and a pick drawn past them (when the
    # page's own topics block those) stays NaN until ``complete_features()`` computes it: a second
    # ``compute`` call costs ~110 µs however few its rows, so the log does it after the response.
    features: np.ndarray | None = None
    pending: Callable[[list[str]], np.ndarray] | None = field(default=None, repr=False, compare=False)

    def complete_features(self) -> np.ndarray | None:
        """``features`` with every row computed (the exploration picks' rows, on the first call)."""
        if self.features is not None and self.pending is not None:
            todo = [n for n in range(len(self.features)) if np.isnan(self.features[n, 0])]
            if todo:
                self.features[todo] = self.pending([self.items[n].clip_id for n in todo])
            self.pending = None
        return self.features


class FeedBuilder:
    def __init__(
        self,
        catalog: CatalogIndex,
        ranker: Ranker | None = None,
        cfg: RecommenderConfig | None = None,
        vectors: TagVectorCache | None = None,
        collab: CollabModel | None = None,
        use_collab: bool = True,
    ) -> None:
        self.catalog = catalog
        self.ranker = ranker
        self.cfg = cfg or (ranker.config if ranker is not None else RecommenderConfig())
        self.vectors = vectors or TagVectorCache(catalog)
        # Exploration draws per exploration slot whose rows are computed with the candidates': at 2,
        # 17 of 1,168 picks on the sample world (pages of 20) still needed a call of their own.
        self.explore_rows = 2
        # Collaborative signals (warm users only): the ranker's own model unless another is given;
        # ``use_collab=False`` is the content-based system alone.
        own = ranker.collab if ranker is not None else None
        self.collab = (collab or own) if use_collab else None
        if self.collab is not None and self.collab.ids != catalog.ids:
            # another catalog's clip ids name other clips: rebind first (cli.wiring.for_catalog)
            log.warning("the collaborative model was fitted on another catalog: not used")
            self.collab = None

    def build(
        self,
        ctx: UserContext,
        limit: int = 20,
        req: RequestContext | None = None,
        explain: bool = True,
        exclude: set[str] | None = None,
        user_key: str = "",
        contributions: bool = True,
        served_rows: bool = True,
    ) -> Feed:
        """The feed for ``ctx``. ``explain`` adds the reasons; ``contributions`` adds the top feature
        contributions (LightGBM ``pred_contrib``, the most expensive part of a request);
        ``served_rows`` keeps the page's feature rows (``Feed.features``, for the served log)."""
        ctx.settle()  # a context folded with its decay pending (a replay) is read only when settled
        ctx = self.catalog.view(ctx)
        if exclude:
            ctx = replace(ctx, seen=[*ctx.seen, *exclude])
        cands = generate(ctx, self.catalog, self.cfg.candidates, self.vectors, collab=self.collab)
        if not ctx.tags and not any(a.positive > 0 for a in ctx.topics.values()):
            return self._fallback(cands, limit, "no search intent or watch history yet: popular clips")
        idx = cands.index
        n_explore, draw = self._exploration_draw(limit, user_key, ctx, cands.seen)
        # The first few exploration draws get their feature rows in the candidates' call, for the
        # served log: one more call for them alone cost ~110 µs a feed (its fixed cost), these ~5.
        extra: list[int] = []
        if served_rows:
            in_idx = set(idx)
            extra = [i for i in draw[: self.explore_rows * n_explore] if i not in in_idx]
        at = [*idx, *extra]
        side = user_side(ctx, self.catalog, self.vectors)
        match = tag_matches(ctx, self.catalog, self.vectors, at, side)
        x = compute(ctx, self.catalog, self.vectors, at, req, self.collab, match, side)
        # Without a trained model the prior alone ranks (it is also where the booster starts).
        xc = x[: len(idx)]
        scores = self.ranker.predict(xc) if self.ranker is not None else prior_score(xc)
        rows = self._diversify(idx, scores, limit)
        order = self._explore([idx[r] for r in rows], limit, n_explore, draw)
        pos = {idx[r]: r for r in rows}  # page clip -> its candidate row
        picks = {i for i in order if i not in pos}
        if picks:  # an exploration pick may be a candidate too: then it is ranked as one
            pos.update({i: r for r, i in enumerate(idx) if i in picks})
        contrib: dict[int, np.ndarray] = {}
        ranked = [i for i in order if i in pos]
        if explain and contributions and self.ranker is not None and ranked:
            contrib = dict(zip(ranked, self.ranker.contributions(xc[[pos[i] for i in ranked]]), strict=True))
        items = []
        # each topic's strongest tag, for explanations whose clip matches none of its topic's tags
        strongest: dict[str, str] = {}
        for t, a in sorted(ctx.tags.items(), key=lambda kv: -kv[1].weight):
            strongest.setdefault(a.topic, t)
        for i in order:
            # an exploration pick is from a tier-1 topic none of the user's tags point at: no best tag
            best_tag = match.best_tag[pos[i]] if i in pos else None
            explore = i not in pos
            explanation = self._explain(ctx, cands, i, best_tag, strongest, contrib.get(i), explore) if explain else {}
            score = float(scores[pos[i]]) if i in pos else 0.0
            items.append(FeedItem(self.catalog.ids[i], round(score, 4), [self.catalog.topic[i]], explanation))
        if not served_rows:
            return Feed(items, None, len(idx))
        row_of = {**{i: len(idx) + k for k, i in enumerate(extra)}, **pos}
        return Feed(items, None, len(idx), *self._served_rows(ctx, x, row_of, order, req, side))

    def _served_rows(
        self,
        ctx: UserContext,
        x: np.ndarray,
        pos: dict[int, int],
        order: list[int],
        req: RequestContext | None,
        side: UserSide,
    ) -> tuple[np.ndarray, Callable[[list[str]], np.ndarray] | None]:
        """The rows of ``x`` for the page, in page order (``pos``: clip -> its row of ``x``), and for
        exploration picks without a row (drawn past the first few; NaN rows here) the function that
        computes theirs the same way, for just those clips, from the feed's own user side."""
        rows = np.full((len(order), x.shape[1]), np.nan, dtype=x.dtype)
        ranked = [n for n, i in enumerate(order) if i in pos]
        rows[ranked] = x[[pos[order[n]] for n in ranked]]
        if len(ranked) == len(order):
            return rows, None
        catalog, vectors, collab = self.catalog, self.vectors, self.collab

        def pending(clip_ids: list[str]) -> np.ndarray:
            # given the side, compute never reads the tag vector cache (the side holds the tags'
            # vectors), so this thread cannot race the requests that fill and clear it
            return compute(ctx, catalog, vectors, [catalog.pos[c] for c in clip_ids], req, collab, side=side)

        return rows, pending

    def _fallback(self, cands: Candidates, limit: int, reason: str) -> Feed:
        idx = cands.index[:limit]
        items = [
            FeedItem(self.catalog.ids[i], 0.0, [self.catalog.topic[i]], {"reason": reason, "sources": ["popular"]})
            for i in idx
        ]
        return Feed(items, reason, len(cands.index))

    def _diversify(self, idx: list[int], scores: np.ndarray, limit: int) -> list[int]:
        """Greedy by score: each slot takes the best clip whose topic and creator are under their
        per-page caps and whose creator's last clip is more than ``creator_gap`` slots back; the page
        as rows of ``idx``. A clip held back only by the gap waits for the next slot where it fits:
        a creator whose clips all match the searches stays on the page, spread out, instead of being
        cut to a fixed count (on the sample world a fixed 2 per page gave cold users NDCG@10 0.728
        and a 3.0 % leak; this rule 0.802 and 0.84 %, same ranker)."""
        fc = self.cfg.feed
        topic_cap = max(1, math.ceil(fc.topic_cap_share * limit))
        creator_cap = max(1, math.ceil(fc.creator_cap_share * limit))
        gap = fc.creator_gap
        per_topic: dict[str, int] = {}
        per_creator: dict[str, int] = {}
        last: dict[str, int] = {}  # creator -> slot of their latest clip
        out: list[int] = []
        waiting: list[tuple[int, str, str]] = []  # (row, topic, creator) held back by the gap, best first
        deferred: list[int] = []  # over a cap
        topic, creator = self.catalog.topic, self.catalog.creator

        def place(r: int, t: str, c: str) -> None:
            last[c] = len(out)
            out.append(r)
            per_topic[t] = per_topic.get(t, 0) + 1
            per_creator[c] = per_creator.get(c, 0) + 1

        for r in np.argsort(-scores, kind="stable").tolist():
            i = idx[r]
            t, c = topic[i], creator[i]
            if per_topic.get(t, 0) >= topic_cap or per_creator.get(c, 0) >= creator_cap:
                deferred.append(r)
                continue
            if c in last and len(out) - last[c] <= gap:
                waiting.append((r, t, c))
                continue
            place(r, t, c)
            # each placement opens a slot: a waiting row (better than any row not looked at yet)
            # that now fits takes it first
            while waiting and len(out) < limit:
                for k, (wr, wt, wc) in enumerate(waiting):
                    if per_topic.get(wt, 0) >= topic_cap or per_creator.get(wc, 0) >= creator_cap:
                        deferred.append(wr)
                        del waiting[k]
                        break
                    if len(out) - last[wc] > gap:
                        del waiting[k]
                        place(wr, wt, wc)
                        break
                else:
                    break
            if len(out) >= limit:
                return out
        # too few topics or creators: fill rather than return a short page
        rest = sorted([r for r, _, _ in waiting] + deferred, key=lambda r: (-scores[r], r))
        return out + rest[: limit - len(out)]

    def _exploration_draw(self, limit: int, user_key: str, ctx: UserContext, seen: np.ndarray) -> tuple[int, list[int]]:
        """How many slots of the page explore, and the exploration pool in a random order (seeded by
        the user): popular clips the user has not seen (``seen``: catalog positions, from candidate
        generation), outside the tier-1 topics of the user's own topics. ``_explore`` takes the
        first of them whose tier-1 is not on the page either; the page is known only after ranking,
        the order before it, so the first draws' feature rows are computed with the candidates'."""
        n = int(limit * self.cfg.feed.exploration_share)
        if n <= 0:
            return 0, []
        tax = self.catalog.taxonomy
        # Explore other tier-1 topics only: a sibling of what the user wants is a leak, not discovery.
        near = {tax.tier1_of(t) for t in ctx.topics if t in tax}
        cat = self.catalog
        head = cat.popularity_rank[:500]
        blocked = np.zeros(len(cat.tier1_code), dtype=bool)  # masks: np.isin costs ~50 µs a call
        blocked[[cat.tier1_code[t] for t in near if t in cat.tier1_code]] = True
        was_seen = np.zeros(len(cat.ids), dtype=bool)
        was_seen[seen] = True
        pool = head[~blocked[cat.tier1_codes[head]] & ~was_seen[head]]
        rng = np.random.default_rng(zlib.crc32(user_key.encode()) + self.cfg.feed.seed)
        return n, pool[rng.permutation(len(pool))].tolist()

    def _explore(self, order: list[int], limit: int, n: int, draw: list[int]) -> list[int]:
        """Reserve a small share of the page (its last ``n`` slots) for the first clips of ``draw``
        from tier-1 topics that are not on the page: taking the first that pass from a random order
        of the pool is a uniform draw from those that pass."""
        if n <= 0 or len(order) < limit or not draw:
            return order
        cat, tax = self.catalog, self.catalog.taxonomy
        near = {tax.tier1_of(t) for t in {cat.topic[i] for i in order} if t in tax}
        picks = [i for i in draw if cat.tier1[i] not in near][:n]
        return order[: limit - len(picks)] + picks

    def _explain(
        self,
        ctx: UserContext,
        cands: Candidates,
        i: int,
        best_tag: str | None,
        strongest: dict[str, str],
        contrib: np.ndarray | None,
        explore: bool,
    ) -> dict[str, Any]:
        topic = self.catalog.topic[i]
        tax = self.catalog.taxonomy
        out: dict[str, Any] = {"sources": sorted({"exploration"} if explore else cands.sources_of(i))}
        reasons = []
        if explore:
            reasons.append("exploring a topic you have not seen yet")
        # The tag that best matches this clip among the tags filtered onto its topic; else the
        # strongest tag of its topic.
        tag = best_tag if best_tag in ctx.tags and ctx.tags[best_tag].topic == topic else None
        tag = tag or strongest.get(topic)
        if tag is not None and tag in ctx.tags:
            a = ctx.tags[tag]
            name = tax.name(a.topic) if a.topic in tax else a.topic
            arrow = "" if normalize(tag) == normalize(a.query) else f" → {tag}"
            reasons.append(f"because you searched '{a.query}'{arrow} ({name})")
            out["search"] = a.query
            out["tag"] = tag
        aff = ctx.topics.get(topic)
        if aff is not None and aff.watch + aff.engage > 0.5:
            reasons.append(f"because you watched {tax.name(topic) if topic in tax else topic} clips")
        cre = ctx.creators.get(self.catalog.creator[i])
        if cre is not None and cre.follow > 0:
            reasons.append(f"you follow {self.catalog.creator[i]}")
        if {"coengage", "factor"} & set(out["sources"]):
            reasons.append("people who liked the clips you liked also liked this")
        if not reasons:
            reasons.append("popular now" if "popular" in out["sources"] else "similar to your interests")
        out["reason"] = reasons[0]
        out["reasons"] = reasons
        if contrib is not None:
            top = np.argsort(-np.abs(contrib[:-1]))[:3]
            out["top_features"] = [{"feature": FEATURES[j], "contribution": round(float(contrib[j]), 4)} for j in top]
        return out

"""The user context: five signals folded one event at a time into a bounded, decayed profile.

Signals (``../shared/DESIGN.md``): ``search`` (intent tags and topics of the user's queries),
``doc_click`` (tags of the documents clicked for a query), ``watch`` (meaningful watch vs skip),
``engage`` (like, share, comment) and ``follow`` (creator follow/unfollow). Every affinity decays
with a half-life, and every map is bounded: the weakest entries are evicted first. The same code
serves offline training (replaying logs) and online updates (the API).

>>> ctx = UserContext()
>>> upd = ContextUpdater()
>>> upd.on_clip_event(ctx, "watch", "c1", "533", "cr1", ts=0.0, watch_ratio=0.9)
>>> round(ctx.topics["533"].watch, 2)
0.9
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from clipfeed.protocols import FilteredTag
from recommender.config import SignalConfig

TOPIC_SIGNALS = ("search", "doc_click", "watch", "skip", "engage")
CREATOR_SIGNALS = ("watch", "skip", "engage", "follow")
DAY = 86400.0
ENGAGE_WEIGHTS = {"like": 1.0, "share": 1.5, "comment": 1.2}


def positive_weight(etype: str, watch_ratio: float | None, meaningful: float) -> float:
    """How much one clip event says the user liked the clip: a meaningful watch by its ratio (loops
    count a little more), an engagement by its kind; 0 for impressions, skips and short watches.
    The context's ``liked`` map and the collaborative models' training matrix both use it.

    >>> positive_weight("watch", 0.9, 0.5), positive_weight("watch", 0.3, 0.5), positive_weight("share", None, 0.5)
    (0.9, 0.0, 1.5)
    """
    if etype == "watch":
        ratio = watch_ratio or 0.0
        return min(ratio, 1.0) + 0.2 * min(max(ratio - 1.0, 0.0), 1.0) if ratio >= meaningful else 0.0
    return ENGAGE_WEIGHTS.get(etype, 0.0)


@dataclass(slots=True)  # slots: decay touches every affinity on every event
class TopicAffinity:
    search: float = 0.0
    doc_click: float = 0.0
    watch: float = 0.0
    skip: float = 0.0
    engage: float = 0.0

    def scale(self, f: float) -> None:
        # spelled out (not a loop over TOPIC_SIGNALS with getattr/setattr): decay runs on every
        # event for every topic, and this was half of a context replay's time
        self.search *= f
        self.doc_click *= f
        self.watch *= f
        self.skip *= f
        self.engage *= f

    @property
    def positive(self) -> float:
        return self.search + self.doc_click + self.watch + self.engage

    @property
    def intent(self) -> float:
        return self.search + self.doc_click


@dataclass(slots=True)  # slots: decay touches every affinity on every event
class CreatorAffinity:
    watch: float = 0.0
    skip: float = 0.0
    engage: float = 0.0
    follow: float = 0.0  # 1 while followed; not decayed

    def scale(self, f: float) -> None:
        self.watch *= f
        self.skip *= f
        self.engage *= f

    @property
    def strength(self) -> float:
        return self.watch + self.engage + 2 * self.follow + self.skip


@dataclass(slots=True)  # slots: decay touches every affinity on every event
class TagAffinity:
    weight: float
    topic: str
    query: str  # the search that produced the tag (for explanations)
    signal: str  # "search" or "doc_click"

    def scale(self, f: float) -> None:
        self.weight *= f


@dataclass
class SearchRecord:
    query: str
    ts: float
    tags: list[str]
    dropped: list[str]
    via: str = "tagger"  # "raw_keywords" when the tagger could not answer in time (the API's fallback)


@dataclass
class UserContext:
    """Everything the ranker knows about one user; JSON-serialisable via ``to_dict``/``from_dict``."""

    updated_at: float = 0.0
    topics: dict[str, TopicAffinity] = field(default_factory=dict)
    tags: dict[str, TagAffinity] = field(default_factory=dict)
    creators: dict[str, CreatorAffinity] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    searches: list[SearchRecord] = field(default_factory=list)
    clip_events: int = 0
    hangul: float = 0.5  # running share of Hangul in the user's queries (language preference)
    # clip -> decayed positive weight (meaningful watches, likes, shares, comments): what the
    # collaborative signals (co-engagement, the factor model's fold-in) start from.
    liked: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Decay not yet multiplied into the stored amounts (a plain attribute, not a field: never
        # serialised). A replay folds each event's decay into this one number instead of scaling
        # every affinity (half of a replay's time went there); ``settle`` applies it.
        self.pending = 1.0

    def settle(self) -> None:
        """Multiplies the pending decay into every decayed amount (follows are not decayed)."""
        f = self.pending
        if f == 1.0:
            return
        for a in self.topics.values():
            a.scale(f)
        for c in self.creators.values():
            c.scale(f)
        for t in self.tags.values():
            t.scale(f)
        liked = self.liked
        for clip in liked:
            liked[clip] *= f
        self.pending = 1.0

    def to_dict(self) -> dict[str, Any]:
        self.settle()
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UserContext:
        return cls(
            updated_at=float(d["updated_at"]),
            topics={k: TopicAffinity(**v) for k, v in d["topics"].items()},
            tags={k: TagAffinity(**v) for k, v in d["tags"].items()},
            creators={k: CreatorAffinity(**v) for k, v in d["creators"].items()},
            seen=list(d["seen"]),
            searches=[SearchRecord(**s) for s in d["searches"]],
            clip_events=int(d["clip_events"]),
            hangul=float(d["hangul"]),
            liked={str(k): float(v) for k, v in d.get("liked", {}).items()},  # absent in older contexts
        )

    def topic_total(self, signal: str) -> float:
        return float(sum(getattr(a, signal) for a in self.topics.values()))


class ContextUpdater:
    """Applies events to a :class:`UserContext` (decay first, then the event, then the bounds).

    Each ``on_*`` method leaves the context settled (every amount as of the event's time) unless
    called with ``settle=False``: then the decay stays pending in ``ctx.pending`` and new amounts
    are stored divided by it, which is exact up to rounding; a replay of a whole log settles once
    at the end (:func:`recommender.pipeline.replay`). Read a context only when settled.
    """

    def __init__(self, cfg: SignalConfig | None = None) -> None:
        self.cfg = cfg or SignalConfig()

    def decay(self, ctx: UserContext, ts: float) -> None:
        """Moves the context's clock to ``ts``, every amount decayed to then."""
        self._advance(ctx, ts, settle=True)

    def _advance(self, ctx: UserContext, ts: float, settle: bool) -> float:
        """Moves the clock to ``ts``, the decay applied (``settle``) or left pending; returns the
        factor that an amount gained at ``ts`` is stored with (1 / pending)."""
        if ts > ctx.updated_at:
            if ctx.updated_at:
                ctx.pending *= 0.5 ** ((ts - ctx.updated_at) / (self.cfg.half_life_days * DAY))
            ctx.updated_at = ts
        if settle or ctx.pending < 1e-12:  # settle long before 1 / pending loses precision or overflows
            ctx.settle()
        return 1.0 / ctx.pending

    def on_search(
        self,
        ctx: UserContext,
        query: str,
        ts: float,
        search_tags: Sequence[FilteredTag],
        doc_tags: Sequence[FilteredTag] = (),
        hangul: float | None = None,
        via: str = "tagger",
        *,
        settle: bool = True,
    ) -> None:
        """Signals 1-2: kept tags of the query (``search``) and of its clicked documents (``doc_click``)."""
        inv = self._advance(ctx, ts, settle)
        kept: list[str] = []
        dropped: list[str] = []
        for signal, tags in (("search", search_tags), ("doc_click", doc_tags)):
            for t in tags:
                if not t.keep:
                    dropped.append(t.tag)
                    continue
                kept.append(t.tag)
                for score in t.topics[:2]:
                    aff = ctx.topics.setdefault(score.id, TopicAffinity())
                    setattr(aff, signal, getattr(aff, signal) + t.score * score.p * inv)
                # A tag without topics (no topic model in the loop) still drives text matching.
                p = t.topics[0].p if t.topics else 1.0
                prev = ctx.tags.get(t.tag)
                weight = t.score * p * inv + (prev.weight if prev else 0.0)
                ctx.tags[t.tag] = TagAffinity(weight, t.topics[0].id if t.topics else "", query, signal)
        if hangul is not None:
            ctx.hangul = 0.7 * ctx.hangul + 0.3 * hangul
        ctx.searches.append(SearchRecord(query, ts, list(dict.fromkeys(kept)), list(dict.fromkeys(dropped)), via))
        self._bound(ctx)

    def on_clip_event(
        self,
        ctx: UserContext,
        etype: str,
        clip_id: str,
        topic: str,
        creator: str,
        ts: float,
        watch_ratio: float | None = None,
        *,
        settle: bool = True,
    ) -> None:
        """Signals 3-4: impressions (seen), watch/skip, like/share/comment."""
        inv = self._advance(ctx, ts, settle)
        if etype != "impression":
            ctx.clip_events += 1
        if clip_id not in ctx.seen[-50:]:
            ctx.seen.append(clip_id)
        aff = ctx.topics.setdefault(topic, TopicAffinity())
        cre = ctx.creators.setdefault(creator, CreatorAffinity())
        if etype == "watch":
            ratio = watch_ratio or 0.0
            if ratio >= self.cfg.meaningful_watch_ratio:
                gain = positive_weight(etype, ratio, self.cfg.meaningful_watch_ratio) * inv
                aff.watch += gain
                cre.watch += gain
            else:
                # A short watch is a weak skip: the user looked and left.
                weak = 0.5 * (1.0 - ratio / self.cfg.meaningful_watch_ratio) * inv
                aff.skip += weak
                cre.skip += weak
        elif etype == "skip":
            aff.skip += inv
            cre.skip += inv
        elif etype in ENGAGE_WEIGHTS:
            w = ENGAGE_WEIGHTS[etype] * inv
            aff.engage += w
            cre.engage += w
        liked = positive_weight(etype, watch_ratio, self.cfg.meaningful_watch_ratio)
        if liked > 0:
            ctx.liked[clip_id] = ctx.liked.get(clip_id, 0.0) + liked * inv
        self._bound(ctx)

    def on_follow(self, ctx: UserContext, creator: str, ts: float, follow: bool = True, *, settle: bool = True) -> None:
        """Signal 5: creator follow / unfollow."""
        self._advance(ctx, ts, settle)
        ctx.clip_events += 1
        ctx.creators.setdefault(creator, CreatorAffinity()).follow = 1.0 if follow else 0.0
        self._bound(ctx)

    def _bound(self, ctx: UserContext) -> None:
        cfg = self.cfg
        if len(ctx.topics) > cfg.max_topics:
            keep = sorted(ctx.topics, key=lambda k: ctx.topics[k].positive + ctx.topics[k].skip, reverse=True)
            ctx.topics = {k: ctx.topics[k] for k in keep[: cfg.max_topics]}
        if len(ctx.tags) > cfg.max_tags:
            keep = sorted(ctx.tags, key=lambda k: ctx.tags[k].weight, reverse=True)
            ctx.tags = {k: ctx.tags[k] for k in keep[: cfg.max_tags]}
        if len(ctx.creators) > cfg.max_creators:
            ctx.settle()  # a creator's strength adds the undecayed follow: pending decay would skew it
            keep = sorted(ctx.creators, key=lambda k: ctx.creators[k].strength, reverse=True)
            ctx.creators = {k: ctx.creators[k] for k in keep[: cfg.max_creators]}
        if len(ctx.liked) > cfg.max_liked:
            keep = sorted(ctx.liked, key=ctx.liked.__getitem__, reverse=True)
            ctx.liked = {k: ctx.liked[k] for k in keep[: cfg.max_liked]}
        if len(ctx.seen) > cfg.max_seen:
            del ctx.seen[: len(ctx.seen) - cfg.max_seen]
        if len(ctx.searches) > cfg.max_searches:
            del ctx.searches[: len(ctx.searches) - cfg.max_searches]


def topic_share(ctx: UserContext, topic: str, signal: str) -> float:
    """The topic's share of a signal's total affinity (0 when the user has none of that signal)."""
    total = ctx.topic_total(signal)
    a = ctx.topics.get(topic)
    return getattr(a, signal) / total if a is not None and total > 0 else 0.0


def log1p_safe(x: float) -> float:
    return math.log1p(max(x, 0.0))

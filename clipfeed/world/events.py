"""The documented choice model: which clips a user is shown, watches, skips and engages with.

Relevance of a clip to a user is the best match over the user's latent interests:
same tier-2 topic and same entity 3.0; same tier-2 topic (interest without entity, or clip without
entity) 2.0; same tier-2 topic, other entity 1.2; same tier-1 and same entity (e.g. travel
preparation clips for an Argentina-travel planner) 1.5; sibling topic (same tier-1) 0.4; same
entity in another tier-1 (Argentine football for an Argentina-travel planner) 0.2; else 0. A clip in
another language than the user's counts 0.6 of that.

Given an impression, P(watch) = sigmoid(-2.4 + 1.5 r + 0.25 q + noise) with q the clip's quality;
otherwise the user skips. The watch ratio is Beta-distributed with a mean rising with r; a ratio
of at least ``meaningful_watch_ratio`` is a meaningful watch, which may lead to a like, share,
comment or a follow of the creator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from clipfeed.world.catalog import SimClip
from clipfeed.world.config import WorldConfig
from clipfeed.world.users import SimUser


@dataclass
class SimEvent:
    user_id: str
    ts: datetime
    type: str
    clip_id: str | None = None
    creator_id: str | None = None
    watch_ratio: float | None = None

    def row(self, event_id: str, ts: float | str) -> dict[str, Any]:
        """The event as an ``events.jsonl`` row (data contract): ``ts`` as the caller writes it,
        optional fields only when set."""
        out: dict[str, Any] = {"event_id": event_id, "user_id": self.user_id, "ts": ts, "type": self.type}
        if self.clip_id is not None:
            out["clip_id"] = self.clip_id
        if self.creator_id is not None:
            out["creator_id"] = self.creator_id
        if self.watch_ratio is not None:
            out["watch_ratio"] = self.watch_ratio
        return out


def relevance(user: SimUser, clip: SimClip, tier1: Callable[[str], str]) -> float:
    interests = [(it.topic, it.entity) for it in user.interests]
    return oracle_relevance(interests, user.lang, clip.topic, clip.entity, clip.lang, tier1)


def oracle_relevance(
    interests: Sequence[tuple[str, str | None]],
    user_lang: str,
    topic: str,
    entity: str | None,
    lang: str,
    tier1: Callable[[str], str],
) -> float:
    """The documented relevance rule (module docstring), also used as ground truth by evaluation."""
    best = 0.0
    ct1 = tier1(topic)
    for it_topic, it_entity in interests:
        if topic == it_topic:
            if it_entity is None or entity is None:
                r = 2.0
            else:
                r = 3.0 if entity == it_entity else 1.2
        elif ct1 == tier1(it_topic):
            r = 1.5 if it_entity is not None and entity == it_entity else 0.4
        elif it_entity is not None and entity == it_entity:
            r = 0.2
        else:
            r = 0.0
        best = max(best, r)
    return best * (1.0 if lang == user_lang else 0.6)


class ChoiceModel:
    """Simulates one user's reaction to impressions; all randomness comes from ``rng``."""

    def __init__(self, cfg: WorldConfig, rng: np.random.Generator, tier1: Callable[[str], str]) -> None:
        self.cfg = cfg
        self.rng = rng
        self.tier1 = tier1

    def react(self, user: SimUser, clip: SimClip, ts: datetime, followed: set[str]) -> list[SimEvent]:
        rng, cfg = self.rng, self.cfg
        r = relevance(user, clip, self.tier1)
        events = [SimEvent(user.user_id, ts, "impression", clip.clip_id)]
        logit = -2.4 + 1.5 * r + 0.25 * clip.quality + rng.normal(0.0, cfg.noise)
        t = ts + timedelta(seconds=1)
        if rng.random() >= 1.0 / (1.0 + np.exp(-logit)):
            events.append(SimEvent(user.user_id, t, "skip", clip.clip_id))
            return events
        mean = min(0.2 + 0.22 * r, 0.92)
        ratio = float(rng.beta(mean * 4.0, (1.0 - mean) * 4.0))
        if rng.random() < 0.1 * (r >= 2):
            ratio += float(rng.uniform(0.5, 1.5))  # rewatches loop the clip
        events.append(SimEvent(user.user_id, t, "watch", clip.clip_id, watch_ratio=round(ratio, 3)))
        if ratio >= cfg.meaningful_watch_ratio:
            t2 = t + timedelta(seconds=max(1, int(ratio * clip.duration_s)))
            for etype, p in (("like", 0.08 * r), ("share", 0.015 * r), ("comment", 0.02 * r)):
                if rng.random() < p:
                    events.append(SimEvent(user.user_id, t2, etype, clip.clip_id))
            cid = clip.creator.creator_id
            if cid not in followed and rng.random() < 0.03 * r:
                followed.add(cid)
                events.append(SimEvent(user.user_id, t2, "follow", creator_id=cid))
            elif cid in followed and r < 1.0 and rng.random() < 0.2:
                followed.discard(cid)
                events.append(SimEvent(user.user_id, t2, "unfollow", creator_id=cid))
        return events


class Exposure:
    """What the (legacy) platform shows: popular clips, random clips, same-tier-1 clips, and clips whose
    titles share a word with the user's recent searches (the raw-keyword recommender that failed)."""

    def __init__(self, clips: list[SimClip], rng: np.random.Generator, tier1: Callable[[str], str]) -> None:
        self.clips = clips
        self.rng = rng
        pop = np.array([c.views for c in clips], dtype=float)
        self.p_pop = pop / pop.sum()
        self.by_tier1: dict[str, list[int]] = {}
        self.by_topic: dict[str, list[int]] = {}
        self.by_entity: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            self.by_tier1.setdefault(tier1(c.topic), []).append(i)
            self.by_topic.setdefault(c.topic, []).append(i)
            if c.entity:
                self.by_entity.setdefault(c.entity, []).append(i)
        self.everything = list(range(len(clips)))
        self.by_word: dict[str, list[int]] = {}
        for i, c in enumerate(clips):
            for w in set(c.title.lower().split()):
                self.by_word.setdefault(w, []).append(i)
        self.tier1 = tier1

    def _from(self, pool: list[int]) -> int:
        return pool[int(self.rng.integers(len(pool)))]

    def session(self, user: SimUser, k: int, recent_queries: Sequence[str] = ()) -> list[int]:
        """One feed session of the legacy recommender: 35 % popular, 25 % random, 25 % the tier-1
        category of an interest, 15 % a clip sharing a word with a recent search (when there is one)."""
        out: list[int] = []
        words = [w for q in recent_queries for w in q.lower().split() if w in self.by_word]
        for _ in range(k):
            u = self.rng.random()
            if u < 0.35:
                out.append(int(self.rng.choice(len(self.clips), p=self.p_pop)))
            elif u < 0.6:
                out.append(int(self.rng.integers(len(self.clips))))
            elif u < 0.75 and words:
                out.append(self._from(self.by_word[words[int(self.rng.integers(len(words)))]]))
            else:
                it = user.interests[int(self.rng.integers(len(user.interests)))]
                out.append(self._from(self.by_tier1.get(self.tier1(it.topic), self.everything)))
        return list(dict.fromkeys(out))

    def heldout(self, user: SimUser, k: int) -> list[int]:
        """A wide evaluation session: random, same-tier-1, same-topic and same-entity clips in equal
        parts, so both the right clips and the tempting wrong ones (siblings, same entity in another
        topic) are judged."""
        out: list[int] = []
        pools: list[list[int]] = []
        for it in user.interests:
            # Small worlds may lack clips of a topic; fall back to the whole catalog then.
            topic_pool = self.by_topic.get(it.topic, self.everything)
            pools.append(self.by_tier1.get(self.tier1(it.topic), self.everything))
            pools.append(topic_pool)
            if it.entity:
                pools.append(self.by_entity.get(it.entity, topic_pool))
        for j in range(k):
            if j % 4 == 0:
                out.append(int(self.rng.integers(len(self.clips))))
            else:
                out.append(self._from(pools[int(self.rng.integers(len(pools)))]))
        return list(dict.fromkeys(out))

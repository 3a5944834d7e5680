from __future__ import annotations

import pytest

from clipfeed.protocols import FilteredTag, TopicScore
from recommender.config import SignalConfig
from recommender.signals import DAY, ContextUpdater, UserContext


def ftag(tag: str, topic: str, p: float = 0.9, keep: bool = True, score: float = 1.0) -> FilteredTag:
    return FilteredTag(tag, score, (TopicScore(topic, p),), keep, "test")


def test_search_and_doc_click_signals_are_separate() -> None:
    ctx, upd = UserContext(), ContextUpdater()
    upd.on_search(ctx, "볼리비아 비자", 100.0, [ftag("볼리비아 비자", "663")], [ftag("이과수 폭포 투어", "655", 0.8)])
    assert ctx.topics["663"].search == pytest.approx(0.9) and ctx.topics["663"].doc_click == 0
    assert ctx.topics["655"].doc_click == pytest.approx(0.8) and ctx.topics["655"].search == 0
    assert ctx.tags["이과수 폭포 투어"].query == "볼리비아 비자"
    assert ctx.tags["이과수 폭포 투어"].signal == "doc_click"
    assert ctx.searches[-1].tags == ["볼리비아 비자", "이과수 폭포 투어"]


def test_dropped_tags_do_not_drive_the_context() -> None:
    ctx, upd = UserContext(), ContextUpdater()
    upd.on_search(ctx, "네이버 로그인", 1.0, [ftag("네이버 로그인", "CF103", keep=False)])
    assert not ctx.tags and not ctx.topics
    assert ctx.searches[-1].dropped == ["네이버 로그인"]


def test_meaningful_watch_versus_short_watch_and_skip() -> None:
    ctx, upd = UserContext(), ContextUpdater(SignalConfig(meaningful_watch_ratio=0.5))
    upd.on_clip_event(ctx, "watch", "c1", "533", "cr1", 1.0, watch_ratio=0.8)
    assert ctx.topics["533"].watch == pytest.approx(0.8) and ctx.creators["cr1"].watch == pytest.approx(0.8)
    upd.on_clip_event(ctx, "watch", "c2", "545", "cr2", 2.0, watch_ratio=0.1)
    assert ctx.topics["545"].watch == 0 and ctx.topics["545"].skip > 0  # a short watch is a weak skip
    upd.on_clip_event(ctx, "skip", "c3", "545", "cr2", 3.0)
    assert ctx.topics["545"].skip > 1.0 and ctx.creators["cr2"].skip > 1.0
    assert ctx.clip_events == 3 and ctx.seen == ["c1", "c2", "c3"]


def test_engage_and_follow() -> None:
    ctx, upd = UserContext(), ContextUpdater()
    for etype in ("like", "share", "comment"):
        upd.on_clip_event(ctx, etype, "c1", "533", "cr1", 1.0)
    assert ctx.topics["533"].engage == pytest.approx(3.7)
    upd.on_follow(ctx, "cr9", 2.0)
    assert ctx.creators["cr9"].follow == 1.0
    upd.on_follow(ctx, "cr9", 3.0, follow=False)
    assert ctx.creators["cr9"].follow == 0.0


def test_impressions_mark_seen_but_are_not_feedback() -> None:
    ctx, upd = UserContext(), ContextUpdater()
    upd.on_clip_event(ctx, "impression", "c1", "533", "cr1", 1.0)
    assert ctx.seen == ["c1"] and ctx.clip_events == 0 and ctx.topics["533"].positive == 0


def test_recency_decay_halves_after_a_half_life() -> None:
    ctx, upd = UserContext(), ContextUpdater(SignalConfig(half_life_days=7))
    upd.on_clip_event(ctx, "like", "c1", "533", "cr1", 1000.0)
    upd.decay(ctx, 1000.0 + 7 * DAY)
    assert ctx.topics["533"].engage == pytest.approx(0.5)
    assert ctx.creators["cr1"].engage == pytest.approx(0.5)


def test_profile_is_bounded() -> None:
    cfg = SignalConfig(max_topics=3, max_tags=2, max_creators=2, max_seen=5, max_searches=2)
    ctx, upd = UserContext(), ContextUpdater(cfg)
    for n in range(10):
        upd.on_search(ctx, f"q{n}", float(n), [ftag(f"tag{n}", f"t{n}", score=1.0 + n)])
        upd.on_clip_event(ctx, "watch", f"c{n}", f"t{n}", f"cr{n}", float(n), watch_ratio=0.9)
    assert len(ctx.topics) == 3 and len(ctx.tags) == 2 and len(ctx.creators) == 2
    assert len(ctx.seen) == 5 and len(ctx.searches) == 2
    assert set(ctx.tags) == {"tag8", "tag9"}  # the weakest are evicted first


def test_round_trip_through_dict() -> None:
    ctx, upd = UserContext(), ContextUpdater()
    upd.on_search(ctx, "손흥민 골", 5.0, [ftag("손흥민 골", "533")])
    upd.on_clip_event(ctx, "watch", "c1", "533", "cr1", 6.0, watch_ratio=1.4)
    upd.on_follow(ctx, "cr1", 7.0)
    again = UserContext.from_dict(ctx.to_dict())
    assert again == ctx


def _fold_random_log(seed: int, settle: bool) -> UserContext:
    """A random log of every event kind, with bursts seconds apart and gaps of up to a year."""
    import random

    rng = random.Random(seed)
    cfg = SignalConfig(max_topics=4, max_tags=3, max_creators=3, max_liked=4)
    ctx, upd, ts = UserContext(), ContextUpdater(cfg), 1000.0
    for _ in range(300):
        ts += rng.choice([0.0, 5.0, 600.0, DAY, 30 * DAY, 365 * DAY])
        topic, creator, clip = f"t{rng.randrange(6)}", f"cr{rng.randrange(6)}", f"c{rng.randrange(12)}"
        kind = rng.randrange(4)
        if kind == 0:
            tags = [ftag(f"tag{rng.randrange(6)}", topic, score=rng.random())]
            upd.on_search(ctx, "q", ts, tags, [ftag("doc", topic, 0.5)], hangul=rng.random(), settle=settle)
        elif kind == 1:
            upd.on_follow(ctx, creator, ts, follow=rng.random() < 0.7, settle=settle)
        else:
            etype = rng.choice(["impression", "watch", "skip", "like", "share", "comment"])
            upd.on_clip_event(ctx, etype, clip, topic, creator, ts, watch_ratio=rng.random() * 1.5, settle=settle)
    ctx.settle()
    return ctx


@pytest.mark.parametrize("seed", range(5))
def test_pending_decay_gives_the_same_context_as_decaying_every_event(seed: int) -> None:
    eager, lazy = _fold_random_log(seed, settle=True), _fold_random_log(seed, settle=False)
    assert lazy.to_dict().keys() == eager.to_dict().keys()
    assert set(lazy.topics) == set(eager.topics) and set(lazy.creators) == set(eager.creators)
    assert set(lazy.tags) == set(eager.tags) and set(lazy.liked) == set(eager.liked)
    for k, a in eager.topics.items():
        b = lazy.topics[k]
        for signal in ("search", "doc_click", "watch", "skip", "engage"):
            assert getattr(b, signal) == pytest.approx(getattr(a, signal), rel=1e-9, abs=1e-300)
    for k, c in eager.creators.items():
        assert lazy.creators[k].strength == pytest.approx(c.strength, rel=1e-9) and lazy.creators[k].follow == c.follow
    for k, t in eager.tags.items():
        assert lazy.tags[k].weight == pytest.approx(t.weight, rel=1e-9)
    for k, w in eager.liked.items():
        assert lazy.liked[k] == pytest.approx(w, rel=1e-9)


def test_pending_decay_is_applied_before_the_context_is_serialised() -> None:
    ctx, upd = UserContext(), ContextUpdater(SignalConfig(half_life_days=7))
    upd.on_clip_event(ctx, "like", "c1", "533", "cr1", 1000.0, settle=False)
    upd.on_clip_event(ctx, "impression", "c2", "533", "cr1", 1000.0 + 7 * DAY, settle=False)
    assert ctx.pending == pytest.approx(0.5)  # the decay is waiting, the stored amount is not yet halved
    d = ctx.to_dict()
    assert "pending" not in d and ctx.pending == 1.0
    assert d["topics"]["533"]["engage"] == pytest.approx(0.5) and d["liked"]["c1"] == pytest.approx(0.5)
    assert UserContext.from_dict(d).pending == 1.0

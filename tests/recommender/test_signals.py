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

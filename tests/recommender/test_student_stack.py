"""The recommender with the real shipped student as its tagger (not the stand-in), end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from cli.wiring import load_stack
from clipfeed.world import WorldConfig, build_world
from recommender import ContextUpdater, FeedBuilder, replay
from recommender.evaluate import Truth


@pytest.mark.slow
def test_student_tags_drive_a_cold_start_feed(tmp_path: Path) -> None:
    build_world(tmp_path, WorldConfig(seed=5, n_clips=300, n_creators=30, n_users=50), progress=False)
    stack = load_stack(tmp_path, tagger="student")
    assert type(stack.tagging.tagger).__name__ == "StudentTagger"
    assert stack.tagging.cache  # every search of the world was tagged in batches up front
    truth = Truth.load(stack.world)
    cold = sorted(u for u, t in truth.users.items() if t["cold"] and stack.world.users.get(u))
    uid = cold[0]
    ctx = replay(ContextUpdater(stack.cfg.signals), stack.catalog, stack.tagging, stack.world.users[uid])
    assert ctx.tags, "the student's tags reached the user's context"
    feed = FeedBuilder(stack.catalog, None, stack.cfg).build(ctx, 10, user_key=uid)
    assert len(feed.items) == 10 and not feed.fallback
    queries = {q.query for q in stack.world.users[uid].queries}
    assert any(it.explanation.get("search") in queries for it in feed.items)

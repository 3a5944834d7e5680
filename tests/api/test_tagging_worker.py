"""The bounded background tagging worker: pending searches fold in later, overload falls back to raw
keywords, a failing tagger never loses a search, tags are shared through the store, a clean stop
folds in what is queued, and feed requests never wait for the tagger."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from api import MemoryStore, RedisStore, create_app
from api.embedded import EmbeddedRedis
from api.services import Metrics, RateLimiter, Services
from clipfeed.protocols import IntentTag
from recommender import QueryAsTagTagger, SearchTagging
from tests.api.conftest import KEY, search


class GatedTagger:
    """Tags like the stand-in, but only once ``gate`` is set (a slow model, under the test's control)."""

    name = "gated"

    def __init__(self, fail: bool = False) -> None:
        self.gate = threading.Event()
        self.calls = 0
        self.fail = fail

    def tag_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[list[IntentTag]]:
        self.calls += 1
        self.gate.wait(timeout=20)
        if self.fail:
            raise RuntimeError("model crashed")
        return QueryAsTagTagger().tag_batch(queries, docs)


def with_tagger(services: Services, tagger: object, **settings: object) -> Services:
    tagging = SearchTagging(tagger, services.tagging.topic_model)  # type: ignore[arg-type]
    return dataclasses.replace(
        services,
        tagging=tagging,
        metrics=Metrics(),
        limiter=RateLimiter(10_000, 10_000),
        locks={},
        settings=services.settings.model_copy(update={"tagger_wait_ms": 20.0, **settings}),
    )


def wait_for(check: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError("condition not reached in time")


def test_a_slow_search_folds_in_later_and_feeds_never_wait(services: Services) -> None:
    tagger = GatedTagger()
    svc = with_tagger(services, tagger)
    with TestClient(create_app(svc, MemoryStore())) as c:
        user = "slow-searcher"
        r = c.post("/v1/events", json={"events": [search("w1", user, "손흥민 골 하이라이트")]}, headers=KEY).json()
        assert r["accepted"] == 1 and r["results"][0]["tagging"] == "pending"
        assert c.get(f"/v1/users/{user}/context").json()["searches"] == []
        t0 = time.perf_counter()
        feed = c.get(f"/v1/users/{user}/feed?limit=5")
        assert feed.status_code == 200 and time.perf_counter() - t0 < 2.0  # the tagger is still blocked
        assert "clipfeed_tagger_queue_depth 1.0" in c.get("/metrics").text
        tagger.gate.set()
        wait_for(lambda: c.get(f"/v1/users/{user}/context").json()["searches"])
        ctx = c.get(f"/v1/users/{user}/context").json()
        assert ctx["searches"][0]["via"] == "tagger" and ctx["tags"][0]["tag"] == "손흥민 골 하이라이트"
        after = c.get(f"/v1/users/{user}/feed?limit=5").json()
        assert not after["fallback"] and "손흥민 골 하이라이트" in after["items"][0]["explanation"]["reason"]
        assert 'clipfeed_searches_total{via="tagger_late"} 1.0' in c.get("/metrics").text


def test_overload_falls_back_to_raw_keywords_and_says_so(services: Services) -> None:
    tagger = GatedTagger()
    svc = with_tagger(services, tagger, tagger_queue_size=1)
    with TestClient(create_app(svc, MemoryStore())) as c:
        body = {"events": [search("o1", "u-o1", "오타니 홈런"), search("o2", "u-o2", "이과수 폭포 투어")]}
        r = c.post("/v1/events", json=body, headers=KEY).json()
        assert [x["tagging"] for x in r["results"]] == ["pending", "raw_keywords"]
        ctx = c.get("/v1/users/u-o2/context").json()
        assert ctx["searches"][0]["via"] == "raw_keywords" and ctx["tags"][0]["tag"] == "이과수 폭포 투어"
        assert 'clipfeed_fallbacks_total{kind="tagger_overloaded"} 1.0' in c.get("/metrics").text
        # /v1/tags answers 503 while the queue is full, with Retry-After
        t = c.post("/v1/tags", json={"query": "새 검색어"}, headers=KEY)
        assert t.status_code == 503 and t.headers["Retry-After"] == "1"
        tagger.gate.set()
        wait_for(lambda: c.get("/v1/users/u-o1/context").json()["searches"])


def test_a_failing_tagger_loses_no_search(services: Services) -> None:
    tagger = GatedTagger(fail=True)
    tagger.gate.set()
    svc = with_tagger(services, tagger, tagger_wait_ms=2000.0)
    with TestClient(create_app(svc, MemoryStore())) as c:
        r = c.post("/v1/events", json={"events": [search("f1", "u-f1", "고양이 영상")]}, headers=KEY).json()
        assert r["results"][0]["tagging"] == "raw_keywords"
        ctx = c.get("/v1/users/u-f1/context").json()
        assert ctx["searches"][0]["via"] == "raw_keywords"
        # the failure is not cached: a later search goes to the tagger again
        c.post("/v1/events", json={"events": [search("f2", "u-f1", "고양이 영상")]}, headers=KEY)
        assert tagger.calls >= 2


@pytest.mark.redis
def test_tags_are_shared_through_the_store(services: Services, embedded_redis: EmbeddedRedis) -> None:
    def store() -> RedisStore:
        return RedisStore(embedded_redis.url, pool_size=2, timeout_s=1.0)

    first = GatedTagger()
    first.gate.set()
    with TestClient(create_app(with_tagger(services, first, tagger_wait_ms=2000.0), store())) as c:
        r = c.post("/v1/events", json={"events": [search("s1", "u-s1", "easy pasta recipe")]}, headers=KEY).json()
        assert r["results"][0]["tagging"] == "tagger"
    second = GatedTagger()  # never opened: a call would block the test for 20 s and fail it
    with TestClient(create_app(with_tagger(services, second), store())) as c:
        r = c.post("/v1/events", json={"events": [search("s2", "u-s2", "Easy  pasta recipe")]}, headers=KEY).json()
        assert r["results"][0]["tagging"] == "cache"
        assert second.calls == 0
        assert c.get("/v1/users/u-s2/context").json()["tags"][0]["tag"] == "easy pasta recipe"


@pytest.mark.redis
def test_a_clean_stop_folds_in_queued_searches(services: Services, embedded_redis: EmbeddedRedis) -> None:
    def store() -> RedisStore:
        return RedisStore(embedded_redis.url, pool_size=2, timeout_s=1.0)

    tagger = GatedTagger()
    with TestClient(create_app(with_tagger(services, tagger), store())) as c:
        r = c.post("/v1/events", json={"events": [search("q1", "u-q1", "제주 여행 코스")]}, headers=KEY).json()
        assert r["results"][0]["tagging"] == "pending"
        threading.Timer(0.3, tagger.gate.set).start()
    # after shutdown: the worker drained the queue into the store before closing it
    with TestClient(create_app(with_tagger(services, QueryAsTagTagger()), store())) as c2:
        searches = c2.get("/v1/users/u-q1/context").json()["searches"]
        assert [s["query"] for s in searches] == ["제주 여행 코스"]


@pytest.mark.parametrize("drain", [0.0])
def test_a_stop_past_its_drain_time_still_folds_in_with_raw_keywords(services: Services, drain: float) -> None:
    import asyncio

    from api.tagging import TaggingWorker

    tagger = GatedTagger()
    tagging = SearchTagging(tagger, services.tagging.topic_model)
    folded: list[tuple[str, str]] = []

    async def scenario() -> None:
        worker = TaggingWorker(tagging, max_queue=8)
        job = worker.submit("부산 맛집", [])
        assert job is not None

        async def fold(tags: object, via: str) -> None:
            folded.append((tags[0][0].tag, via))  # type: ignore[index]

        job.deferred.append(fold)  # type: ignore[arg-type]
        await asyncio.sleep(0.05)
        await worker.stop(drain_s=drain)
        assert worker.submit("more", []) is None  # a stopped worker takes nothing

    asyncio.run(scenario())
    tagger.gate.set()
    assert folded == [("부산 맛집", "raw_keywords")]


def test_a_shutdown_step_that_never_returns_does_not_hold_the_process(
    services: Services, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A store whose close hangs (a Redis that stopped answering) is logged and left behind: the
    app still finishes its shutdown."""
    import asyncio

    import api.app as app_module

    monkeypatch.setattr(app_module, "SHUTDOWN_STORE_S", 0.5)

    class HangingClose(MemoryStore):
        async def close(self) -> None:
            await asyncio.Event().wait()  # never set

    t0 = time.monotonic()
    app = create_app(with_tagger(services, QueryAsTagTagger()), HangingClose())
    with caplog.at_level("WARNING", logger="clipfeed.api"), TestClient(app) as c:
        assert c.get("/healthz").status_code == 200
    assert time.monotonic() - t0 < 10
    assert any("closing the store did not finish" in r.getMessage() for r in caplog.records)

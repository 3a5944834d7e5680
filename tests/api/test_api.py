from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api import MemoryStore, RedisStore, create_app
from api.embedded import EmbeddedRedis
from api.services import RateLimiter, Services
from api.store import FeedStore
from tests.api.conftest import KEY, search


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
def client(request: pytest.FixtureRequest, services: Services) -> Iterator[TestClient]:
    store: FeedStore
    if request.param == "memory":
        store = MemoryStore()
    elif request.param == "redis":
        server: EmbeddedRedis = request.getfixturevalue("embedded_redis")
        store = RedisStore(server.url, pool_size=4, timeout_s=1.0)
    else:  # a real 3-master Redis Cluster (redis+cluster:// URL)
        store = RedisStore(request.getfixturevalue("redis_cluster").url, pool_size=4, timeout_s=1.0)
    services.limiter = RateLimiter(10_000, 10_000)
    with TestClient(create_app(services, store)) as c:
        yield c


def test_writes_need_a_valid_key(client: TestClient) -> None:
    body = {"events": [search("a1", "auth-user", "손흥민 골")]}
    assert client.post("/v1/events", json=body).status_code == 401
    assert client.post("/v1/events", json=body, headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.post("/v1/events", json=body, headers={"X-API-Key": "other-key"}).status_code == 200


def test_search_then_next_feed_changes_and_replay_is_idempotent(client: TestClient) -> None:
    user = f"newbie-{id(client)}"
    before = client.get(f"/v1/users/{user}/feed?limit=5").json()
    assert before["fallback"] and before["arm"] == "full"
    body = {"events": [search(f"s1-{user}", user, "손흥민 골 하이라이트")]}
    first = client.post("/v1/events", json=body, headers=KEY).json()
    assert first["accepted"] == 1
    ctx_after_first = client.get(f"/v1/users/{user}/context").json()
    again = client.post("/v1/events", json=body, headers=KEY).json()
    assert again["duplicates"] == 1 and again["results"][0]["status"] == "duplicate"
    assert client.get(f"/v1/users/{user}/context").json() == ctx_after_first  # a replay changes nothing
    after = client.get(f"/v1/users/{user}/feed?limit=5").json()
    assert not after["fallback"]
    assert {i["clip_id"] for i in after["items"]} != {i["clip_id"] for i in before["items"]}
    assert all(i["topics"] == ["533"] for i in after["items"][:3])
    assert "손흥민 골 하이라이트" in after["items"][0]["explanation"]["reason"]


def test_feedback_updates_context_at_once(client: TestClient) -> None:
    user = f"fb-{id(client)}"
    client.post("/v1/events", json={"events": [search(f"f0-{user}", user, "오타니 홈런")]}, headers=KEY)
    feed = client.get(f"/v1/users/{user}/feed?limit=3").json()
    clip = feed["items"][0]["clip_id"]
    ev = {"event_id": f"f1-{user}", "user_id": user, "ts": 1772700100, "type": "skip", "clip_id": clip}
    assert client.post("/v1/events", json={"events": [ev]}, headers=KEY).json()["accepted"] == 1
    ctx = client.get(f"/v1/users/{user}/context").json()
    assert ctx["clip_events"] == 1 and any(t["skip"] > 0 for t in ctx["topics"])
    again = client.get(f"/v1/users/{user}/feed?limit=3").json()
    assert clip not in {i["clip_id"] for i in again["items"]}


def test_pages_of_one_session_never_repeat(client: TestClient) -> None:
    user = f"pager-{id(client)}"
    client.post("/v1/events", json={"events": [search(f"p0-{user}", user, "고양이 영상")]}, headers=KEY)
    seen: list[str] = []
    cursor = None
    for _ in range(4):
        url = f"/v1/users/{user}/feed?limit=5" + (f"&cursor={cursor}" if cursor else "")
        page = client.get(url).json()
        seen += [i["clip_id"] for i in page["items"]]
        cursor = page["cursor"]
    assert len(seen) == 20 and len(set(seen)) == 20


def test_bad_input_gets_clear_4xx(client: TestClient) -> None:
    assert client.get("/v1/users/bad%20user/feed").status_code == 422
    r = client.get("/v1/users/x/feed?limit=999")
    assert r.status_code == 422 and r.json()["details"][0]["field"] == "query.limit"
    bad = {"events": [{"event_id": "b1", "user_id": "u", "ts": 1, "type": "watch", "clip_id": "c1"}]}
    r = client.post("/v1/events", json=bad, headers=KEY)
    assert r.status_code == 422 and "watch_ratio" in r.text and "Traceback" not in r.text
    too_many = {"events": [search(f"m{i}", "u", "q") for i in range(501)]}
    assert client.post("/v1/events", json=too_many, headers=KEY).status_code == 422
    unknown = {"events": [{"event_id": "b2", "user_id": "u", "ts": 1, "type": "like", "clip_id": "nope"}]}
    r = client.post("/v1/events", json=unknown, headers=KEY).json()
    assert r["rejected"] == 1 and "unknown clip_id" in r["results"][0]["reason"]


def test_health_readiness_metrics_and_openapi(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").status_code == 200
    client.get("/v1/users/m1/feed")
    text = client.get("/metrics").text
    assert "clipfeed_request_seconds_bucket" in text and 'clipfeed_feed_arm_total{arm="full"}' in text
    # the API serves the shipped ranker's trees compiled (lleaves is a dependency): both boosters
    assert 'clipfeed_ranker_compiled{booster="content"} 1.0' in text
    assert 'clipfeed_ranker_compiled{booster="residual"} 1.0' in text
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/events", "/v1/users/{user_id}/feed", "/v1/users/{user_id}/context", "/v1/tags"} <= set(paths)


def test_tags_endpoint(client: TestClient) -> None:
    r = client.post("/v1/tags", json={"query": "볼리비아 비자 신청 서류"}, headers=KEY).json()
    assert r["tags"][0]["keep"] is False and r["tags"][0]["reason"].startswith("not clip-worthy")


def test_rate_limit_gives_429(services: Services) -> None:
    services.limiter = RateLimiter(rate=0.001, burst=3)
    with TestClient(create_app(services, MemoryStore())) as c:
        codes = [c.get("/v1/users/r1/feed", headers={"X-API-Key": "other-key"}).status_code for _ in range(5)]
    assert codes[:3] == [200, 200, 200] and codes[3:] == [429, 429]
    services.limiter = RateLimiter(10_000, 10_000)


def test_experiment_arms_are_deterministic(services: Services) -> None:
    from api.services import parse_arms

    services.arms = parse_arms("full:50,popularity:30,shuffle:20")
    try:
        arms = [services.arm(f"user{i}") for i in range(1000)]
        assert arms == [services.arm(f"user{i}") for i in range(1000)]
        share = {a: arms.count(a) / 1000 for a in ("full", "popularity", "shuffle")}
        assert 0.4 < share["full"] < 0.6 and 0.2 < share["popularity"] < 0.4 and 0.1 < share["shuffle"] < 0.3
    finally:
        services.arms = [("full", 100)]
    with pytest.raises(ValueError, match="bad entry"):
        parse_arms("full:50,magic:50")


@pytest.mark.redis
def test_redis_down_serves_fallback_then_aof_restores(services: Services, tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    store = RedisStore(server.url, pool_size=2, timeout_s=0.3)
    services.limiter = RateLimiter(10_000, 10_000)
    user = "durable-user"
    with TestClient(create_app(services, store)) as c:
        assert c.post("/v1/events", json={"events": [search("d1", user, "손흥민 골")]}, headers=KEY).status_code == 200
        ctx = c.get(f"/v1/users/{user}/context").json()
        assert ctx["tags"]
        import time

        time.sleep(1.2)  # appendfsync everysec
        server.kill()
        r = c.get(f"/v1/users/{user}/feed?limit=4")
        assert r.status_code == 200 and r.headers["X-Clipfeed-Fallback"] == "store-unavailable"
        assert len(r.json()["items"]) == 4
        assert c.get("/readyz").status_code == 503
        assert c.post("/v1/events", json={"events": [search("d2", user, "x")]}, headers=KEY).status_code == 503
        assert 'clipfeed_fallbacks_total{kind="feed_store_down"}' in c.get("/metrics").text
        server.start()
        assert c.get("/readyz").status_code == 200
        assert c.get(f"/v1/users/{user}/context").json()["tags"] == ctx["tags"]  # back from the AOF
    server.stop()
    asyncio.run(asyncio.sleep(0))


def test_feature_contributions_on_request(client: TestClient) -> None:
    user = f"feat-{id(client)}"
    client.post("/v1/events", json={"events": [search(f"c0-{user}", user, "손흥민 골")]}, headers=KEY)
    plain = client.get(f"/v1/users/{user}/feed?limit=3").json()["items"][0]["explanation"]
    rich = client.get(f"/v1/users/{user}/feed?limit=3&features=true").json()["items"][0]["explanation"]
    assert "top_features" not in plain and plain["reason"].startswith("because you searched")
    assert len(rich["top_features"]) == 3


def test_an_unhandled_error_is_a_bare_500_and_still_timed(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    services.limiter = RateLimiter(10_000, 10_000)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail at /srv/models")

    with TestClient(create_app(services, MemoryStore()), raise_server_exceptions=False) as c:
        monkeypatch.setattr(services.builder, "build", broken)
        r = c.get("/v1/users/boom-user/feed?limit=3")
        assert r.status_code == 500 and r.json() == {"error": "internal error"}
        assert "secret" not in r.text and "Traceback" not in r.text
        metrics = c.get("/metrics").text
    assert 'clipfeed_request_seconds_count{route="/v1/users/{user_id}/feed"}' in metrics


def test_the_serving_process_runs_openblas_single_threaded(services: Services) -> None:
    from threadpoolctl import threadpool_info

    create_app(services, MemoryStore())
    pools = [p for p in threadpool_info() if p["internal_api"] == "openblas"]
    assert pools and all(p["num_threads"] == 1 for p in pools)


def test_a_batch_over_many_users_lands_whole_and_in_order(client: TestClient) -> None:
    clips = [i["clip_id"] for i in client.get("/v1/users/batch-probe/feed?limit=4").json()["items"]]
    users = [f"batch-{id(client)}-{k}" for k in range(12)]
    events: list[dict[str, object]] = []
    for k, user in enumerate(users):
        events.append(search(f"b-{user}-s", user, ["손흥민 골", "오타니 홈런", "이과수 폭포"][k % 3], ts=1772700000))
        for j, clip in enumerate(clips):
            events.append(
                {"event_id": f"b-{user}-{j}", "user_id": user, "ts": 1772700010 + j, "type": "skip", "clip_id": clip}
            )
    events.reverse()  # arrival order is not time order: each user's events are folded in time order
    r = client.post("/v1/events", json={"events": events}, headers=KEY).json()
    assert r["accepted"] == len(events) and [x["event_id"] for x in r["results"]] == [e["event_id"] for e in events]
    for user in users:
        ctx = client.get(f"/v1/users/{user}/context").json()
        assert ctx["clip_events"] == len(clips) and len(ctx["searches"]) == 1
        assert ctx["searches"][0]["ts"] == 1772700000  # folded before the later skips
    again = client.post("/v1/events", json={"events": events}, headers=KEY).json()
    assert again["duplicates"] == len(events)


def test_feed_body_is_the_documented_schema(client: TestClient) -> None:
    """Feeds are written by orjson without FastAPI's re-validation: the body must still be exactly
    the ``FeedResponse`` the OpenAPI schema documents, for personalised and fallback feeds."""
    from api.schemas import FeedResponse

    user = f"schema-{id(client)}"
    cold = client.get(f"/v1/users/{user}/feed?limit=5")  # no context yet: popular fallback
    body = {
        "events": [{"event_id": f"{user}-1", "user_id": user, "ts": 1772700000, "type": "search", "query": "손흥민 골"}]
    }
    assert client.post("/v1/events", json=body, headers=KEY).status_code == 200
    warm = client.get(f"/v1/users/{user}/feed?limit=5")
    for r in (cold, warm):
        assert r.status_code == 200 and r.headers["content-type"] == "application/json"
        parsed = FeedResponse.model_validate_json(r.content)
        assert parsed.model_dump(mode="json") == r.json()
        assert set(r.json()) == set(FeedResponse.model_fields)
    assert cold.json()["fallback"] and warm.json()["fallback"] is None and warm.json()["items"]

"""The console's read endpoints: clip cards (/v1/clips) and the raw-keyword baseline feed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api import MemoryStore, create_app
from api.browse import MAX_CLIP_IDS
from api.services import RateLimiter, Services
from recommender.evaluate import raw_keyword_ranking
from tests.api.conftest import KEY, search


@pytest.fixture
def client(services: Services) -> Iterator[TestClient]:
    services.limiter = RateLimiter(10_000, 10_000)
    with TestClient(create_app(services, MemoryStore())) as c:
        yield c


def test_clip_cards_carry_titles_creators_and_topic_names(client: TestClient, services: Services) -> None:
    ids = services.catalog.ids[:3]
    r = client.get(f"/v1/clips?ids={ids[2]},{ids[0]},nope,{ids[0]}")
    assert r.status_code == 200
    body = r.json()
    assert [c["clip_id"] for c in body["clips"]] == [ids[2], ids[0]] and body["missing"] == ["nope"]
    card, clip = body["clips"][1], services.catalog.clips[0]
    assert card["title"] == clip.title and card["creator_id"] == clip.creator_id
    topic = card["topics"][0]
    assert topic["id"] == services.catalog.topic[0]
    assert topic["name"] == services.catalog.taxonomy.name(topic["id"]) and topic["tier1"]


def test_clip_ids_are_validated_and_bounded(client: TestClient, services: Services) -> None:
    assert client.get("/v1/clips").status_code == 422
    assert client.get("/v1/clips?ids=a,,b").status_code == 422
    assert client.get("/v1/clips?ids=%3Cscript%3E").status_code == 422
    many = ",".join(f"x{i}" for i in range(MAX_CLIP_IDS + 1))
    r = client.get(f"/v1/clips?ids={many}")
    assert r.status_code == 422 and str(MAX_CLIP_IDS) in r.json()["error"]
    assert client.get("/v1/clips?ids=" + ",".join(services.catalog.ids[:MAX_CLIP_IDS])).status_code == 200


def test_raw_keyword_baseline_is_the_offline_baseline_and_leaks_where_the_full_feed_does_not(
    client: TestClient, services: Services
) -> None:
    user = "argentina-planner"
    cold = client.get(f"/v1/users/{user}/feed/baseline?system=raw_keywords&limit=5").json()
    assert cold["fallback"] and cold["arm"] == "raw_keywords" and len(cold["items"]) == 5
    events = [
        search("s1", user, "볼리비아 비자", ("이과수 폭포 투어 후기",)),
        search("s2", user, "아르헨티나", ts=1772700060),
    ]
    assert client.post("/v1/events", json={"events": events}, headers=KEY).json()["accepted"] == 2
    raw = client.get(f"/v1/users/{user}/feed/baseline?system=raw_keywords&limit=10").json()
    assert raw["fallback"] is None and raw["cursor"] is None
    ids = [i["clip_id"] for i in raw["items"]]
    # the same ranking as the offline evaluation's baseline over the user's stored searches
    assert ids == [c for c, _ in raw_keyword_ranking(services.catalog, ["볼리비아 비자", "아르헨티나"], set(), 10)]
    assert all(it["explanation"]["words"] for it in raw["items"])
    assert any("아르헨티나" in it["explanation"]["reason"] for it in raw["items"])
    full = client.get(f"/v1/users/{user}/feed?limit=10").json()
    tier1 = services.catalog.taxonomy.tier1_of

    def off_travel(items: list[dict[str, object]]) -> int:
        return sum(services.catalog.taxonomy.name(tier1(str(it["topics"][0]))) != "Travel" for it in items)  # type: ignore[index]

    assert off_travel(raw["items"]) >= off_travel(full["items"]) + 3  # Argentine politics/football vs the trip


def test_baseline_excludes_seen_clips_and_rejects_unknown_systems(client: TestClient) -> None:
    user = "raw-seen"
    client.post("/v1/events", json={"events": [search("r1", user, "아르헨티나")]}, headers=KEY)
    first = client.get(f"/v1/users/{user}/feed/baseline?limit=3").json()["items"][0]["clip_id"]
    skip = {"event_id": "r2", "user_id": user, "ts": 1772700100, "type": "skip", "clip_id": first}
    client.post("/v1/events", json={"events": [skip]}, headers=KEY)
    assert first not in {i["clip_id"] for i in client.get(f"/v1/users/{user}/feed/baseline?limit=3").json()["items"]}
    assert client.get(f"/v1/users/{user}/feed/baseline?system=magic").status_code == 422
    assert client.get("/v1/users/bad%20id/feed/baseline").status_code == 422


def test_console_is_served_with_a_strict_policy(client: TestClient) -> None:
    r = client.get("/console", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/console/"
    page = client.get("/console/")
    assert page.status_code == 200 and '<script type="module" src="console.js">' in page.text
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe" not in csp
    assert client.get("/console/console.js").headers["content-type"].startswith("text/javascript")
    assert client.get("/console/../app.py").status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/clips", "/v1/users/{user_id}/feed/baseline"} <= set(paths)
    assert not any(p.startswith("/console") for p in paths)


def test_read_auth_covers_the_new_reads(services: Services) -> None:
    before = services.settings
    services.settings = before.model_copy(update={"read_auth": True})
    try:
        with TestClient(create_app(services, MemoryStore())) as c:
            clip = services.catalog.ids[0]
            assert c.get(f"/v1/clips?ids={clip}").status_code == 401
            assert c.get("/v1/users/u1/feed/baseline").status_code == 401
            assert c.get(f"/v1/clips?ids={clip}", headers=KEY).status_code == 200
            assert c.get("/v1/users/u1/feed/baseline", headers=KEY).status_code == 200
    finally:
        services.settings = before

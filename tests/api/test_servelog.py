from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import MemoryStore, create_app
from api.servelog import ServedLog
from api.services import Metrics, RateLimiter, Services
from clipfeed.settings import Settings
from recommender import FEATURES, RequestContext
from recommender.features import compute
from recommender.from_log import read_log
from tests.api.conftest import KEY, prior_services, search


def records(directory: Path) -> list[dict[str, object]]:
    out = []
    for p in sorted(directory.iterdir()):
        out += [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines()]
    return out


def event(n: int) -> dict[str, object]:
    return {"event_id": f"e{n}", "user_id": "u1", "ts": 1772700000.0 + n, "type": "skip", "clip_id": f"c{n}"}


def test_rotation_by_size_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    slog = ServedLog(tmp_path, rotate_bytes=4000, batch_size=7, interval_s=0.001)
    for n in range(300):
        assert slog.log_event(event(n))
    slog.close()
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 5 and all(p.name.endswith(".jsonl") for p in files)  # all closed: no .part left
    assert all(p.stat().st_size <= 4000 for p in files)
    for p in files:
        assert json.loads(p.read_text().splitlines()[0])["kind"] == "header"
    ids = [r["event_id"] for r in records(tmp_path) if r["kind"] == "event"]
    assert ids == [f"e{n}" for n in range(300)]  # in order, once each
    assert slog.written == 300 and slog.dropped == 0


def test_hourly_rotation_and_names_carry_hour_and_pid(tmp_path: Path) -> None:
    now = [1_780_000_000.0]
    slog = ServedLog(tmp_path, clock=lambda: now[0], start=False)
    slog.log_event(event(0))
    slog.start()
    while slog.written < 1:
        time.sleep(0.01)
    now[0] += 3600
    slog.log_event(event(1))
    slog.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert len(names) == 2
    want = {time.strftime("%Y%m%dT%H0000", time.gmtime(t)) for t in (now[0] - 3600, now[0])}
    assert {n.split("-")[1] for n in names} == want
    assert all(n.split("-")[2] == str(os.getpid()) for n in names)


def test_back_pressure_drops_and_counts_never_blocks(tmp_path: Path) -> None:
    dropped: list[tuple[str, int]] = []
    slog = ServedLog(tmp_path, queue_size=4, on_dropped=lambda why, n: dropped.append((why, n)))
    gate = threading.Event()
    write = slog._write

    def blocked(batch: list[dict[str, object]]) -> None:
        gate.wait()
        write(batch)

    slog._write = blocked  # type: ignore[method-assign]
    slog.log_event(event(0))
    deadline = time.monotonic() + 5
    while slog.depth and time.monotonic() < deadline:  # the writer took it and is stuck on "disk"
        time.sleep(0.01)
    t0 = time.perf_counter()
    results = [slog.log_event(event(n)) for n in range(1, 11)]
    assert time.perf_counter() - t0 < 0.5  # a full queue never blocks the caller
    assert results == [True] * 4 + [False] * 6
    assert slog.dropped == 6 and dropped == [("queue_full", 1)] * 6 and slog.depth == 4
    gate.set()
    slog.close()
    assert slog.written == 5
    assert not slog.log_event(event(99)) and dropped[-1] == ("closed", 1)  # after close: refused, counted


def test_close_flushes_everything_at_once(tmp_path: Path) -> None:
    slog = ServedLog(tmp_path, queue_size=20_000)
    x = np.random.default_rng(0).random((20, len(FEATURES)), dtype=np.float32)
    for n in range(2000):
        slog.log_feed(
            request_id=f"r{n}",
            user_id="u1",
            arm="full",
            session="s",
            page=0,
            request={"hour": 12, "device": "unknown"},
            history_len=0,
            candidates=300,
            clip_ids=[f"c{k}" for k in range(20)],
            scores=[0.5] * 20,
            x=x,
        )
    slog.close()  # at once: whatever is still queued is written before close returns
    read = read_log(tmp_path)
    assert len(read.feeds) == 2000 and read.open_files == 0
    assert np.allclose(np.array([it["x"] for it in read.feeds[-1]["items"]]), x, atol=1e-6)


@pytest.fixture(scope="module")
def base_services(small_world: Path) -> Services:
    return prior_services(small_world, Settings(api_keys="test-key"))


def logging_services(base: Services, directory: Path, **settings: object) -> Services:
    s = base.settings.model_copy(update={"servelog_dir": directory, **settings})
    return replace(base, settings=s, metrics=Metrics(), locks={}, limiter=RateLimiter(10_000, 10_000))


@pytest.fixture
def logged(base_services: Services, tmp_path: Path) -> Iterator[tuple[Services, Path]]:
    yield logging_services(base_services, tmp_path / "log"), tmp_path / "log"


def warm_user(svc: Services) -> str:
    return next(u for u, log in sorted(svc.world.users.items()) if log.events and log.queries)


def test_api_logs_each_served_feed_with_features_as_served_and_each_accepted_event(
    logged: tuple[Services, Path],
) -> None:
    svc, directory = logged
    user = warm_user(svc)
    with TestClient(create_app(svc, MemoryStore())) as client:
        r = client.get(f"/v1/users/{user}/feed?limit=20")
        page = r.json()
        assert r.headers["X-Clipfeed-Request-Id"]
        cursor = page["cursor"]
        client.get(f"/v1/users/{user}/feed?limit=20&cursor={cursor}")
        clip = page["items"][0]["clip_id"]
        body = {
            "events": [
                {
                    "event_id": "w1",
                    "user_id": user,
                    "ts": 1775000000,
                    "type": "watch",
                    "clip_id": clip,
                    "watch_ratio": 0.9,
                },
                {"event_id": "bad", "user_id": user, "ts": 1775000001, "type": "skip", "clip_id": "no-such-clip"},
                search("s1", "newbie", "손흥민 골"),
            ]
        }
        assert client.post("/v1/events", json=body, headers=KEY).json()["accepted"] == 2
        assert client.post("/v1/events", json=body, headers=KEY).json()["duplicates"] == 3  # not logged again
        client.get("/v1/users/newbie-without-anything/feed?limit=3")  # a fallback feed is logged too
        metrics = client.get("/metrics").text
    assert "clipfeed_servelog_queue_depth" in metrics and "clipfeed_servelog_written_total" in metrics
    header = records(directory)[0]
    assert header["kind"] == "header" and header["features"] == list(FEATURES)
    read = read_log(directory)
    first, second, fallback = read.feeds
    assert first["request_id"] == r.headers["X-Clipfeed-Request-Id"]
    assert (first["user_id"], first["arm"], first["page"], second["page"]) == (user, "full", 0, 1)
    assert second["session"] == first["session"] == cursor.split(".")[0]
    assert first["request"] == {"hour": 12, "device": "unknown"} and first["candidates"] >= 20
    assert [it["clip_id"] for it in first["items"]] == [it["clip_id"] for it in page["items"]]
    assert [it["position"] for it in first["items"]] == list(range(20))
    assert [it["score"] for it in first["items"]] == [it["score"] for it in page["items"]]
    # the rows are the ranker's features for each clip, as served (recomputed for one clip at a time),
    # the exploration slots' too (computed with the candidates', or after the response)
    assert any("exploration" in it["explanation"]["sources"] for it in page["items"])
    ctx = svc.catalog.view(svc.seed_context(user))
    for it in first["items"]:
        want = compute(ctx, svc.catalog, svc.builder.vectors, [svc.catalog.pos[it["clip_id"]]], RequestContext())
        assert np.allclose(it["x"], want[0], atol=1e-5), it["clip_id"]
    assert fallback["items"] and all(it["x"] is None for it in fallback["items"])
    events = {e["event_id"]: e for e in read.events}
    assert set(events) == {"w1", "s1"}
    assert events["w1"]["watch_ratio"] == 0.9 and events["w1"]["ts"] == 1775000000
    assert events["s1"]["query"] == "손흥민 골" and events["w1"]["logged_at"] >= first["ts"]


def test_shuffle_arm_rows_follow_their_items(base_services: Services, tmp_path: Path) -> None:
    svc = replace(logging_services(base_services, tmp_path), arms=[("shuffle", 100)])
    user = warm_user(svc)
    with TestClient(create_app(svc, MemoryStore())) as client:
        page = client.get(f"/v1/users/{user}/feed?limit=6").json()
    assert page["arm"] == "shuffle"
    (feed,) = read_log(tmp_path).feeds
    assert [it["clip_id"] for it in feed["items"]] == [it["clip_id"] for it in page["items"]]
    ctx = svc.catalog.view(svc.seed_context(user))
    for it in feed["items"]:
        want = compute(ctx, svc.catalog, svc.builder.vectors, [svc.catalog.pos[it["clip_id"]]], RequestContext())
        assert np.allclose(it["x"], want[0], atol=1e-5)


def test_app_restart_loses_nothing(logged: tuple[Services, Path]) -> None:
    svc, directory = logged
    users = sorted(svc.world.users)[:12]
    served = 0
    for _ in range(3):  # three app lifetimes over one log directory, each stopped cleanly
        with TestClient(create_app(svc, MemoryStore())) as client:
            for u in users:
                assert client.get(f"/v1/users/{u}/feed?limit=5").status_code == 200
                served += 1
    read = read_log(directory)
    assert read.open_files == 0 and read.files == 3
    ids = [f["request_id"] for f in read.feeds]
    assert len(ids) == served == len(set(ids))


def test_writer_wakes_once_per_interval_and_close_cuts_the_wait_short(tmp_path: Path) -> None:
    batches: list[int] = []
    slog = ServedLog(tmp_path, interval_s=0.3, on_written=batches.append)
    for n in range(5):  # within one interval: one write for all five
        slog.log_event(event(n))
    deadline = time.monotonic() + 5
    while slog.written < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batches == [5]
    slog.interval_s = 30.0
    slog.log_event(event(5))
    t0 = time.monotonic()
    slog.close()  # the writer is in its 30 s wait: close wakes it and everything is written
    assert time.monotonic() - t0 < 5 and slog.written == 6 and batches == [5, 1]


def test_logging_runs_after_the_response_and_its_failure_never_fails_a_request(
    logged: tuple[Services, Path], caplog: pytest.LogCaptureFixture
) -> None:
    svc, _ = logged
    user = warm_user(svc)
    app = create_app(svc, MemoryStore())
    calls: list[str] = []

    def broken(**record: object) -> bool:
        calls.append(str(record["request_id"]))
        raise OSError("disk on fire")

    with TestClient(app) as client:
        app.state.servelog.log_feed = broken
        r = client.get(f"/v1/users/{user}/feed?limit=5")
        assert r.status_code == 200 and len(r.json()["items"]) == 5
        assert client.get("/healthz").status_code == 200  # the loop ran the step and goes on
    assert calls == [r.headers["X-Clipfeed-Request-Id"]]
    assert "after-response step failed" in caplog.text and "disk on fire" in caplog.text

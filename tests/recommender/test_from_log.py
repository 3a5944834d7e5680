from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import MemoryStore, create_app
from api.servelog import ServedLog
from cli.main import main
from cli.wiring import Stack
from clipfeed.errors import InputError
from clipfeed.settings import Settings
from clipfeed.world.respond import Responder, simulate_traffic
from recommender import (
    FEATURES,
    ContextUpdater,
    FeedBuilder,
    Ranker,
    RecommenderConfig,
    RequestContext,
    UserContext,
    replay,
)
from recommender.features import compute
from recommender.from_log import build_training_from_log, read_log, train_from_log
from tests.api.conftest import prior_services

USERS = 40
FEEDS_PER_USER = 3


@pytest.fixture(scope="module")
def api_log(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log written by the API: warm world users request feeds and react with the world's choice model."""
    directory = tmp_path_factory.mktemp("servelog")
    svc = prior_services(small_world, Settings(api_keys="k", servelog_dir=directory))
    responder = Responder(small_world, seed=1)
    with TestClient(create_app(svc, MemoryStore())) as client:
        counts = simulate_traffic(
            client, responder, responder.warm_users()[:USERS], FEEDS_PER_USER, 10, headers={"X-API-Key": "k"}
        )
    assert counts["feeds"] == USERS * FEEDS_PER_USER and counts["events_accepted"] > counts["feeds"]
    return directory


def test_cli_trains_from_the_api_log_and_the_model_loads_and_scores(
    api_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "from-log"
    capsys.readouterr()
    assert main(["ranker", "train", "--from-log", str(api_log), "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["log_feeds"] == USERS * FEEDS_PER_USER
    assert summary["train_groups"] + summary["valid_groups"] == USERS * FEEDS_PER_USER
    assert summary["events_joined"] > 0 and summary["position_bias"].startswith("lightgbm")
    ranker = Ranker.load(out)
    assert ranker.meta["from_log"] == str(api_log)
    x = np.asarray([it["x"] for it in read_log(api_log).feeds[0]["items"]], dtype=np.float32)
    scores = ranker.predict(x)
    assert scores.shape == (len(x),) and np.isfinite(scores).all()


def test_positions_and_labels_reach_lightgbm(api_log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lt = build_training_from_log(api_log, meaningful=0.5)
    assert len(lt.data.positions) == len(lt.data.groups) == USERS * FEEDS_PER_USER
    assert all(list(p) == list(range(len(p))) for p in lt.data.positions)  # page order, top = 0
    labels = np.concatenate(lt.data.labels)
    assert set(np.unique(labels)) <= {0, 1, 2, 3} and labels.max() >= 2
    first = np.concatenate(lt.data.positions) == 0
    assert labels[first].mean() > labels[~first].mean()  # ranked best and always seen (users stop scrolling)
    seen: list[Any] = []
    real = lgb.Dataset

    def spy(*args: Any, **kwargs: Any) -> lgb.Dataset:
        seen.append(kwargs.get("position"))
        return real(*args, **kwargs)

    monkeypatch.setattr("recommender.ranker.lgb.Dataset", spy)
    train_from_log(api_log, RecommenderConfig())
    assert seen and all(p is not None and len(p) > 0 for p in seen)


def write_feed(slog: ServedLog, user: str, clips: list[str], ts: float) -> None:
    slog.log_feed(
        request_id=f"r{ts}",
        user_id=user,
        arm="full",
        session="s",
        page=0,
        request={"hour": 12, "device": "unknown"},
        history_len=0,
        candidates=len(clips),
        clip_ids=clips,
        scores=[1.0] * len(clips),
        x=np.ones((len(clips), len(FEATURES)), dtype=np.float32),
        ts=ts,
    )


def test_events_join_the_latest_feed_of_the_same_user_within_the_window(tmp_path: Path) -> None:
    now = [1000.0]
    slog = ServedLog(tmp_path, clock=lambda: now[0])
    write_feed(slog, "u1", ["a", "b", "c"], 1000.0)
    write_feed(slog, "u1", ["c", "d"], 1100.0)
    reactions: list[tuple[float, dict[str, Any]]] = [
        (1010.0, {"user_id": "u1", "type": "watch", "clip_id": "b", "watch_ratio": 0.9}),  # -> feed 1, grade 2
        (1020.0, {"user_id": "u2", "type": "like", "clip_id": "a"}),  # another user: not joined
        (1110.0, {"user_id": "u1", "type": "like", "clip_id": "c"}),  # -> the later feed that showed c
        (1200.0, {"user_id": "u1", "type": "watch", "clip_id": "d", "watch_ratio": 0.1}),  # feed 2, grade 1
        (9000.0, {"user_id": "u1", "type": "like", "clip_id": "a"}),  # past the window
    ]
    for at, ev in reactions:
        now[0] = at
        slog.log_event({"event_id": f"e{at}", "ts": at, **ev})
    slog.close()
    lt = build_training_from_log(tmp_path, meaningful=0.5, window_s=1800)
    assert [list(y) for y in lt.data.labels] == [[0, 2, 0], [3, 1]]
    assert lt.data.times == [1000.0, 1100.0] and lt.events_joined == 3


def test_schema_mismatch_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slog = ServedLog(tmp_path / "log", features=[*FEATURES, "a_feature_from_elsewhere"])
    slog.log_event({"event_id": "e1", "user_id": "u1", "ts": 1.0, "type": "skip", "clip_id": "a"})
    slog.close()
    with pytest.raises(InputError, match="same code version") as err:
        read_log(tmp_path / "log")
    assert ":1: field features:" in str(err.value) and "a_feature_from_elsewhere" in str(err.value)
    capsys.readouterr()
    assert main(["ranker", "train", "--from-log", str(tmp_path / "log"), "--out", str(tmp_path / "m")]) == 2
    assert "same code version" in capsys.readouterr().err


def test_torn_last_line_is_skipped_with_a_warning_other_bad_lines_fail(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    slog = ServedLog(tmp_path)
    write_feed(slog, "u1", ["a", "b"], 1000.0)
    slog.close()
    (path,) = tmp_path.iterdir()
    killed = path.with_name(path.name + ".part")  # a writer killed mid-line leaves its .part behind
    path.rename(killed)
    with killed.open("a", encoding="utf-8") as f:
        f.write('{"kind":"event","user_id":"u1","ty')
    with caplog.at_level(logging.WARNING):
        read = read_log(tmp_path)
    assert len(read.feeds) == 1 and read.torn_lines == 1 and read.open_files == 1
    assert "torn last line" in caplog.text and f"{killed}:3" in caplog.text
    with killed.open("a", encoding="utf-8") as f:
        f.write("\n{}\n")  # the torn line is no longer last: a bad record in the middle fails
    with pytest.raises(InputError, match=f"{killed.name}:3: invalid JSON"):
        read_log(tmp_path)


def test_train_needs_a_world_or_a_log(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ranker", "train", "--out", str(tmp_path / "m")]) == 2
    assert "--from-log" in capsys.readouterr().err
    assert main(["ranker", "train", "--from-log", str(tmp_path / "missing"), "--out", str(tmp_path / "m")]) == 2
    assert "not a served-impression log" in capsys.readouterr().err


def test_feed_carries_the_rows_it_was_ranked_with_exploration_slots_included(stack: Stack) -> None:
    builder = FeedBuilder(stack.catalog, None, stack.cfg)
    updater = ContextUpdater(stack.cfg.signals)
    uid, log = next((u, lg) for u, lg in sorted(stack.world.users.items()) if lg.events and lg.queries)
    ctx = replay(updater, stack.catalog, stack.tagging, log)
    req = RequestContext(hour=7, device="ios")
    view = stack.catalog.view(ctx)
    for rows_per_slot in (2, 0):  # the first draws' rows come with the candidates'; 0: all computed later
        builder.explore_rows = rows_per_slot
        feed = builder.build(replace(ctx), 20, req, user_key=uid)
        assert feed.features is not None and feed.features.shape == (len(feed.items), len(FEATURES))
        explored = [n for n, it in enumerate(feed.items) if "exploration" in it.explanation["sources"]]
        assert explored
        pending = np.isnan(feed.features[explored]).all(axis=1)
        assert pending.all() if rows_per_slot == 0 else not pending.any()
        assert not np.isnan(np.delete(feed.features, explored, axis=0)).any()
        assert feed.complete_features() is feed.features and not np.isnan(feed.features).any()
        for it, row in zip(feed.items, feed.features, strict=True):
            want = compute(view, stack.catalog, builder.vectors, [stack.catalog.pos[it.clip_id]], req)
            assert np.allclose(row, want[0], atol=1e-6), it.clip_id
    assert builder.build(UserContext(), 5).features is None  # a fallback page is not ranked

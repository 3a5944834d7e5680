"""`clipfeed serve` end to end: a real process, the embedded Redis, the printed requests."""

from __future__ import annotations

import json
import signal
import subprocess
import urllib.request
from pathlib import Path

import pytest

from tests.serving import start_serve


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_serve_with_embedded_redis(small_world: Path, tmp_path: Path, workers: int) -> None:
    """One process, or several worker processes sharing the one embedded Redis: an event posted
    through any of them is in the next feed from every one of them."""
    env = {"CLIPFEED_DATA_DIR": str(tmp_path / "data"), "CLIPFEED_API_KEYS": "k1"}
    proc, base = start_serve(small_world, env, subprocess.PIPE, "--workers", str(workers), ready_s=120)
    try:
        body = json.dumps(
            {
                "events": [
                    {"event_id": "s1", "user_id": "e2e", "ts": 1772700000, "type": "search", "query": "오타니 홈런"}
                ]
            }
        ).encode()
        req = urllib.request.Request(
            f"{base}/v1/events",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "X-API-Key": "k1"},
        )
        assert json.load(urllib.request.urlopen(req, timeout=5))["accepted"] == 1
        for _ in range(6):  # each a new connection: the workers share the listening socket
            feed = json.load(urllib.request.urlopen(f"{base}/v1/users/e2e/feed?limit=3", timeout=5))
            assert feed["items"][0]["topics"] == ["545"] and feed["arm"] == "full"
        if workers > 1:
            children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
            servers = [c for c in children if "redis-server" not in Path(f"/proc/{c}/cmdline").read_text()]
            assert len(servers) >= workers, children
        assert (tmp_path / "data" / "redis" / "appendonly.aof").exists() or any(
            (tmp_path / "data" / "redis").glob("appendonly*")
        )
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "Example requests" in out and f"{base}/v1/users/" in out and f"{base}/console/?user=" in out
    assert "Traceback" not in out
    alive = subprocess.run(["pgrep", "-f", str(tmp_path / "data")], capture_output=True, text=True)
    assert alive.stdout.strip() == ""  # the embedded redis-server stopped with the API


def test_the_served_heap_is_frozen_out_of_the_collector() -> None:
    import gc

    from cli.serve import settle_heap

    try:
        settle_heap()
        assert gc.get_freeze_count() > 0  # what was loaded is no longer walked by full collections
    finally:
        gc.unfreeze()

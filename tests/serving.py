"""`clipfeed serve` as a user starts it, for the tests that need a real server process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import IO

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_serve(
    world: Path, env: dict[str, str], stdout: IO[str] | int, *args: str, ready_s: float = 60.0
) -> tuple[subprocess.Popen[str], str]:
    """``clipfeed serve --world WORLD --host 127.0.0.1 --port P ARGS`` with ``env`` over the
    environment; returns the process and its base URL once /readyz answers. A server that exits or
    is not ready in ``ready_s`` is killed and fails the test, with its output where it was piped."""
    port = free_port()
    exe = Path(sys.executable).with_name("clipfeed")
    cmd = [str(exe), "serve", "--world", str(world), "--host", "127.0.0.1", "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=stdout, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            urllib.request.urlopen(f"{base}/readyz", timeout=1)
            return proc, base
        except OSError:
            time.sleep(0.25)
    exited = proc.poll() is not None
    proc.kill()
    out = proc.communicate(timeout=10)[0] if stdout == subprocess.PIPE else None
    pytest.fail(f"clipfeed serve {'exited' if exited else 'was not ready'}: {(out or '')[-2000:]}")

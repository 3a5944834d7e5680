"""Browser fixtures: a real `clipfeed serve` on loopback (small world, embedded Redis) and Debian's
headless Chromium driven by Playwright (no `playwright install`: the system browser is used)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.serving import start_serve

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "console-key"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
]


def chromium_path() -> str | None:
    """``CLIPFEED_CHROMIUM``, else Debian's /usr/bin/chromium, else a chromium on PATH."""
    for candidate in (os.environ.get("CLIPFEED_CHROMIUM"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return shutil.which("chromium") or shutil.which("chromium-browser")


def artifacts_dir() -> Path:
    base = os.environ.get("CLIPFEED_ARTIFACTS")
    out = Path(base) / "console" if base else ROOT / ".cache" / "artifacts" / "console"
    out.mkdir(parents=True, exist_ok=True)
    return out


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[str]


@pytest.fixture(scope="module")
def console_server(small_world: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`clipfeed serve` as a user starts it: its own process, the embedded Redis, an API key."""
    data = tmp_path_factory.mktemp("console_data")
    env = {
        "CLIPFEED_DATA_DIR": str(data),
        "CLIPFEED_API_KEYS": API_KEY,
        "CLIPFEED_EXPERIMENT_ARMS": "full:100",
        "CLIPFEED_TAGGER": "standin",
    }
    log = (data / "serve.log").open("w")
    try:
        proc, base = start_serve(small_world, env, log)
    except pytest.fail.Exception:  # not ready or exited: the failure shows the log's tail
        log.close()
        pytest.fail(f"clipfeed serve did not start: {(data / 'serve.log').read_text()[-2000:]}")
    try:
        yield Server(base, proc)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium_path()
    if path is None:
        pytest.skip(
            "chromium not found (looked at $CLIPFEED_CHROMIUM, /usr/bin/chromium, PATH): "
            "install Debian's package with `apt-get install -y chromium`"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, console_server: Server, request: pytest.FixtureRequest) -> Iterator[Any]:
    """A fresh browser context at laptop size; page errors fail the test; a screenshot is kept."""
    context = browser.new_context(viewport={"width": 1280, "height": 860}, locale="en-US")
    context.set_default_timeout(15_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    pg.base = console_server.base
    pg.allowed_errors = []  # substrings of console errors a test expects
    yield pg
    try:
        pg.screenshot(path=str(artifacts_dir() / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()
    unexpected = [e for e in errors if not any(a in e for a in pg.allowed_errors)]
    assert unexpected == [], f"browser errors: {unexpected}"

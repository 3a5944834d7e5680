"""One fast evaluation setting shared by ``clipfeed eval report`` and the notebooks (as CLI flags and
as ``CLIPNB_*`` variables), and the report on the small world, written once per session."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main

# name -> (report flag, notebook variable, value)
FAST: dict[str, tuple[str, str, str]] = {
    "users": ("--users", "CLIPNB_USERS", "60"),
    "tagger_models": ("--tagger-models", "CLIPNB_TAGGER_MODELS", "copy_query,standin"),
    "real_queries": ("--real-queries", "CLIPNB_REAL_QUERIES", "30"),
    "real_rows": ("--real-rows", "CLIPNB_REAL_ROWS", "300"),
    "feedback_users": ("--feedback-users", "CLIPNB_FEEDBACK_USERS", "30"),
    "importance_users": ("--importance-users", "CLIPNB_IMPORTANCE_USERS", "40"),
    "latency_users": ("--latency-users", "CLIPNB_LATENCY_USERS", "40"),
    "bootstrap": ("--bootstrap", "CLIPNB_BOOTSTRAP", "200"),
}

# What the lead's `benchmarks/api_load.py --json-out` writes, with some parts left out on purpose.
API_LOAD = {
    "rates": [
        {
            "rate": 50,
            "p50_ms": 6.1,
            "p95_ms": 9.0,
            "p99_ms": 12.5,
            "throughput": 49.9,
            "errors": 0,
            "latencies_ms": [5.0, 6.1, 6.3, 9.0, 12.5],
        },
        {"rate": 200, "p50_ms": 8.2, "p95_ms": 15.1, "throughput": 198.0, "errors": 1},
    ],
    "memory": {"bytes_per_user": 812},
}


@pytest.fixture(scope="session")
def api_load_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench") / "api_load.json"
    path.write_text(json.dumps(API_LOAD), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def report(
    small_world: Path, api_load_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, dict[str, Any]]:
    out = tmp_path_factory.mktemp("report")
    flags = [x for flag, _, value in FAST.values() for x in (flag, value)]
    code = main(
        [
            "eval",
            "report",
            "--world",
            str(small_world),
            "--out",
            str(out),
            "--api-load",
            str(api_load_file),
            *flags,
            "--json",
        ]
    )
    assert code == 0
    return out, json.loads((out / "metrics.json").read_text(encoding="utf-8"))

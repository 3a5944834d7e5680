"""Serving figures: the feed API's load benchmark (``benchmarks/api_load.py``'s JSON output, read
from a file) and what this process measures itself: the in-process feed latency distribution
(context -> candidates -> rank -> diversify) and the size of a user's serialised context.

The benchmark's JSON is read tolerantly: ``--json-out`` files (``rates``, ``mixed``,
``in_process_ms``, ``ingest``, ``memory``) and the older printed layout (``feed``, ``mixed_80_20``,
``ingestion``, ``redis_memory``, ``in_process_feed_ms``) both load; missing keys are left out.

>>> normalise({"feed": [{"rate": 50, "throughput": 49.8, "errors": 0, "feed": {"p50": 4.1, "p99": 9.0}}]})["rates"]
[{'rate': 50, 'p50_ms': 4.1, 'p95_ms': None, 'p99_ms': 9.0, 'throughput': 49.8, 'errors': 0}]
>>> normalise({"memory": {"bytes_per_user": 812}})
{'rates': [], 'memory': {'bytes_per_user': 812}}
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.evaluation.common import DEFAULT_API_LOAD
from cli.wiring import Stack, feed_builder
from recommender import ContextUpdater, Ranker, UserContext, replay

if TYPE_CHECKING:
    from matplotlib.figure import Figure

HOW_TO = "run `.venv/bin/python benchmarks/api_load.py --json-out {path}` first"


def _pct(entry: dict[str, Any], q: str) -> float | None:
    for key in (f"{q}_ms", q):
        if isinstance(entry.get(key), int | float):
            return float(entry[key])
    inner = entry.get("feed")
    if isinstance(inner, dict):
        return _pct(inner, q)
    return None


def _without_samples(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _without_samples(v) for k, v in x.items() if not k.endswith("latencies_ms")}
    return [_without_samples(v) for v in x] if isinstance(x, list) else x


def normalise(raw: dict[str, Any]) -> dict[str, Any]:
    """One layout for either format of the load benchmark's output (missing parts left out). Raw
    per-request feed latencies (``feed_latencies_ms`` or ``latencies_ms`` of a rate) are kept in
    ``distributions`` (rate -> list of ms), for distribution plots."""
    rates_raw = raw.get("rates", raw.get("feed", []))
    rates = []
    dists: dict[str, list[float]] = {}
    for e in rates_raw:
        if not isinstance(e, dict):
            continue
        rates.append(
            {
                "rate": e.get("rate"),
                "p50_ms": _pct(e, "p50"),
                "p95_ms": _pct(e, "p95"),
                "p99_ms": _pct(e, "p99"),
                "throughput": e.get("throughput"),
                "errors": e.get("errors"),
            }
        )
        samples = e.get("feed_latencies_ms", e.get("latencies_ms"))
        if isinstance(samples, list) and samples:
            dists[str(e.get("rate"))] = [float(v) for v in samples]
    out: dict[str, Any] = {"rates": rates}
    if dists:
        out["distributions"] = dists
    for new, old in (("mixed", "mixed_80_20"), ("in_process_ms", "in_process_feed_ms"), ("ingest", "ingestion")):
        value = raw.get(new, raw.get(old))
        if isinstance(value, dict):
            out[new] = _without_samples(value)
    for extra in ("new_searches_under_feed_load", "config"):
        if isinstance(raw.get(extra), dict):
            out[extra] = _without_samples(raw[extra])
    memory = raw.get("memory")
    if isinstance(memory, dict):
        out["memory"] = memory
    elif isinstance(raw.get("redis_memory"), dict):
        rm = raw["redis_memory"]
        out["memory"] = {"bytes_per_user": rm.get("bytes_per_user_context"), **rm}
    return out


def load_bench(path: Path | None = None) -> tuple[dict[str, Any] | None, str]:
    """(normalised figures, a message): None and how to produce the file when it is absent or unreadable."""
    path = path or DEFAULT_API_LOAD
    if not path.exists():
        return None, f"no load-benchmark output at {path}: {HOW_TO.format(path=path)}"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        return None, f"{path}: not readable as JSON ({e}); {HOW_TO.format(path=path)}"
    if not isinstance(raw, dict):
        return None, f"{path}: expected a JSON object; {HOW_TO.format(path=path)}"
    return normalise(raw), f"load-benchmark figures from {path}"


def _percentiles(values: list[float]) -> dict[str, float]:
    v = sorted(values)
    if not v:
        return {}

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))], 3)

    return {"p50_ms": at(0.5), "p95_ms": at(0.95), "p99_ms": at(0.99), "mean_ms": round(statistics.mean(v), 3)}


def in_process(stack: Stack, ranker: Ranker | None, users: int = 200, limit: int = 20) -> dict[str, Any]:
    """Feed latency in this process for the first ``users`` users, as the API serves a page: 20 clips
    with explanations and feature contributions (a warm second pass is timed, as a serving process
    would run), and the size of each user's context serialised as JSON."""
    upd = ContextUpdater(stack.cfg.signals)
    builder = feed_builder(stack, ranker)
    ids = sorted(stack.world.users)[:users]
    ctxs = [replay(upd, stack.catalog, stack.tagging, stack.world.users[u]) for u in ids]
    sizes = [len(json.dumps(c.to_dict(), ensure_ascii=False).encode("utf-8")) for c in ctxs]
    times: list[float] = []
    for rep in range(2):
        for u, ctx in zip(ids, ctxs, strict=True):
            fresh = UserContext.from_dict(ctx.to_dict())  # as a store read would hand it over
            t0 = time.perf_counter()
            builder.build(fresh, limit, user_key=u)
            if rep:
                times.append((time.perf_counter() - t0) * 1000)
    return {
        "users": len(ids),
        "latency": {**_percentiles(times), "samples": [round(t, 3) for t in times]},
        "context_bytes_per_user": {
            "mean": round(statistics.mean(sizes), 1) if sizes else 0.0,
            "max": max(sizes, default=0),
        },
    }


def run(stack: Stack, ranker: Ranker | None, users: int, api_load: Path | None) -> dict[str, Any]:
    """The whole serving section (what the report and ``04_serving.ipynb`` compute)."""
    bench, message = load_bench(api_load)
    return {"load_benchmark": bench, "load_benchmark_note": message, "in_process": in_process(stack, ranker, users)}


def figures(m: dict[str, Any]) -> dict[str, Figure]:
    """In-process latency histogram; API latency percentiles and throughput per request rate."""
    from cli.evaluation.common import new_figure

    figs: dict[str, Figure] = {}
    lat = m.get("in_process", {}).get("latency", {})
    if lat.get("samples"):
        fig, ax = new_figure(6, 3.4)
        ax.hist(lat["samples"], bins=40)
        for q in ("p50_ms", "p99_ms"):
            ax.axvline(lat[q], color="k", ls=":", label=f"{q.split('_')[0]} {lat[q]:.2f} ms")
        ax.set(xlabel="ms per feed (in process)", ylabel="feeds", title="feed latency in process")
        ax.legend()
        figs["serving_in_process"] = fig
    bench = m.get("load_benchmark") or {}
    rates = [r for r in bench.get("rates", []) if r.get("rate") is not None]
    if rates:
        fig, (ax1, ax2) = new_figure(10, 3.6, ncols=2)
        xs = [r["rate"] for r in rates]
        for q in ("p50_ms", "p95_ms", "p99_ms"):
            pts = [(x, r[q]) for x, r in zip(xs, rates, strict=True) if r.get(q) is not None]
            if pts:
                ax1.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=q.split("_")[0])
        ax1.set(xlabel="offered requests/s", ylabel="ms", title="feed API latency", yscale="log")
        ax1.legend()
        ax2.plot(xs, xs, "--", color="grey", label="offered")
        ax2.plot(xs, [r.get("throughput") or 0 for r in rates], "o-", label="served")
        ax2.set(xlabel="offered requests/s", ylabel="requests/s", title="throughput")
        ax2.legend()
        figs["serving_api"] = fig
    dists = bench.get("distributions", {})
    if dists:
        import numpy as np

        fig, ax = new_figure(6, 3.6)
        for rate, samples in dists.items():
            v = np.sort(np.asarray(samples))
            ax.plot(v, np.arange(1, len(v) + 1) / len(v), label=f"{rate} req/s")
        ax.set(xscale="log", xlabel="feed request latency (ms)", ylabel="share of requests", title="API latency CDF")
        ax.legend(fontsize=8)
        figs["serving_api_distribution"] = fig
    return figs

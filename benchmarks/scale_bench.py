"""Local vs Ray throughput on this machine: tagging a file of searches and training the ranker.

    .venv/bin/python benchmarks/scale_bench.py [--world .cache/world] [--queries 2000] [--ms-per-query 4]
                                               [--workers 1,2] [--skip-ranker] [--json-out F]
    clipfeed bench scale …

Tagging uses a stand-in tagger with a fixed cost per query (single-threaded numpy work of about
``--ms-per-query`` ms: the shape of a model call, not a model), so the figures show the engine, not
a model's speed; the same run with zero work per query measures Ray's fixed overhead. Training is
``clipfeed ranker train`` on the world: locally (``train_ranker``), then on Ray with 1 and 2 workers
(features on actors, LightGBM data-parallel through Ray Train). A local Ray cluster is started with
one CPU per core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class WorkTagger:
    """``tag_batch`` that costs about ``ms`` of one core per query: the query's words as tags."""

    def __init__(self, ms: float, wait_ms: float = 0.0) -> None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # one core per worker, like a model pinned to one thread
        self.ms, self.wait_ms = ms, wait_ms
        self.a = np.random.default_rng(0).standard_normal((96, 96))
        t0, n = time.perf_counter(), 0
        while time.perf_counter() - t0 < 0.2:
            self.a @ self.a
            n += 1
        self.reps = max(0, round(ms / 1000 / (0.2 / max(n, 1))))

    def tag_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[list[object]]:
        from clipfeed.protocols import IntentTag
        from clipfeed.text import tokens

        time.sleep(self.wait_ms / 1000 * len(queries))  # waiting on a remote model (an HTTP teacher)
        out = []
        for q in queries:
            for _ in range(self.reps):
                self.a @ self.a
            out.append([IntentTag(w, 0.9) for w in tokens(q)[:3]])
        return out


def work_tagger(ms: float, wait_ms: float = 0.0) -> WorkTagger:
    return WorkTagger(ms, wait_ms)


def write_shards(world: Path, n: int, out: Path, shards: int = 4) -> tuple[list[Path], Path]:
    """``n`` distinct searches of the world in ``shards`` JSONL files, and all of them in one file."""
    seen: dict[str, dict[str, object]] = {}
    with (world / "queries.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            seen.setdefault(row["query"].strip().lower(), {"query": row["query"], "docs": []})
    rows = list(seen.values())
    while len(rows) < n:  # top up with numbered variants when the world has fewer distinct searches
        rows += [{"query": f"{r['query']} {len(rows) + i}", "docs": []} for i, r in enumerate(rows[: n - len(rows)])]
    rows = rows[:n]
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(shards):
        p = out / f"part-{s}.jsonl"
        p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[s::shards]), encoding="utf-8")
        paths.append(p)
    whole = out / "all.jsonl"
    whole.write_text("".join(p.read_text(encoding="utf-8") for p in paths), encoding="utf-8")
    return paths, whole


def local_tagging(whole: Path, ms: float, batch: int = 32, wait_ms: float = 0.0) -> dict[str, float]:
    """What ``clipfeed tagger tag --file`` does: read + dedup, then batches through one tagger."""
    from tagger.label import read_label_inputs

    t0 = time.perf_counter()
    tagger = WorkTagger(ms, wait_ms)
    items = [i for i, _ in read_label_inputs(whole)]
    for s in range(0, len(items), batch):
        part = items[s : s + batch]
        tagger.tag_batch([i.query for i in part], [list(i.docs) for i in part])
    seconds = time.perf_counter() - t0
    return {"queries": len(items), "seconds": seconds, "qps": len(items) / seconds}


def ray_tagging(shards: list[Path], ms: float, workers: int, tmp: Path, wait_ms: float = 0.0) -> dict[str, float]:
    from functools import partial

    from scale.labeling import tag_on_ray

    out = Path(tempfile.mkdtemp(dir=tmp))
    factory = partial(work_tagger, ms, wait_ms)
    s = tag_on_ray(shards, out, factory, f"work-{ms}-{wait_ms}", workers=workers, progress=False)
    return {"queries": s["tagged_now"], "seconds": s["seconds"], "qps": s["tagged_now"] / s["seconds"]}


def training(world: Path, workers: Sequence[int], tmp: Path) -> list[dict[str, object]]:
    from cli.scale import train_on_ray
    from cli.wiring import load_stack, train_ranker

    os.environ["CLIPFEED_CACHE_DIR"] = str(tmp / "cache")
    rows: list[dict[str, object]] = []
    t0 = time.perf_counter()
    stack = load_stack(world, tagger="standin")
    ranker, timing = train_ranker(stack, stack.cfg)
    total = time.perf_counter() - t0
    rows.append({"engine": "local", "workers": 1, **timing, "seconds": round(total, 1)})
    rows[-1]["valid_ndcg@10"] = round(ranker.meta["valid_ndcg@10"], 4)
    for n in workers:
        t0 = time.perf_counter()
        ranker, timing = train_on_ray(world, 0, None, False, False, workers=n)
        total = time.perf_counter() - t0
        rows.append({"engine": "ray", "workers": n, **timing, "seconds": round(total, 1)})
        rows[-1]["valid_ndcg@10"] = round(ranker.meta["valid_ndcg@10"], 4)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--world", type=Path, default=ROOT / ".cache" / "world")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--ms-per-query", type=float, default=4.0)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--wait-ms-per-query", type=float, default=0.0, help="also: a tagger that waits (I/O-bound)")
    ap.add_argument("--wait-workers", default="1,2,4")
    ap.add_argument("--skip-cpu", action="store_true", help="skip the CPU-bound tagging runs")
    ap.add_argument("--skip-ranker", action="store_true")
    ap.add_argument("--json-out", type=Path)
    args = ap.parse_args()
    if not (args.world / "queries.jsonl").exists():
        sys.exit(f"no world at {args.world}: build one with `clipfeed world build --out {args.world}`")
    os.environ["CLIPFEED_TAGGER"] = "standin"
    workers = [int(w) for w in args.workers.split(",")]
    import logging

    import ray
    from ray.data import DataContext

    tmp = Path(tempfile.mkdtemp(prefix="scale-bench-"))
    shards, whole = write_shards(args.world, args.queries, tmp / "in")
    t0 = time.perf_counter()
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    DataContext.get_current().enable_progress_bars = False
    start_s = time.perf_counter() - t0
    result: dict[str, object] = {"ray_start_s": round(start_s, 1), "cores": os.cpu_count()}
    try:
        tag_rows: list[dict[str, object]] = []
        for ms in () if args.skip_cpu else (0.0, args.ms_per_query):
            local = local_tagging(whole, ms)
            tag_rows.append({"ms_per_query": ms, "engine": "local", "workers": 1, **local})
            for n in workers:
                tag_rows.append({"ms_per_query": ms, "engine": "ray", "workers": n, **ray_tagging(shards, ms, n, tmp)})
        result["tagging"] = tag_rows
        wait_rows: list[dict[str, object]] = []
        if args.wait_ms_per_query:
            w = args.wait_ms_per_query
            wait_rows.append({"engine": "local", "workers": 1, **local_tagging(whole, 0.0, wait_ms=w)})
            for n in [int(x) for x in args.wait_workers.split(",")]:
                wait_rows.append({"engine": "ray", "workers": n, **ray_tagging(shards, 0.0, n, tmp, wait_ms=w)})
        result["tagging_wait"] = wait_rows
        if not args.skip_ranker:
            result["training"] = training(args.world, workers, tmp)
    finally:
        ray.shutdown()

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; Ray start-up {start_s:.1f} s")
    print(f"\ntagging {args.queries} distinct searches (4 JSONL shards), end to end incl. read, dedup, write")
    if tag_rows:
        print("| work per query | engine | workers | seconds | queries/s |")
        print("|---|---|---|---|---|")
    for r in tag_rows:
        ms_s, sec, qps = float(r["ms_per_query"]), float(r["seconds"]), float(r["qps"])
        print(f"| {ms_s:.0f} ms | {r['engine']} | {r['workers']} | {sec:.1f} | {qps:.0f} |")
    for ms in (0.0, args.ms_per_query):
        rs = {(r["engine"], r["workers"]): r for r in tag_rows if r["ms_per_query"] == ms}
        if not rs:
            continue
        if ms and ("ray", 1) in rs and ("ray", 2) in rs:
            gain = float(rs[("ray", 2)]["qps"]) / float(rs[("ray", 1)]["qps"])
            print(f"ray 2 workers / 1 worker at {ms:.0f} ms per query: {gain:.2f}x")
        if not ms and ("ray", 1) in rs:
            over = float(rs[("ray", 1)]["seconds"]) - float(rs[("local", 1)]["seconds"])
            print(f"fixed Ray overhead per job (zero work, 1 worker): {over:.1f} s")
    if wait_rows:
        print(f"\ntagging {args.queries} searches with a tagger that waits {args.wait_ms_per_query:.0f} ms per query")
        print("(a remote model behind an OpenAI-compatible endpoint: the wait, not this machine's CPU, is the cost)")
        print("| engine | workers | seconds | queries/s |")
        print("|---|---|---|---|")
        for r in wait_rows:
            print(f"| {r['engine']} | {r['workers']} | {float(r['seconds']):.1f} | {float(r['qps']):.0f} |")
    if "training" in result:
        print(f"\nranker training on {args.world} (features + LightGBM)")
        print("| engine | workers | impressions | features s | LightGBM s | total s | valid NDCG@10 |")
        print("|---|---|---|---|---|---|---|")
        for r in result["training"]:  # type: ignore[attr-defined]
            print(
                f"| {r['engine']} | {r['workers']} | {r['impressions']:,} | {r['feature_seconds']} | "
                f"{r['lightgbm_seconds']} | {r['seconds']} | {r['valid_ndcg@10']} |"
            )
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

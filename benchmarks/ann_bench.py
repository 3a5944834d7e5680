"""ANN retrieval at catalog scale: the HNSW index (``recommender.ann``) against exact search.

Run: .venv/bin/python benchmarks/ann_bench.py [--n 1000000] [--dim 64] [--queries 1000] [--k 100]
     [--m 16] [--ef-construction 200] [--ef 100,160,250,400] [--threads 2] [--json-out FILE]
(or ``clipfeed bench ann ...``).

Vectors. Real clip vectors are the topic model's sub-word text embeddings: 32-d and unit length on
the shipped model (``stack.catalog.vectors.shape == (3200, 32)`` on the sample world). Issue #10 puts
text and collaborative embeddings in the index; a 32-d text vector next to a 32-d collaborative
factor is 64-d, hence the default ``--dim 64`` (more dimensions make HNSW's job harder, so the
figures at 64 bound those at 32; run ``--dim 32`` for the text vectors alone). They are not uniform
noise (uniform high-dimensional data has no near neighbours and is HNSW's pathological case):
like real clips they cluster by topic, so the synthetic catalog is a mixture of ``--topics`` Gaussian
topic centres with Zipf-distributed sizes and a per-topic spread, normalised to unit length; queries
(tag vectors) are fresh draws from the same mixture, near the data but not in it.

Measured, in one process: build seconds and memory (resident-set growth, index file size), load
seconds; exact search (blocked numpy ``exact_knn``: batched ms/query and single-query ms/query, the
baseline); then per ``ef_search``: recall@k against exact, single-query latency p50/p99 on one
thread, batched throughput on ``--threads`` threads; last, adding new clips without a rebuild.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from recommender.ann import AnnConfig, ClipVectorIndex, exact_knn, recall_at_k, rss_bytes


def synthetic(
    n: int, dim: int, topics: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Topic centres, per-topic spread, topic weights, and ``n`` clustered unit vectors (made in
    chunks: 1 M x 64 is 256 MB)."""
    centres = rng.standard_normal((topics, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.5, 1.0, topics).astype(np.float32)  # cosine to the topic centre ~0.89 .. ~0.71
    weights = 1.0 / np.arange(1, topics + 1) ** 0.8
    weights /= weights.sum()
    out = np.empty((n, dim), dtype=np.float32)
    for s in range(0, n, 100_000):
        out[s : s + 100_000] = draw(centres, spread, weights, min(100_000, n - s), rng)
    return centres, spread, weights, out


def draw(centres: np.ndarray, spread: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` unit vectors from the mixture: a topic by weight, its centre plus noise of its spread."""
    dim = centres.shape[1]
    topic = rng.choice(len(centres), size=n, p=weights)
    noise = rng.standard_normal((n, dim)).astype(np.float32) * (spread[topic] / np.sqrt(dim))[:, None]
    x: np.ndarray = centres[topic] + noise
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    centres, spread, weights, base = synthetic(args.n, args.dim, args.topics, rng)
    queries = draw(centres, spread, weights, args.queries, rng)
    gen_s = time.perf_counter() - t0
    ids = [f"c{i}" for i in range(args.n)]
    cfg = AnnConfig(M=args.m, ef_construction=args.ef_construction, num_threads=args.threads)
    out: dict[str, Any] = {
        "setup": {
            "n": args.n,
            "dim": args.dim,
            "queries": args.queries,
            "k": args.k,
            "topics": args.topics,
            "config": cfg.model_dump(),
            "cpus": os.cpu_count(),
            "machine": platform.processor() or platform.machine(),
            "generate_seconds": round(gen_s, 2),
        }
    }

    rss0 = rss_bytes()
    t0 = time.perf_counter()
    index = ClipVectorIndex.build(ids, base, cfg, progress=args.progress)
    build_s = time.perf_counter() - t0
    rss_delta = rss_bytes() - rss0
    with tempfile.TemporaryDirectory() as tmp:
        index.save(tmp)
        bin_bytes = (Path(tmp) / "ann.bin").stat().st_size
        json_bytes = (Path(tmp) / "ann.json").stat().st_size
        t0 = time.perf_counter()
        ClipVectorIndex.load(tmp, dim=args.dim)
        load_s = time.perf_counter() - t0
    out["build"] = {
        "build_seconds": round(build_s, 1),
        "clips_per_second": round(args.n / build_s),
        "rss_delta_mib": round(rss_delta / 2**20, 1),
        "index_file_mib": round(bin_bytes / 2**20, 1),
        "ids_file_mib": round(json_bytes / 2**20, 1),
        "raw_vectors_mib": round(base.nbytes / 2**20, 1),
        "load_seconds": round(load_s, 2),
    }

    t0 = time.perf_counter()
    exact_idx, _ = exact_knn(base, queries, args.k)
    exact_batch_ms = (time.perf_counter() - t0) * 1000 / args.queries
    single = []
    for q in queries[: args.exact_singles]:
        t0 = time.perf_counter()
        exact_knn(base, q[None, :], args.k)
        single.append((time.perf_counter() - t0) * 1000)
    exact_ids = [[ids[j] for j in row] for row in exact_idx]
    out["exact"] = {
        "batched_ms_per_query": round(exact_batch_ms, 3),
        "single_query_ms_p50": round(pct(single, 50), 2),
        "single_query_ms_p99": round(pct(single, 99), 2),
    }

    rows = []
    for ef in args.ef:
        index.set_ef_search(ef)
        index.knn(queries[:10], args.k)  # warm-up
        lat, found = [], []
        for q in queries:
            t0 = time.perf_counter()
            got, _ = index.knn(q[None, :], args.k)
            lat.append((time.perf_counter() - t0) * 1000)
            found.append(got[0])
        t0 = time.perf_counter()
        batched, _ = index.knn(queries, args.k)
        batch_ms = (time.perf_counter() - t0) * 1000 / args.queries
        rows.append(
            {
                "ef_search": ef,
                f"recall@{args.k}": round(recall_at_k(found, exact_ids), 4),
                f"recall@{args.k}_batched": round(recall_at_k(batched, exact_ids), 4),
                "single_ms_p50": round(pct(lat, 50), 3),
                "single_ms_p99": round(pct(lat, 99), 3),
                "batched_ms_per_query": round(batch_ms, 3),
                "speedup_vs_exact_single": round(pct(single, 50) / pct(lat, 50), 1),
            }
        )
    out["ann"] = rows

    new = draw(centres, spread, weights, args.add, rng)
    new_ids = [f"new{i}" for i in range(args.add)]
    t0 = time.perf_counter()
    index.add(new_ids, new)
    add_s = time.perf_counter() - t0
    got, _ = index.knn(new[:200], 1)
    out["update"] = {
        "added_clips": args.add,
        "add_seconds": round(add_s, 2),
        "ms_per_added_clip": round(add_s * 1000 / max(1, args.add), 3),
        "capacity_after": index.capacity,
        "new_clip_is_own_nearest": round(float(np.mean([g[0] == c for g, c in zip(got, new_ids, strict=False)])), 3),
    }
    return out


def table(res: dict[str, Any], k: int) -> str:
    s, b, e = res["setup"], res["build"], res["exact"]
    lines = [
        f"ANN benchmark: {s['n']:,} synthetic clip vectors, {s['dim']}-d, {s['topics']} topics; {s['queries']} queries,"
        f" k={k}; HNSW M={s['config']['M']} ef_construction={s['config']['ef_construction']},"
        f" {s['config']['num_threads']} threads; {s['cpus']} CPUs",
        f"build: {b['build_seconds']} s ({b['clips_per_second']:,} clips/s); memory: RSS +{b['rss_delta_mib']} MiB,"
        f" index file {b['index_file_mib']} MiB (raw vectors {b['raw_vectors_mib']} MiB), ids {b['ids_file_mib']} MiB;"
        f" load {b['load_seconds']} s",
        f"exact (numpy, blocked): {e['batched_ms_per_query']} ms/query batched,"
        f" {e['single_query_ms_p50']} ms single query (p50; p99 {e['single_query_ms_p99']})",
        "",
        f"{'ef_search':>9} {'recall@' + str(k):>10} {'batched':>8} {'p50 ms':>8} {'p99 ms':>8}"
        f" {'batch ms/q':>11} {'vs exact':>9}",
    ]
    for r in res["ann"]:
        lines.append(
            f"{r['ef_search']:>9} {r[f'recall@{k}']:>10.4f} {r[f'recall@{k}_batched']:>8.4f} {r['single_ms_p50']:>8.3f}"
            f" {r['single_ms_p99']:>8.3f} {r['batched_ms_per_query']:>11.3f} {r['speedup_vs_exact_single']:>8.1f}x"
        )
    u = res["update"]
    lines += [
        "",
        f"update: {u['added_clips']:,} new clips added without a rebuild in {u['add_seconds']} s"
        f" ({u['ms_per_added_clip']} ms/clip), capacity now {u['capacity_after']:,};"
        f" a new clip is its own nearest neighbour in {u['new_clip_is_own_nearest']:.1%} of 200 checks",
        "(p50/p99: one query at a time on one thread; batch: all queries in one call on the given threads)",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    d = AnnConfig()
    p.add_argument("--n", type=int, default=1_000_000, help="Clip vectors in the index.")
    p.add_argument("--dim", type=int, default=64, help="Vector dimension (the text vectors alone: 32).")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--k", type=int, default=100)
    p.add_argument("--topics", type=int, default=1000, help="Gaussian topic centres of the mixture.")
    p.add_argument("--m", type=int, default=d.M)
    p.add_argument("--ef-construction", type=int, default=d.ef_construction)
    p.add_argument(
        "--ef",
        type=lambda s: [int(x) for x in s.split(",")],
        default=sorted({100, 160, 250, 400, 600, d.ef_search}),
        help="ef_search values, comma-separated.",
    )
    p.add_argument("--threads", type=int, default=d.num_threads, help="Build and batched-query threads.")
    p.add_argument("--exact-singles", type=int, default=20, help="Single exact queries timed (each scans all n).")
    p.add_argument("--add", type=int, default=10_000, help="New clips added after the measurements.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--progress", action="store_true", help="Progress bar while building.")
    p.add_argument("--json-out", type=Path, default=None)
    args = p.parse_args(argv)
    res = run(args)
    print(table(res, args.k))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"\nwritten to {args.json_out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Load on the feed API over loopback: one `clipfeed serve` process, the embedded (real) Redis, 300
candidates ranked per feed request. Prints latency percentiles and throughput at fixed request
rates, mixed traffic, event ingestion (with a no-loss check), Redis bytes per user, and the
in-process feed time measured in the same run for the serving overhead.

With a model tagger (``--tagger student``) it also sends new, never-seen searches while feeds are
being served, to show that feeds do not wait for the tagger (the bounded background worker) and how
many searches fall back to raw keywords when it is overloaded.

Run: .venv/bin/python benchmarks/api_load.py [--seconds 5] [--rates 50,100,200,400] [--users 10000]
     [--tagger standin|student] [--json-out .cache/bench/api_load.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import redis

from clipfeed.world import WorldConfig, build_world

KEY = "bench-key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else float("nan")


class LeanClient:
    """A minimal HTTP/1.1 keep-alive client over asyncio streams, used for the fixed-rate phases.

    httpx's async client costs a few ms of CPU per request; on a 2-core machine that shares its
    cores with the server it became the bottleneck of the measurement. This one writes a request
    and reads one Content-Length response, nothing more (the server is our own, on loopback)."""

    def __init__(self, host: str, port: int, max_connections: int = 256) -> None:
        self.host, self.port = host, port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(max_connections)

    async def request(self, method: str, path: str, body: bytes = b"", headers: str = "") -> int:
        async with self.slots:
            for attempt in range(2):
                # a retry always opens a fresh connection: the other idle ones may be as stale
                reused = bool(self.idle) and attempt == 0
                conn = self.idle.pop() if reused else await asyncio.open_connection(self.host, self.port)
                try:
                    status = await self._exchange(conn, method, path, body, headers)
                except (ConnectionError, asyncio.IncompleteReadError):
                    conn[1].close()
                    if reused:  # the server closed an idle keep-alive connection
                        continue
                    raise
                self.idle.append(conn)
                return status
        raise AssertionError("unreachable")

    async def _exchange(
        self, conn: tuple[asyncio.StreamReader, asyncio.StreamWriter], method: str, path: str, body: bytes, headers: str
    ) -> int:
        reader, writer = conn
        head = f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n{headers}"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        writer.write(head.encode() + b"\r\n" + body)
        await writer.drain()
        status_line = await reader.readline()
        if not status_line:
            raise ConnectionResetError("connection closed by the server")
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        return int(status_line.split()[1])

    async def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


async def open_loop(client: LeanClient, rate: float, seconds: float, make: Any) -> dict[str, Any]:
    """Fires requests at a fixed rate regardless of responses (open loop) and records latencies,
    each from the moment it was due (so a late client does not hide queueing)."""
    lat: dict[str, list[float]] = {"feed": [], "events": []}
    errors = 0
    statuses: dict[str, int] = {}
    tasks = []
    auth = f"X-API-Key: {KEY}\r\n"

    async def one(due: float, kind: str, method: str, url: str, body: Any) -> None:
        nonlocal errors
        try:
            payload = json.dumps(body).encode() if body is not None else b""
            status = await client.request(method, url, payload, auth if method == "POST" else "")
            errors += status >= 400
            statuses[f"{kind} {status}"] = statuses.get(f"{kind} {status}", 0) + 1
        except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
            errors += 1
            statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
        lat[kind].append((time.perf_counter() - due) * 1000)

    cpu0 = time.process_time()
    start = time.perf_counter()
    n = int(rate * seconds)
    for i in range(n):
        target = start + i / rate
        delay = target - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(target, *make(i))))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    out: dict[str, Any] = {
        "rate": rate,
        "requests": n,
        "errors": errors,
        "throughput": round(n / elapsed, 1),
        "client_cpu_share": round((time.process_time() - cpu0) / elapsed, 3),  # of one core
        "statuses": statuses,
    }
    for kind, values in lat.items():
        if values:
            out[kind] = {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "p99": pct(values, 0.99)}
            out[f"{kind}_latencies_ms"] = [round(v, 2) for v in values]  # for distribution plots
    return out


def metric_values(text: str, name: str) -> dict[str, float]:
    """Samples of one Prometheus metric family from /metrics text, by their label string."""
    out = {}
    for line in text.splitlines():
        if line.startswith(name):
            labels, _, value = line[len(name) :].rpartition(" ")
            out[labels or "_"] = float(value)
    return out


async def run(base: str, users: list[str], clips: list[str], args: argparse.Namespace, sock: Path) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    host, port = base.removeprefix("http://").split(":")
    lean = LeanClient(host, int(port))
    async with httpx.AsyncClient(base_url=base, timeout=10.0, limits=limits) as client:
        rng = random.Random(0)
        if args.tagger != "standin":
            # A model tagger would tag every world user's logged searches on first access (minutes):
            # feed traffic then goes to fresh users, each with one search from a small set.
            users = [f"bench{k}" for k in range(300)]
            seeds = ["손흥민 골 하이라이트", "이과수 폭포 여행", "easy pasta recipe", "고양이 영상", "오타니 홈런"]
            events = [
                {"event_id": f"seed-{u}", "user_id": u, "ts": 1772800000, "type": "search", "query": seeds[k % 5]}
                for k, u in enumerate(users)
            ]
            for start in range(0, len(events), 50):
                await client.post("/v1/events", json={"events": events[start : start + 50]}, headers={"X-API-Key": KEY})
            await asyncio.sleep(5)  # the worker folds in the searches it did not finish within the requests
        for u in users[:300]:  # warm-up: contexts seeded from the world's logs on first access
            await client.get(f"/v1/users/{u}/feed?limit=20")

        def feed(i: int) -> tuple[str, str, str, Any]:
            return "feed", "GET", f"/v1/users/{users[i % 300]}/feed?limit=20", None

        results: dict[str, Any] = {"feed": []}
        for rate in args.rates:
            results["feed"].append(await open_loop(lean, rate, args.seconds, feed))

        def mixed(i: int) -> tuple[str, str, str, Any]:
            if rng.random() < 0.8:
                return feed(i)
            u = users[rng.randrange(300)]
            ev = {
                "event_id": f"mix-{i}",
                "user_id": u,
                "ts": 1772800000 + i,
                "type": "skip",
                "clip_id": rng.choice(clips),
            }
            return "events", "POST", "/v1/events", {"events": [ev]}

        results["mixed_80_20"] = await open_loop(lean, args.mixed_rate, args.seconds, mixed)

        # New searches (never seen, so never cached) while feeds are served: feeds must not wait for
        # the tagger; searches past the worker's queue fall back to raw keywords.
        nonce = f"r{time.time_ns() % 10**8}"
        words = ["여행", "맛집", "하이라이트", "리뷰", "브이로그", "tutorial", "recipe", "goal", "vlog", "review"]

        def searching(i: int) -> tuple[str, str, str, Any]:
            if i % 5:
                return feed(i)
            q = f"{rng.choice(words)} {rng.choice(words)} {i} {nonce}"  # never tagged before, by any run
            ev = {"event_id": f"srch-{i}", "user_id": users[rng.randrange(300)], "ts": 1772850000 + i, "type": "search"}
            return "events", "POST", "/v1/events", {"events": [{**ev, "query": q}]}

        before = metric_values((await client.get("/metrics")).text, "clipfeed_searches_total")
        phase = await open_loop(lean, args.search_rate, args.seconds, searching)
        await asyncio.sleep(2.0)  # let the worker finish what it still holds
        after = metric_values((await client.get("/metrics")).text, "clipfeed_searches_total")
        phase["searches_by_tag_source"] = {k: after[k] - before.get(k, 0.0) for k in after if after[k] != before.get(k)}
        results["new_searches_under_feed_load"] = phase

        # Ingestion: batches of 100 events over fresh users, as fast as the server takes them; a 503
        # (refused, nothing lost) is retried after its Retry-After, as a client would.
        ingest_statuses: dict[int, int] = {}

        async def post_batch(events: list[dict[str, Any]]) -> None:
            for _ in range(10):
                r = await client.post("/v1/events", json={"events": events}, headers={"X-API-Key": KEY})
                ingest_statuses[r.status_code] = ingest_statuses.get(r.status_code, 0) + 1
                if r.status_code != 503:
                    return
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

        n_users, per_user = args.users, 5
        sent = 0
        t0 = time.perf_counter()
        batch: list[dict[str, Any]] = []
        pending = []
        for u in range(n_users):
            for k in range(per_user):
                etype = "search" if k == 0 else "watch"
                ev: dict[str, Any] = {
                    "event_id": f"ing-{u}-{k}",
                    "user_id": f"load{u}",
                    "ts": 1772900000 + k,
                    "type": etype,
                }
                if etype == "search":
                    ev["query"] = rng.choice(
                        ["손흥민 골", "오타니 홈런", "이과수 폭포", "easy pasta recipe", "고양이 영상"]
                    )
                else:
                    ev["clip_id"], ev["watch_ratio"] = rng.choice(clips), round(rng.random(), 2)
                batch.append(ev)
                if len(batch) == 100:
                    pending.append(post_batch(batch))
                    sent += len(batch)
                    batch = []
                if len(pending) == 8:
                    await asyncio.gather(*pending)
                    pending = []
        if batch:
            pending.append(post_batch(batch))
            sent += len(batch)
        await asyncio.gather(*pending)
        seconds = time.perf_counter() - t0
        for _ in range(600):  # searches still with the tagger are folded in when it answers
            depth = metric_values((await client.get("/metrics")).text, "clipfeed_tagger_queue_depth")
            if not any(depth.values()):
                break
            await asyncio.sleep(0.5)
        check = rng.sample(range(n_users), 200)
        lost = 0
        for u in check:
            ctx = (await client.get(f"/v1/users/load{u}/context")).json()
            bad = ctx["clip_events"] != per_user - 1 or len(ctx["searches"]) != 1
            lost += int(bad)
            if bad and os.environ.get("API_LOAD_DEBUG"):
                print("lost", u, ctx["clip_events"], ctx["searches"], file=sys.stderr)
        await lean.close()
        results["ingestion"] = {
            "events": sent,
            "seconds": round(seconds, 2),
            "events_per_s": round(sent / seconds),
            "users_checked": len(check),
            "users_with_lost_events": lost,
            "batch_statuses": ingest_statuses,
        }
    r = redis.Redis(unix_socket_path=str(sock))
    ctx_keys = [k for k in r.scan_iter("cf:{load*}:ctx", count=1000)]
    sample = ctx_keys[:500]
    per_user = statistics.mean(r.memory_usage(k) or 0 for k in sample) if sample else 0
    results["redis_memory"] = {
        "users": len(ctx_keys),
        "bytes_per_user_context": round(per_user),
        "used_memory_mb": round(r.info("memory")["used_memory"] / 1e6, 1),
    }
    return results


def in_process_feed_ms(world: Path) -> dict[str, float]:
    from api.services import single_threaded_blas
    from cli.wiring import build_services
    from clipfeed.settings import Settings
    from recommender import UserContext

    single_threaded_blas()  # as in the server
    svc = build_services(Settings(min_candidates=300), world)
    users = sorted(svc.world.users)[:300]
    stored = [svc.seed_context(u).to_dict() for u in users]  # as the store holds them
    times = []
    for _ in range(2):
        for u, raw in zip(users, stored, strict=True):
            t0 = time.perf_counter()
            # the API's path: the stored context parsed, no feature contributions (the API adds
            # them only with ?features=true), no served-log rows (the log is off here)
            svc.builder.build(UserContext.from_dict(raw), 20, user_key=u, contributions=False, served_rows=False)
            times.append((time.perf_counter() - t0) * 1000)
    times = times[len(users) :]
    return {"p50": pct(times, 0.5), "p99": pct(times, 0.99)}


def start_server(
    world: Path, data: Path, extra_env: dict[str, str], workers: int = 1
) -> tuple[subprocess.Popen[bytes], int]:
    """`clipfeed serve` on a free port with the benchmark's settings (300 candidates, no rate limit,
    the embedded Redis in ``data``) plus ``extra_env``, once it answers /readyz (up to 5 minutes)."""
    port = free_port()
    env = {
        **os.environ,
        "CLIPFEED_DATA_DIR": str(data),
        "CLIPFEED_API_KEYS": KEY,
        "CLIPFEED_MIN_CANDIDATES": "300",
        "CLIPFEED_LOG_LEVEL": "warning",
        "CLIPFEED_RATE_LIMIT_PER_S": "100000",
        "CLIPFEED_RATE_LIMIT_BURST": "100000",
        **extra_env,
    }
    exe = Path(sys.executable).with_name("clipfeed")
    proc = subprocess.Popen(
        [str(exe), "serve", "--world", str(world), "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return proc, port
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit(f"clipfeed serve ({extra_env}) did not become ready in 5 minutes")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[50, 100, 200, 400])
    parser.add_argument("--mixed-rate", type=float, default=200)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--search-rate", type=float, default=100, help="requests/s, 1 in 5 a new search")
    parser.add_argument("--tagger", default="standin", choices=["standin", "student"])
    parser.add_argument("--server-workers", type=int, default=1, help="`clipfeed serve --workers N` (one Redis)")
    parser.add_argument("--json-out", type=Path, default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        world = tmp / "world"
        build_world(world, WorldConfig(seed=42), progress=False)
        proc, port = start_server(world, tmp / "data", {"CLIPFEED_TAGGER": args.tagger}, args.server_workers)
        base = f"http://127.0.0.1:{port}"
        try:
            users = [json.loads(line)["user_id"] for line in (world / "truth" / "users.jsonl").read_text().splitlines()]
            clips = [json.loads(line)["clip_id"] for line in (world / "catalog.jsonl").read_text().splitlines()]
            results = asyncio.run(run(base, users, clips, args, tmp / "data" / "redis" / "redis.sock"))
        finally:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=30)
        results["in_process_feed_ms"] = in_process_feed_ms(world)
    results["config"] = {
        "seconds": args.seconds,
        "tagger": args.tagger,
        "users": args.users,
        "cpus": os.cpu_count(),
        "server_workers": args.server_workers,
    }
    if args.json_out is not None:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results))

    def brief(x: Any) -> Any:  # the printed figures, without the raw latency lists
        if isinstance(x, dict):
            return {k: brief(v) for k, v in x.items() if not str(k).endswith("_latencies_ms")}
        return [brief(v) for v in x] if isinstance(x, list) else x

    print(json.dumps(brief(results), indent=2))


if __name__ == "__main__":
    main()

"""Served-impression log figures: training from the log against offline training, feed latency with
logging off and on, the log call's in-process cost, and a clean-restart no-loss check.

1. **Quality.** A world is built; the offline ranker is trained on its logged sessions
   (``cli.wiring.train_ranker``) and served by the real app in-process (FastAPI ``TestClient``,
   logging on, arms ``full:80,shuffle:20``). Warm world users request feeds and react with the
   world's own choice model plus a scrolling (examination) model (``clipfeed.world.respond``); the
   reactions are posted as events through the API. A ranker is then trained from the log
   (``recommender.from_log``, as ``clipfeed ranker train --from-log``) and both are evaluated
   offline on the same world (``recommender.evaluate``: NDCG@10 with bootstrap intervals).
2. **Latency.** One server process (uvicorn, in-memory store) serves the same app twice on two
   ports, logging off and on, sharing every model and cache; open-loop runs at fixed rates
   alternate between the ports (so drift hits both alike). A rate counts as held when the
   throughput reaches 95 % of it without errors.
3. **In-process cost** of the log call on the request path, of the served feature rows, and of the
   writer thread per record.
4. **Clean restart.** The server is stopped (SIGTERM: uvicorn's graceful shutdown closes the log)
   and started again; every feed answered on the logging port must be in the log exactly once.

Run: .venv/bin/python benchmarks/servelog_bench.py [--seed 42] [--clips N --users N]
     [--feeds-per-user 3] [--seconds 4] [--reps 2] [--rates 50,100,150,200] [--eval-users 300]
     [--parts quality,server] [--pin] [--json-out F]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import LeanClient, free_port, open_loop, pct

KEY = "bench-key"


def log_feeds(directory: Path) -> list[dict[str, Any]]:
    from recommender.from_log import read_log

    return read_log(directory).feeds


# -- 1. quality ------------------------------------------------------------------------------------


def quality(args: argparse.Namespace, work: Path) -> tuple[dict[str, Any], Path, Path]:
    from fastapi.testclient import TestClient

    from api import MemoryStore, create_app
    from cli.wiring import build_services, load_stack, train_ranker
    from clipfeed.settings import Settings
    from clipfeed.world import WorldConfig, build_world
    from clipfeed.world.respond import Responder, simulate_traffic
    from recommender import evaluate
    from recommender.from_log import split_by_share, train_from_log
    from recommender.ranker import Ranker

    out: dict[str, Any] = {}
    world, model, logdir = work / "world", work / "offline-ranker", work / "quality-log"
    t0 = time.perf_counter()
    wcfg = WorldConfig(seed=args.seed)
    if args.clips or args.users:
        n_clips, n_users = args.clips or wcfg.n_clips, args.users or wcfg.n_users
        wcfg = WorldConfig(seed=args.seed, n_clips=n_clips, n_users=n_users, n_creators=max(20, n_clips // 10))
    build_world(world, wcfg, progress=False)
    stack = load_stack(world)
    offline, timing = train_ranker(stack)
    offline.save(model)
    out["world"] = {"clips": wcfg.n_clips, "users": wcfg.n_users, "seed": args.seed}
    out["offline_training"] = {**timing, "valid_ndcg@10": round(offline.meta["valid_ndcg@10"], 4)}
    if "quality" not in args.parts:
        return out, world, model

    settings = Settings(api_keys=KEY, servelog_dir=logdir, experiment_arms=args.arms)
    svc = build_services(settings, world, model)
    responder = Responder(world, seed=args.seed)
    users = responder.warm_users()
    t1 = time.perf_counter()
    with TestClient(create_app(svc, MemoryStore())) as client:
        counts = simulate_traffic(client, responder, users, args.feeds_per_user, 20, headers={"X-API-Key": KEY})
    out["simulation"] = {
        **counts,
        "users": len(users),
        "arms": args.arms,
        "examination_stop_p": responder.examination.stop_p,
        "seconds": round(time.perf_counter() - t1, 1),
    }
    out["overhead_us"] = overhead(svc, users[:300])

    t2 = time.perf_counter()
    from_log, lt = train_from_log(logdir, stack.cfg, offline.collab)
    train_seconds = round(time.perf_counter() - t2, 2)
    plain = lt.data
    plain_ranker = Ranker.train(
        replace(plain, positions=[]), stack.cfg, split_by_share(plain.times, 0.2), offline.collab
    )
    out["from_log_training"] = {
        "seconds": train_seconds,
        "groups": len(lt.data.groups),
        "rows": lt.data.rows,
        "events_joined": lt.events_joined,
        "feeds_skipped": lt.skipped,
        "log_files": lt.read.files,
        "valid_ndcg@10 (log validation feeds)": round(from_log.meta["valid_ndcg@10"], 4),
        "valid_ndcg@10 without position handling": round(plain_ranker.meta["valid_ndcg@10"], 4),
    }

    def ev(r: Ranker) -> dict[str, Any]:
        res = evaluate(
            stack.world, stack.catalog, stack.tagging, r, stack.cfg, max_users=args.eval_users, progress=False
        )
        return {
            p: {
                "ndcg@10": res[p]["full"]["ndcg@10"],
                "ci95": res[p]["full"]["ndcg@10_ci95"],
                "users": res[p]["full"]["users"],
            }
            for p in ("cold", "warm")
        }

    out["offline_eval_full_system"] = {
        "offline_trained": ev(offline),
        "trained_from_log": ev(from_log),
        "trained_from_log_without_position": ev(plain_ranker),
    }
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out, world, model


def overhead(svc: Any, users: list[str]) -> dict[str, float]:
    """Cost of logging a feed, paid on the loop after the response is sent (``ServedLog.log_feed``:
    the exploration picks' rows, encoding, the queue hand-off), the served feature rows (gathered
    on the request path whether logging is on or not), and the writer thread's cost per record."""
    import secrets

    from api.servelog import ServedLog
    from recommender import RequestContext, UserContext

    builder = svc.builder
    ctxs = [svc.seed_context(u) for u in users]
    feeds = [
        builder.build(UserContext.from_dict(c.to_dict()), 20, user_key=u, contributions=False)
        for u, c in zip(users, ctxs, strict=True)
    ]
    explore = []  # the exploration picks' rows (Feed.complete_features), timed apart
    for f in feeds:
        if f.pending is not None:
            t0 = time.perf_counter()
            f.complete_features()
            explore.append((time.perf_counter() - t0) * 1e6)
    with tempfile.TemporaryDirectory() as d:
        slog = ServedLog(d, queue_size=len(feeds) * 4 + 10, start=False)
        t = []
        for _ in range(3):
            for u, f in zip(users, feeds, strict=True):
                t0 = time.perf_counter()
                req = RequestContext()
                slog.log_feed(
                    request_id=secrets.token_hex(8),
                    user_id=u,
                    arm="full",
                    session="s",
                    page=0,
                    request={"hour": req.hour, "device": req.device},
                    history_len=0,
                    candidates=f.candidates,
                    clip_ids=[it.clip_id for it in f.items],
                    scores=[it.score for it in f.items],
                    x=f.features,
                )
                t.append((time.perf_counter() - t0) * 1e6)
        n = slog.depth
        w0 = time.perf_counter()
        slog.close()  # starts the writer: all queued lines written, then fsync
        writer_us = (time.perf_counter() - w0) * 1e6 / max(n, 1)

    # the served rows: build with and without them, alternating, same users
    real = builder._served_rows
    with_rows: list[float] = []
    without: list[float] = []
    for _ in range(2):
        for u, c in zip(users, ctxs, strict=True):
            for on in (True, False):
                builder._served_rows = real if on else (lambda *a: (None, None))
                t0 = time.perf_counter()
                builder.build(UserContext.from_dict(c.to_dict()), 20, user_key=u, contributions=False)
                (with_rows if on else without).append((time.perf_counter() - t0) * 1e6)
    builder._served_rows = real
    return {
        "log_call_p50": round(pct(t, 0.5), 1),
        "log_call_p99": round(pct(t, 0.99), 1),
        "writer_per_feed_record": round(writer_us, 1),
        "exploration_rows_p50": round(pct(explore, 0.5), 1),
        "feed_build_p50_with_served_rows": round(pct(with_rows, 0.5), 1),
        "feed_build_p50_without_served_rows": round(pct(without, 0.5), 1),
    }


# -- 2./4. the server: one process, the app twice (logging off | on) -----------------------------------


def serve(args: argparse.Namespace) -> None:
    """``--serve``: the bench's server process (not for production: see ``clipfeed serve``)."""
    import uvicorn

    from api import MemoryStore, create_app
    from api.services import Metrics
    from cli.serve import settle_heap
    from cli.wiring import build_services
    from clipfeed.settings import Settings

    off = build_services(Settings(api_keys=KEY, rate_limit_per_s=1e6, rate_limit_burst=10**6), args.world, args.model)
    on = replace(
        off, settings=off.settings.model_copy(update={"servelog_dir": args.log_dir}), metrics=Metrics(), locks={}
    )

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # one handler below stops both servers
            yield

    ports = [int(p) for p in args.ports.split(",")]
    servers = [
        Server(
            uvicorn.Config(
                create_app(s, MemoryStore()),
                host="127.0.0.1",
                port=p,
                log_level="warning",
                timeout_keep_alive=120,  # a port waits while the other one is measured
            )
        )
        for s, p in zip((off, on), ports, strict=True)
    ]
    settle_heap()  # as `clipfeed serve` does: a full collection over the loaded world stalls requests

    def stop(*_: Any) -> None:
        for s in servers:
            s.should_exit = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    async def both() -> None:
        await asyncio.gather(*(s.serve() for s in servers))

    asyncio.run(both())


def proc_cpu(stat: Path) -> np.ndarray:
    """User and system CPU seconds from a ``/proc/.../stat`` file (fields 14 and 15)."""
    fields = stat.read_text().rpartition(")")[2].split()
    return np.array([int(fields[11]), int(fields[12])]) / os.sysconf("SC_CLK_TCK")


class ServerProcess:
    def __init__(self, world: Path, model: Path, log_dir: Path, pin: bool = False) -> None:
        self.ports = [free_port(), free_port()]
        cmd = [sys.executable, __file__, "--serve", "--world", str(world), "--model", str(model)]
        if pin:  # the server on core 0, this process (the load generator) on the others
            cmd = ["taskset", "-c", "0", *cmd]
            os.sched_setaffinity(0, set(range(1, os.cpu_count() or 2)))
        cmd += ["--log-dir", str(log_dir), "--ports", ",".join(map(str, self.ports))]
        self.proc = subprocess.Popen(cmd)
        deadline = time.monotonic() + 300
        for port in self.ports:
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("bench server did not start")
                time.sleep(0.2)

    def cpu_seconds(self) -> np.ndarray:
        """User and system CPU seconds of the server process so far, all its threads (``/proc``)."""
        return proc_cpu(Path(f"/proc/{self.proc.pid}/stat"))

    def thread_cpu_seconds(self) -> dict[str, float]:
        """CPU seconds so far of the server's main thread (the event loop) and of each other thread
        that used any (Python < 3.14 does not name OS threads: they are keyed by thread id)."""
        out: dict[str, float] = {}
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            name = "main" if task.name == str(self.proc.pid) else f"thread {task.name}"
            try:
                out[name] = float(proc_cpu(task / "stat").sum())
            except OSError:  # the thread ended meanwhile
                continue
        return out

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)


async def latency(args: argparse.Namespace, srv: ServerProcess, users: list[str]) -> tuple[dict[str, Any], int]:
    """Alternating open-loop runs on the two ports; returns the figures and the feeds answered 200 on
    the logging port (for the restart check)."""
    clients = [LeanClient("127.0.0.1", p) for p in srv.ports]
    answered_on = 0
    for c in clients:  # warm-up: every user's context replayed once in each app
        statuses = await asyncio.gather(*(c.request("GET", f"/v1/users/{u}/feed?limit=20") for u in users))
        answered_on = sum(s == 200 for s in statuses)

    def feed(i: int) -> tuple[str, str, str, Any]:
        return "feed", "GET", f"/v1/users/{users[i % len(users)]}/feed?limit=20", None

    rows = []
    for rate in args.rates:
        lat: dict[str, list[float]] = {"off": [], "on": []}
        thr: dict[str, list[float]] = {"off": [], "on": []}
        errors = {"off": 0, "on": 0}
        rep_p99: dict[str, list[float]] = {"off": [], "on": []}
        cpu: dict[str, list[tuple[np.ndarray, int]]] = {"off": [], "on": []}
        failures: dict[str, dict[str, int]] = {"off": {}, "on": {}}
        for rep in range(args.reps):
            for mode in ("off", "on") if rep % 2 == 0 else ("on", "off"):
                cpu0 = srv.cpu_seconds()
                res = await open_loop(clients[mode == "on"], rate, args.seconds, feed)
                cpu[mode].append((srv.cpu_seconds() - cpu0, res["statuses"].get("feed 200", 0)))
                lat[mode] += res.get("feed_latencies_ms", [])
                rep_p99[mode].append(pct(res.get("feed_latencies_ms", []), 0.99))
                thr[mode].append(res["throughput"])
                errors[mode] += res["errors"]
                for k, v in res["statuses"].items():
                    if k != "feed 200":
                        failures[mode][k] = failures[mode].get(k, 0) + v
                if mode == "on":
                    answered_on += res["statuses"].get("feed 200", 0)
        row: dict[str, Any] = {"rate": rate}
        for mode in ("off", "on"):
            row[mode] = {
                "p50_ms": pct(lat[mode], 0.5),
                "p99_ms": pct(lat[mode], 0.99),
                "throughput": round(min(thr[mode]), 1),
                "errors": errors[mode],
                **({"failures": failures[mode]} if failures[mode] else {}),
            }
        for mode in ("off", "on"):  # the server's CPU (all its threads) per answered feed: no queueing in it
            n = max(1, sum(k for _, k in cpu[mode]))
            user, system = (1e3 * np.sum([c for c, _ in cpu[mode]], axis=0) / n).tolist() if cpu[mode] else (0, 0)
            row[mode]["cpu_ms_per_feed"] = round(user + system, 3)
            row[mode]["sys_ms_per_feed"] = round(system, 3)
        row["cpu_delta_ms_per_feed"] = round(row["on"]["cpu_ms_per_feed"] - row["off"]["cpu_ms_per_feed"], 3)
        row["p99_delta_ms"] = round(row["on"]["p99_ms"] - row["off"]["p99_ms"], 2)
        # Each rep runs both ports back to back: the median of those paired differences is less
        # swayed than the pooled p99 by a stall that hits one port's run (a machine shared with the
        # load generator stalls both ways by tens of ms near saturation)
        paired = sorted(a - b for a, b in zip(rep_p99["on"], rep_p99["off"], strict=True))
        row["p99_by_rep_ms"] = {m: [round(v, 2) for v in rep_p99[m]] for m in ("off", "on")}
        row["p99_delta_median_paired_ms"] = round(float(np.median(paired)), 2) if paired else None
        row["p50_delta_ms"] = round(row["on"]["p50_ms"] - row["off"]["p50_ms"], 2)
        row["held"] = all(row[m]["throughput"] >= 0.95 * rate and row[m]["errors"] == 0 for m in ("off", "on"))
        rows.append(row)
    for c in clients:
        await c.close()
    held = [r["rate"] for r in rows if r["held"]]
    out: dict[str, Any] = {"runs": rows, "highest_rate_held": max(held) if held else None}
    out["server_thread_cpu_s"] = {k: round(v, 2) for k, v in srv.thread_cpu_seconds().items() if v > 0}
    if not held or max(held) < 200:
        out["note"] = (
            f"200 feeds/s not held by one server process on this machine (highest held: {max(held) if held else 'none'}"
            "/s); the p99 delta is reported at the rates it holds"
        )
    return out, answered_on


async def burst(port: int, users: list[str], n: int, rate: float) -> int:
    c = LeanClient("127.0.0.1", port)

    def feed(i: int) -> tuple[str, str, str, Any]:
        return "feed", "GET", f"/v1/users/{users[i % len(users)]}/feed?limit=20", None

    res = await open_loop(c, rate, n / rate, feed)
    await c.close()
    return int(res["statuses"].get("feed 200", 0))


def metric(port: int, name: str) -> float:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name))


def server_parts(args: argparse.Namespace, work: Path, world: Path, model: Path) -> dict[str, Any]:
    from clipfeed.world.respond import Responder

    users = Responder(world).warm_users()[:300]
    logdir = work / "latency-log"
    srv = ServerProcess(world, model, logdir, args.pin)
    figures, answered = asyncio.run(latency(args, srv, users))
    dropped = metric(srv.ports[1], "clipfeed_servelog_dropped_total")
    code = srv.stop()
    n_first = len(log_feeds(logdir))
    srv = ServerProcess(world, model, logdir, args.pin)
    more = asyncio.run(burst(srv.ports[1], users, args.restart_feeds, 100.0))
    dropped += metric(srv.ports[1], "clipfeed_servelog_dropped_total")
    code2 = srv.stop()
    feeds = log_feeds(logdir)
    ids = [f["request_id"] for f in feeds]
    figures["clean_restart"] = {
        "answered_before_stop": answered,
        "logged_before_restart": n_first,
        "answered_after_restart": more,
        "logged_total": len(feeds),
        "duplicates": len(ids) - len(set(ids)),
        "dropped_metric": dropped,
        "open_files_left": sum(p.name.endswith(".part") for p in logdir.iterdir()),
        "exit_codes": [code, code2],
        "exact": len(feeds) == answered + more and len(ids) == len(set(ids)) and n_first == answered,
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--clips", type=int, default=0, help="world size (default: the default world)")
    parser.add_argument("--users", type=int, default=0)
    parser.add_argument("--feeds-per-user", type=int, default=3)
    parser.add_argument("--arms", default="full:80,shuffle:20")
    parser.add_argument("--eval-users", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[50, 100, 150, 200])
    parser.add_argument("--restart-feeds", type=int, default=400)
    parser.add_argument("--parts", type=lambda s: set(s.split(",")), default={"quality", "server"})
    parser.add_argument("--json-out", type=Path, default=None)
    parser.add_argument(
        "--pin", action="store_true", help="server on core 0, load generator on the others (taskset; Linux)"
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--world", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--log-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args)
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="servelog-bench-") as tmp:
        work = Path(tmp)
        results, world, model = quality(args, work)
        print(json.dumps({"quality": results}, indent=2), flush=True)
        if "server" in args.parts:
            results["server"] = server_parts(args, work, world, model)
            print(json.dumps({"server": results["server"]}, indent=2), flush=True)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

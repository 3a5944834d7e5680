"""A/B of two `clipfeed serve` configurations under the same feed load, alternating.

Two server processes on the same world differ in one environment setting (default: the ranker's
trees compiled by lleaves, ``CLIPFEED_COMPILE_RANKER``, on vs off). Each round loads one, then the
other, at each rate (the order flips every round), so the machine's drift, which on these shared
2-core machines moves latency by tens of percent from minute to minute, hits both alike. Only one
server is loaded at a time; the idle one costs nothing. Prints per rate and arm the achieved
throughput and p50/p99 over all rounds, and each round's p99.

Run: .venv/bin/python benchmarks/api_ab.py [--setting CLIPFEED_COMPILE_RANKER] [--a true] [--b false]
     [--rates 100,150,200] [--seconds 4] [--rounds 3] [--json-out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from api_load import LeanClient, open_loop, pct, start_server

from clipfeed.world import WorldConfig, build_world


async def measure(ports: dict[str, int], users: list[str], args: argparse.Namespace) -> dict[str, Any]:
    clients = {arm: LeanClient("127.0.0.1", port) for arm, port in ports.items()}

    def feed(i: int) -> tuple[str, str, str, None]:
        return "feed", "GET", f"/v1/users/{users[i % len(users)]}/feed?limit=20", None

    for arm, client in clients.items():  # contexts seeded into Redis, caches warm
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports[arm]}", timeout=60) as c:
            for u in users:
                await c.get(f"/v1/users/{u}/feed?limit=20")
        await open_loop(client, 50, 2, feed)
    lat: dict[tuple[float, str], list[float]] = {}
    out: dict[str, Any] = {"rounds": []}
    for rnd in range(args.rounds):
        order = list(clients) if rnd % 2 == 0 else list(clients)[::-1]
        row: dict[str, Any] = {}
        for rate in args.rates:
            for arm in order:
                r = await open_loop(clients[arm], rate, args.seconds, feed)
                lat.setdefault((rate, arm), []).extend(r["feed_latencies_ms"])
                row[f"{arm}@{rate:g}"] = {"throughput": r["throughput"], "p99": r["feed"]["p99"], "errors": r["errors"]}
                await asyncio.sleep(1.0)  # let the backlog of an overloaded run drain
        out["rounds"].append(row)
        print(json.dumps({"round": rnd, **row}), flush=True)
    out["overall"] = {
        f"{arm}@{rate:g}": {
            "p50": pct(v, 0.5),
            "p99": pct(v, 0.99),
            "throughput_mean": round(
                sum(r[f"{arm}@{rate:g}"]["throughput"] for r in out["rounds"]) / len(out["rounds"]), 1
            ),
        }
        for (rate, arm), v in lat.items()
    }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setting", default="CLIPFEED_COMPILE_RANKER")
    parser.add_argument("--a", default="true", help="value of the setting for arm a")
    parser.add_argument("--b", default="false", help="value of the setting for arm b")
    parser.add_argument("--rates", type=lambda s: [float(x) for x in s.split(",")], default=[100, 150, 200])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--users", type=int, default=300, help="distinct users requested (cycled)")
    parser.add_argument("--json-out", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        world = tmp / "world"
        build_world(world, WorldConfig(seed=42), progress=False)
        users = [json.loads(line)["user_id"] for line in (world / "truth" / "users.jsonl").read_text().splitlines()]
        procs = {}
        ports = {}
        try:
            for arm, value in (("a", args.a), ("b", args.b)):
                procs[arm], ports[arm] = start_server(world, tmp / f"data-{arm}", {args.setting: value})
            res = asyncio.run(measure(ports, users[: args.users], args))
        finally:
            for p in procs.values():
                p.send_signal(signal.SIGINT)
            for p in procs.values():
                p.wait(timeout=30)
    res["config"] = {"setting": args.setting, "a": args.a, "b": args.b, "seconds": args.seconds, "cpus": os.cpu_count()}
    print(json.dumps({k: v for k, v in res.items() if k != "rounds"}, indent=2))
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

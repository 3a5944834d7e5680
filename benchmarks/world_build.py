"""Prints how long `clipfeed world build` takes at the default size and how big the output is.

Run: .venv/bin/python benchmarks/world_build.py [--seed N]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from clipfeed.world import WorldConfig, build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        stats = build_world(Path(tmp), WorldConfig(seed=args.seed), progress=False)
        seconds = time.perf_counter() - t0
        sizes = {p.name: p.stat().st_size for p in Path(tmp).rglob("*.jsonl")}
    events = sum(stats["events"].values())
    print(
        json.dumps(
            {
                "seconds": round(seconds, 2),
                "clips": stats["clips"],
                "users": stats["users"],
                "queries": stats["queries"],
                "events": events,
                "events_per_second": round(events / seconds),
                "bytes": sizes,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()

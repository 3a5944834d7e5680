"""What the API holds in memory: the catalog, the models, the feed builder, metrics and limits."""

from __future__ import annotations

import asyncio
import hmac
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from clipfeed.settings import Settings
from recommender import ContextUpdater, FeedBuilder, SearchTagging, UserContext, WorldData, replay
from recommender.catalog import CatalogIndex

ARMS = ("full", "popularity", "shuffle")


def single_threaded_blas() -> int:
    """Limits numpy's and scipy's OpenBLAS to one thread in the serving process; returns how many
    pools were limited.

    A feed does only small products (300 candidates x 32 dims); a multi-threaded OpenBLAS wakes its
    threads for each and waits for them, which measured 2-3x slower per feed on 2 busy cores
    (p50 9-15 ms -> 4-5 ms). torch (the student tagger) keeps its own threads: MKL/OpenMP are not
    touched.
    """
    from threadpoolctl import ThreadpoolController

    pools = ThreadpoolController().select(internal_api="openblas")
    pools.limit(limits=1)
    return len(pools.lib_controllers)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.latency = Histogram(
            "clipfeed_request_seconds",
            "Request latency by route",
            ["route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
        )
        self.events = Counter("clipfeed_events_total", "Events by outcome", ["status"], registry=self.registry)
        self.fallbacks = Counter(
            "clipfeed_fallbacks_total", "Degraded responses by kind", ["kind"], registry=self.registry
        )
        self.arms = Counter(
            "clipfeed_feed_arm_total", "Feeds served by experiment arm", ["arm"], registry=self.registry
        )
        self.tag_cache = Gauge("clipfeed_tag_cache_hit_ratio", "Tag cache hit ratio", registry=self.registry)
        self.searches = Counter(
            "clipfeed_searches_total", "Search events by where their tags came from", ["via"], registry=self.registry
        )
        self.tagger_queue = Gauge(
            "clipfeed_tagger_queue_depth", "Searches waiting for the tagger", registry=self.registry
        )
        self.servelog_written = Counter(
            "clipfeed_servelog_written_total", "Served-impression log records written", registry=self.registry
        )
        self.servelog_dropped = Counter(
            "clipfeed_servelog_dropped_total",
            "Served-impression log records dropped (queue full: back-pressure; closed; write error)",
            ["reason"],
            registry=self.registry,
        )
        self.servelog_queue = Gauge(
            "clipfeed_servelog_queue_depth", "Log records waiting for the writer thread", registry=self.registry
        )
        self.ranker_compiled = Gauge(
            "clipfeed_ranker_compiled",
            "1 when the booster predicts from native code (lleaves), 0 when LightGBM does (fallback or off)",
            ["booster"],
            registry=self.registry,
        )


class RateLimiter:
    """A token bucket per API key (or per client address when keys are off)."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens < 1.0:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1.0, now)
        return True


def parse_arms(spec: str) -> list[tuple[str, int]]:
    arms = []
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in ARMS or not weight.isdigit():
            raise ValueError(f"experiment_arms: bad entry {part!r} (arms: {', '.join(ARMS)}; form arm:weight)")
        arms.append((name, int(weight)))
    if sum(w for _, w in arms) <= 0:
        raise ValueError("experiment_arms: weights must add up to more than 0")
    return arms


@dataclass
class Services:
    settings: Settings
    world: WorldData
    catalog: CatalogIndex
    tagging: SearchTagging
    builder: FeedBuilder
    updater: ContextUpdater
    metrics: Metrics = field(default_factory=Metrics)
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(2000, 4000))
    locks: dict[str, asyncio.Lock] = field(default_factory=dict)
    arms: list[tuple[str, int]] = field(default_factory=lambda: [("full", 100)])
    world_path: Path | None = None

    def lock(self, user_id: str) -> asyncio.Lock:
        if len(self.locks) > 100_000:
            self.locks = {k: v for k, v in self.locks.items() if v.locked()}
        return self.locks.setdefault(user_id, asyncio.Lock())

    def arm(self, user_id: str) -> str:
        """Deterministic bucketing: the same user always lands in the same arm."""
        total = sum(w for _, w in self.arms)
        point = zlib.crc32(f"arm:{user_id}".encode()) % total
        for name, weight in self.arms:
            if point < weight:
                return name
            point -= weight
        return self.arms[-1][0]

    def check_key(self, given: str | None) -> bool:
        keys = self.settings.api_key_list
        if not keys:
            return True
        if given is None:
            return False
        # constant-time comparison against every key (no early exit on the first match)
        ok = False
        for key in keys:
            ok |= hmac.compare_digest(given.encode(), key.encode())
        return ok

    def seed_context(self, user_id: str) -> UserContext:
        """A user the API has not seen: their context from the world's logs, if they are in it."""
        log = self.world.users.get(user_id)
        return replay(self.updater, self.catalog, self.tagging, log) if log else UserContext()

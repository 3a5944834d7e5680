"""The feed store: one interface, an in-memory and a Redis implementation, one shared test suite.

Every key has a TTL and every per-user collection a bound. Keys of one user share a Redis Cluster
hash tag (``{user}``) so they land in one slot.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ClusterError, RedisClusterException

CONTEXT_TTL_S = 30 * 86400
EVENT_TTL_S = 7 * 86400
SERVED_TTL_S = 86400
TAGS_TTL_S = 7 * 86400
MAX_SERVED = 1000


class StoreUnavailable(Exception):
    """The store cannot be reached (timeouts, refused connections)."""


class FeedStore(Protocol):
    async def ping(self) -> bool: ...
    async def get_context(self, user_id: str) -> dict[str, Any] | None: ...
    async def put_context(self, user_id: str, ctx: dict[str, Any]) -> None: ...
    async def put_contexts(self, items: list[tuple[str, dict[str, Any]]], only_new: bool = False) -> list[bool]: ...
    async def claim_event(self, event_id: str) -> bool: ...
    async def claim_events(self, event_ids: list[str]) -> list[bool]: ...
    async def add_served(self, user_id: str, session: str, clip_ids: list[str]) -> None: ...
    async def get_served(self, user_id: str, session: str) -> set[str]: ...
    async def get_tags(self, key: str) -> str | None: ...
    async def put_tags(self, key: str, value: str) -> None: ...
    async def close(self) -> None: ...


def _dumps(ctx: dict[str, Any]) -> bytes:
    """A context as JSON (orjson: ~5x json's speed, and contexts are read on every feed)."""
    return orjson.dumps(ctx, default=float)  # numpy scalars, should one reach a context, as floats


def _ctx_key(user_id: str) -> str:
    return f"cf:{{{user_id}}}:ctx"


def _served_key(user_id: str, session: str) -> str:
    return f"cf:{{{user_id}}}:served:{session}"


class MemoryStore:
    """In-process store with the same TTL and bound semantics (tests, single-process runs)."""

    def __init__(self, context_ttl_s: float = CONTEXT_TTL_S) -> None:
        self.context_ttl_s = context_ttl_s
        self.data: dict[str, tuple[float, Any]] = {}  # key -> (expires_at, value)

    def _get(self, key: str) -> Any:
        hit = self.data.get(key)
        if hit is None or hit[0] < time.time():
            self.data.pop(key, None)
            return None
        return hit[1]

    def _set(self, key: str, value: Any, ttl: float) -> None:
        self.data[key] = (time.time() + ttl, value)

    def ttl(self, key: str) -> float | None:
        hit = self.data.get(key)
        return None if hit is None else hit[0] - time.time()

    async def ping(self) -> bool:
        return True

    async def get_context(self, user_id: str) -> dict[str, Any] | None:
        raw = self._get(_ctx_key(user_id))
        return orjson.loads(raw) if raw is not None else None

    async def put_context(self, user_id: str, ctx: dict[str, Any]) -> None:
        self._set(_ctx_key(user_id), _dumps(ctx), self.context_ttl_s)

    async def put_contexts(self, items: list[tuple[str, dict[str, Any]]], only_new: bool = False) -> list[bool]:
        written = []
        for user_id, ctx in items:
            fresh = not only_new or self._get(_ctx_key(user_id)) is None
            if fresh:
                self._set(_ctx_key(user_id), _dumps(ctx), self.context_ttl_s)
            written.append(fresh)
        return written

    async def claim_event(self, event_id: str) -> bool:
        key = f"cf:event:{event_id}"
        if self._get(key) is not None:
            return False
        self._set(key, 1, EVENT_TTL_S)
        return True

    async def claim_events(self, event_ids: list[str]) -> list[bool]:
        return [await self.claim_event(e) for e in event_ids]

    async def add_served(self, user_id: str, session: str, clip_ids: list[str]) -> None:
        key = _served_key(user_id, session)
        served: list[str] = list(self._get(key) or [])
        served = [*served, *clip_ids][-MAX_SERVED:]
        self._set(key, served, SERVED_TTL_S)

    async def get_served(self, user_id: str, session: str) -> set[str]:
        return set(self._get(_served_key(user_id, session)) or [])

    async def get_tags(self, key: str) -> str | None:
        value = self._get(f"cf:tags:{key}")
        return str(value) if value is not None else None

    async def put_tags(self, key: str, value: str) -> None:
        self._set(f"cf:tags:{key}", value, TAGS_TTL_S)

    async def close(self) -> None:
        self.data.clear()


CLUSTER_SCHEME = "redis+cluster://"


# KEYS[1]: a served list; ARGV: its bound, its TTL in seconds, then the clip ids to append
_ADD_SERVED = """
redis.call('RPUSH', KEYS[1], unpack(ARGV, 3))
redis.call('LTRIM', KEYS[1], -tonumber(ARGV[1]), -1)
return redis.call('EXPIRE', KEYS[1], ARGV[2])
"""


class RedisStore:
    """Redis behind one bounded async connection pool with connect/read timeouts.

    ``redis+cluster://HOST:PORT`` selects a Redis Cluster through redis-py's cluster client (any
    node as the entry point); a user's keys share the hash tag ``{user}``, so they live in one slot.
    """

    def __init__(
        self, url: str, pool_size: int = 32, timeout_s: float = 0.5, context_ttl_s: float = CONTEXT_TTL_S
    ) -> None:
        self.context_ttl_s = context_ttl_s
        self.cluster = url.startswith(CLUSTER_SCHEME)
        self.pool: aioredis.BlockingConnectionPool | None = None
        self.client: aioredis.Redis | RedisCluster
        if self.cluster:
            self.client = RedisCluster.from_url(
                "redis://" + url.removeprefix(CLUSTER_SCHEME),
                max_connections=pool_size,  # per node
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                decode_responses=True,
            )
            self._add_served = self.client.register_script(_ADD_SERVED)
            return
        self.pool = aioredis.BlockingConnectionPool.from_url(
            url,
            max_connections=pool_size,
            # Waiting for a free connection means load, not an outage: it may take longer than one
            # call to Redis may (a dead Redis still fails fast on connect/read).
            timeout=max(2.0, 4 * timeout_s),
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            decode_responses=True,
        )
        self.client = aioredis.Redis(connection_pool=self.pool)
        self._add_served = self.client.register_script(_ADD_SERVED)

    async def _call(self, coro: Any) -> Any:
        try:
            return await coro
        except (aioredis.ConnectionError, aioredis.TimeoutError, ClusterError, RedisClusterException, OSError) as e:
            raise StoreUnavailable(str(e)) from e

    async def ping(self) -> bool:
        try:
            return bool(await self._call(self.client.ping()))
        except StoreUnavailable:
            return False

    async def get_context(self, user_id: str) -> dict[str, Any] | None:
        raw = await self._call(self.client.get(_ctx_key(user_id)))
        return orjson.loads(raw) if raw is not None else None

    async def put_context(self, user_id: str, ctx: dict[str, Any]) -> None:
        await self._call(self.client.set(_ctx_key(user_id), _dumps(ctx), ex=int(self.context_ttl_s)))

    async def put_contexts(self, items: list[tuple[str, dict[str, Any]]], only_new: bool = False) -> list[bool]:
        """Writes many contexts in one pipelined round trip (one per node in a cluster: redis-py splits
        the pipeline by slot); with ``only_new`` a user who has a context keeps it (``SET NX``).
        Returns which were written (the offline context job, ``clipfeed world contexts``)."""
        if not items:
            return []
        pipe = self.client.pipeline(transaction=False)
        for user_id, ctx in items:
            pipe.set(_ctx_key(user_id), _dumps(ctx), ex=int(self.context_ttl_s), nx=only_new)
        return [bool(r) for r in await self._call(pipe.execute())]

    async def claim_event(self, event_id: str) -> bool:
        return bool(await self._call(self.client.set(f"cf:event:{event_id}", 1, nx=True, ex=EVENT_TTL_S)))

    async def claim_events(self, event_ids: list[str]) -> list[bool]:
        """Claims several events in one round trip (a pipeline of SET NX); a repeated id in the
        list is claimed once, by its first occurrence."""
        pipe = self.client.pipeline(transaction=False)
        for event_id in event_ids:
            pipe.set(f"cf:event:{event_id}", 1, nx=True, ex=EVENT_TTL_S)
        return [bool(r) for r in await self._call(pipe.execute())]

    async def add_served(self, user_id: str, session: str, clip_ids: list[str]) -> None:
        if not clip_ids:
            return
        # one server-side script (append, bound, TTL: atomic, one key so any cluster node runs it):
        # one command instead of a MULTI/EXEC pipeline of three, ~40 % less client CPU per feed
        await self._call(
            self._add_served(keys=[_served_key(user_id, session)], args=[MAX_SERVED, SERVED_TTL_S, *clip_ids])
        )

    async def get_served(self, user_id: str, session: str) -> set[str]:
        return set(await self._call(self.client.lrange(_served_key(user_id, session), 0, -1)))

    async def get_tags(self, key: str) -> str | None:
        value = await self._call(self.client.get(f"cf:tags:{key}"))
        return str(value) if value is not None else None

    async def put_tags(self, key: str, value: str) -> None:
        await self._call(self.client.set(f"cf:tags:{key}", value, ex=TAGS_TTL_S))

    async def close(self) -> None:
        await self.client.aclose()
        if self.pool is not None:
            await self.pool.aclose()

"""One test suite, run against both store implementations (in-memory and a real Redis server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import pytest
import redis

from api.embedded import EmbeddedRedis
from api.store import MAX_SERVED, FeedStore, MemoryStore, RedisStore
from tests.api.conftest import LocalRedisCluster

Body = Callable[[FeedStore], Awaitable[None]]


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
def run(request: pytest.FixtureRequest) -> Callable[[Body], None]:
    """Runs a test body against a fresh store inside one event loop (async pools are loop-bound):
    in-memory, the embedded Redis, and a real 3-master Redis Cluster."""
    url = None
    if request.param == "redis":
        url = request.getfixturevalue("embedded_redis").url
    elif request.param == "cluster":
        url = request.getfixturevalue("redis_cluster").url

    def runner(body: Body) -> None:
        async def main() -> None:
            store: FeedStore = MemoryStore() if url is None else RedisStore(url, 4, 1.0)
            try:
                await body(store)
            finally:
                await store.close()

        asyncio.run(main())

    runner.kind = request.param  # type: ignore[attr-defined]
    runner.fixture = request  # type: ignore[attr-defined]
    return runner


def uid() -> str:
    return uuid.uuid4().hex[:12]


def test_context_round_trip(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        user = uid()
        assert await store.get_context(user) is None
        await store.put_context(user, {"a": 1, "t": ["x"]})
        assert await store.get_context(user) == {"a": 1, "t": ["x"]}

    run(body)


def test_contexts_in_one_pipelined_batch_keep_existing_ones_unless_told(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        users = [uid() for _ in range(20)]  # spread over every slot of a cluster
        await store.put_context(users[0], {"online": True})
        written = await store.put_contexts([(u, {"n": i}) for i, u in enumerate(users)], only_new=True)
        assert written == [False] + [True] * 19
        assert await store.get_context(users[0]) == {"online": True}
        assert await store.get_context(users[7]) == {"n": 7}
        assert await store.put_contexts([(users[0], {"n": 0})]) == [True]
        assert await store.get_context(users[0]) == {"n": 0}
        assert await store.put_contexts([]) == []

    run(body)


def test_events_are_claimed_once(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        eid = uid()
        assert await store.claim_event(eid) is True
        assert await store.claim_event(eid) is False
        other, third = uid(), uid()
        assert await store.claim_events([other, eid, other, third]) == [True, False, False, True]
        assert await store.claim_events([]) == []

    run(body)


def test_served_sets_are_per_session_and_bounded(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        user = uid()
        await store.add_served(user, "s1", ["c1", "c2"])
        await store.add_served(user, "s1", ["c3"])
        assert await store.get_served(user, "s1") == {"c1", "c2", "c3"}
        assert await store.get_served(user, "s2") == set()
        await store.add_served(user, "big", [f"c{i}" for i in range(MAX_SERVED + 50)])
        assert len(await store.get_served(user, "big")) == MAX_SERVED

    run(body)


def test_tag_cache(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        key = uid()
        assert await store.get_tags(key) is None
        await store.put_tags(key, '["a"]')
        assert await store.get_tags(key) == '["a"]'

    run(body)


def test_every_key_has_a_ttl(run: Callable[[Body], None]) -> None:
    kind: str = run.kind  # type: ignore[attr-defined]
    request: pytest.FixtureRequest = run.fixture  # type: ignore[attr-defined]

    async def body(store: FeedStore) -> None:
        user = uid()
        await store.put_context(user, {})
        await store.claim_event(uid())
        await store.add_served(user, "s", ["c1"])
        await store.put_tags(uid(), "x")
        if isinstance(store, MemoryStore):
            ttls = [store.ttl(k) for k in store.data]
            assert ttls and all(t is not None and t > 0 for t in ttls)
        elif kind == "redis":
            server: EmbeddedRedis = request.getfixturevalue("embedded_redis")
            client = redis.Redis(unix_socket_path=str(server.socket))
            keys = client.keys("cf:*")
            assert keys and all(client.ttl(k) > 0 for k in keys)
        else:
            cluster: LocalRedisCluster = request.getfixturevalue("redis_cluster")
            keys_seen = 0
            for port in cluster.ports:  # every master: keys spread over the slots
                node = redis.Redis(port=port)
                keys = node.keys("cf:*")
                keys_seen += len(keys)
                assert all(node.ttl(k) > 0 for k in keys)
            assert keys_seen >= 4
            # one user's keys share a slot: the hash tag {user}
            slot = redis.Redis(port=cluster.ports[0]).cluster("keyslot", f"cf:{{{user}}}:ctx")
            assert redis.Redis(port=cluster.ports[0]).cluster("keyslot", f"cf:{{{user}}}:served:s") == slot

    run(body)


def test_ping(run: Callable[[Body], None]) -> None:
    async def body(store: FeedStore) -> None:
        assert await store.ping() is True

    run(body)

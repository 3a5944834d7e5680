"""Offline user contexts for every user, written to the feed store in pipelined batches — on Ray Data
(a pool of actors, each with the world loaded once and its own store client) or in this process,
with the same two functions either way.

The caller supplies two picklable factories (``cli/scale.py`` does): one that builds a function from
user ids to their replayed contexts (``ContextUpdater`` over the user's logs, what the API's
``seed_context`` does for a user it meets first), and one that opens the store
(:class:`api.store.RedisStore`, whose ``put_contexts`` sends one pipeline per batch; in a Redis
Cluster redis-py splits it by slot, and every key of a user shares the ``{user}`` hash tag).

By default a user who already has a context in the store keeps it (``SET NX``): the API may have
folded in newer events since the logs were written. ``overwrite`` replaces them.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

from scale.engine import actor_resources, require_ray, session

ContextBuilder = Callable[[list[str]], list[tuple[str, dict[str, Any] | None]]]
ContextFactory = Callable[[], ContextBuilder]
StoreFactory = Callable[[], Any]  # an object with ``async put_contexts(items, only_new)`` and ``close()``


class ContextWriter:
    """Replays a batch of users and writes their contexts with one pipelined call per batch."""

    def __init__(self, factory: ContextFactory, store_factory: StoreFactory, overwrite: bool = False) -> None:
        self.build = factory()
        self.loop = asyncio.new_event_loop()  # the async store client lives on this loop
        self.store = store_factory()
        self.overwrite = overwrite

    def write(self, user_ids: list[str]) -> dict[str, int]:
        pairs = self.build(user_ids)
        items = [(u, ctx) for u, ctx in pairs if ctx]
        written = self.loop.run_until_complete(self.store.put_contexts(items, only_new=not self.overwrite))
        n = int(sum(written))
        return {"users": len(user_ids), "written": n, "kept": len(items) - n, "empty": len(pairs) - len(items)}

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[int]]:
        counts = self.write([str(u) for u in batch["user_id"]])
        return {k: [v] for k, v in counts.items()}

    def close(self) -> None:
        self.loop.run_until_complete(self.store.close())
        self.loop.close()


def _summary(parts: Sequence[dict[str, Any]], start: float, engine: str, workers: int) -> dict[str, Any]:
    totals = {k: int(sum(int(p[k]) for p in parts)) for k in ("users", "written", "kept", "empty")}
    seconds = time.perf_counter() - start
    rate = round(totals["users"] / seconds, 1) if seconds > 0 else 0.0
    return totals | {"seconds": round(seconds, 2), "users_per_s": rate, "engine": engine, "workers": workers}


def write_contexts(
    user_ids: Sequence[str],
    factory: ContextFactory,
    store_factory: StoreFactory,
    *,
    engine: str = "local",
    batch_size: int = 200,
    overwrite: bool = False,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Every user's context into the store (see the module docstring); returns counts and speed:
    ``written``, ``kept`` (already had one), ``empty`` (nothing to replay), ``users_per_s``."""
    start = time.perf_counter()
    users = list(user_ids)
    if engine == "local":
        writer = ContextWriter(factory, store_factory, overwrite)
        try:
            parts = [writer.write(users[i : i + batch_size]) for i in range(0, len(users), batch_size)]
        finally:
            writer.close()
        return _summary(parts, start, "local", 1)
    if engine != "ray":
        raise ValueError(f"engine {engine!r}: expected local or ray")
    require_ray()
    with session(address, progress=progress):
        import ray.data

        res = actor_resources(workers)
        n_blocks = max(1, min(len(users), max(2 * res.workers, len(users) // (4 * batch_size))))
        ds = ray.data.from_items([{"user_id": u} for u in users], override_num_blocks=n_blocks)
        out = ds.map_batches(
            ContextWriter,
            fn_constructor_kwargs={"factory": factory, "store_factory": store_factory, "overwrite": overwrite},
            batch_size=batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=res.workers),
            num_cpus=res.num_cpus,
        )
        parts = out.take_all()
        return _summary(parts, start, "ray", res.workers)

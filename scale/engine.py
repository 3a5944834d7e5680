"""Connecting to Ray: a clear error without the ``[scale]`` extra, a local or existing cluster, actor
resources (a GPU per actor when the cluster has GPUs, CPUs otherwise).

>>> "install the [scale] extra" in MISSING
True
>>> require_ray().__name__  # with the extra installed
'ray'
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clipfeed.errors import ClipfeedError

MISSING = "Ray is not installed: install the [scale] extra (pip install -e '.[scale]')"


class RayMissing(ClipfeedError):
    """``--engine ray`` without Ray installed."""


def require_ray() -> Any:
    """The ``ray`` module, or :class:`RayMissing` naming the extra to install."""
    try:
        import ray
        import ray.data  # the [data] part of the extra
    except ImportError as e:
        raise RayMissing(MISSING) from e
    return ray


@contextmanager
def session(address: str | None = None, *, num_cpus: int | None = None, progress: bool = True) -> Iterator[Any]:
    """Ray, connected: to the cluster at ``address`` (``auto``, ``ray://HOST:10001``, or ``RAY_ADDRESS``),
    else a local one started here and stopped on exit. A session that is already connected (a test's,
    a notebook's) is reused and left running."""
    ray = require_ray()
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.enable_progress_bars = progress
    ctx.print_on_execution_start = progress
    if ray.is_initialized():
        yield ray
        return
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.WARNING}
    if address or os.environ.get("RAY_ADDRESS"):
        kwargs["address"] = address or os.environ["RAY_ADDRESS"]
    else:
        kwargs["num_cpus"] = num_cpus
    ray.init(**kwargs)
    try:
        yield ray
    finally:
        ray.shutdown()


@dataclass(frozen=True)
class ActorResources:
    """What each actor of a pool asks Ray for, and how many actors the pool has."""

    workers: int
    num_cpus: float
    num_gpus: float

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus else "cpu"


def actor_resources(workers: int | None = None, *, use_gpu: bool = True, cpus_per_actor: float = 1.0) -> ActorResources:
    """One GPU per actor when the cluster has GPUs (and ``use_gpu``), else ``cpus_per_actor`` CPUs;
    ``workers`` defaults to one actor per GPU, or per ``cpus_per_actor`` CPUs."""
    import ray

    res = ray.cluster_resources()  # type: ignore[no-untyped-call]
    gpus, cpus = int(res.get("GPU", 0)), float(res.get("CPU", 1))
    if use_gpu and gpus > 0:
        return ActorResources(workers or gpus, 1.0, 1.0)
    n = workers or max(1, int(cpus // cpus_per_actor))
    # more actors than CPUs still run (each asks for a share), e.g. to show scaling on a small machine
    return ActorResources(n, min(cpus_per_actor, cpus / n), 0.0)

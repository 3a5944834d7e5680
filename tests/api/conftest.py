from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from api.embedded import EmbeddedRedis
from api.services import Services
from cli.wiring import build_services
from clipfeed.settings import Settings


@pytest.fixture(scope="session")
def embedded_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def services(small_world: Path) -> Services:
    return build_services(Settings(api_keys="test-key,other-key"), small_world)

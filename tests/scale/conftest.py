"""A local Ray cluster of 2 CPUs, started once for the Ray tests (about 10 s on 2 busy cores)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    import ray

    # the workers import the test helpers (tests.scale.fakes) by name, as the driver does
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=300 * 1024 * 1024,
        logging_level=logging.WARNING,
        runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}},
    )
    from ray.data import DataContext

    DataContext.get_current().enable_progress_bars = False
    yield ray
    ray.shutdown()

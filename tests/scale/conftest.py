"""A local Ray cluster of 2 CPUs, started once per Ray test module (about 10 s on 2 busy cores)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


# Per module, not per session: an actor a labeling test leaves behind (Ray Data releases its actor
# pool when the dataset is collected, and a killed-worker test restarts one) can hold one of the two
# CPUs, and the distributed ranker training, which needs both for its two workers, then waits for a
# placement group forever (seen once in a local `.ci/run`: the Train controller idle until the 900 s timeout).
@pytest.fixture(scope="module")
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

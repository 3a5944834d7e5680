from __future__ import annotations

from pathlib import Path

import pytest

from cli.wiring import Stack, load_stack, train_ranker
from recommender import Ranker


@pytest.fixture(scope="session")
def stack(small_world: Path) -> Stack:
    return load_stack(small_world)


@pytest.fixture(scope="session")
def tiny_ranker(stack: Stack) -> Ranker:
    return train_ranker(stack)[0]

from __future__ import annotations

from pathlib import Path

import pytest

from cli.wiring import Stack, load_stack
from recommender import Ranker, build_training
from recommender.candidates import TagVectorCache


@pytest.fixture(scope="session")
def stack(small_world: Path) -> Stack:
    return load_stack(small_world)


@pytest.fixture(scope="session")
def tiny_ranker(stack: Stack) -> Ranker:
    data = build_training(
        stack.catalog,
        stack.tagging,
        sorted(stack.world.users.items()),
        stack.cfg,
        TagVectorCache(stack.catalog),
        progress=False,
    )
    return Ranker.train(data, stack.cfg, stack.split)

"""Shared fixtures: built worlds are cached per test session (building is deterministic)."""

from __future__ import annotations

from pathlib import Path

import pytest

from clipfeed.world import WorldConfig, build_world

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A file in ../shared/data, or a skip with the reason when it is absent (e.g. a user's machine)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real data not present at {path} (see ../shared/data/README.md)")
    return path


SMALL = WorldConfig(seed=3, n_clips=600, n_creators=60, n_users=200)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("small_world")
    build_world(out, SMALL, progress=False)
    return out


@pytest.fixture(scope="session")
def default_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("default_world")
    stats = build_world(out, WorldConfig(), progress=False)
    return out, stats

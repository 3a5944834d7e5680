"""The typed configuration of the sample world, saved as ``world.json`` next to its files."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

WORLD_FILES = ("catalog.jsonl", "queries.jsonl", "events.jsonl", "gold.jsonl", "taxonomy.tsv")


class WorldConfig(BaseModel):
    """Sizes and behaviour knobs of the simulator (see ``docs/world.md``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(default=42, ge=0)
    n_clips: int = Field(default=3200, ge=200, le=2_000_000)
    n_creators: int = Field(default=320, ge=20)
    n_users: int = Field(default=2000, ge=50, le=5_000_000)
    cold_share: float = Field(default=0.3, ge=0.0, le=0.9)
    ko_share: float = Field(default=0.55, ge=0.0, le=1.0)
    start: datetime = datetime(2026, 3, 1, tzinfo=UTC)
    days: int = Field(default=28, ge=2)
    catalog_age_days: int = Field(default=180, ge=1)
    queries_per_user: tuple[int, int] = (4, 10)
    sessions_per_warm_user: tuple[int, int] = (3, 8)
    impressions_per_session: int = Field(default=10, ge=1)
    heldout_impressions: int = Field(default=150, ge=10)
    docs_share: float = Field(default=0.4, ge=0.0, le=1.0)
    navigational_share: float = Field(default=0.1, ge=0.0, le=0.5)
    travel_planner_share: float = Field(default=0.12, ge=0.0, le=0.5)
    soccer_fan_share: float = Field(default=0.08, ge=0.0, le=0.5)
    baseball_fan_share: float = Field(default=0.06, ge=0.0, le=0.5)
    meaningful_watch_ratio: float = Field(default=0.5, gt=0.0, le=1.0)
    noise: float = Field(default=0.6, ge=0.0, le=3.0)

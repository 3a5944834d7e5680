"""Typed configuration of the recommender (signals, candidates, ranker, feed), saved beside the model."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SignalConfig(BaseModel):
    """How events fold into the user context."""

    model_config = ConfigDict(extra="forbid")

    half_life_days: float = Field(default=7.0, gt=0, description="Recency decay of every affinity.")
    meaningful_watch_ratio: float = Field(default=0.5, gt=0, le=1)
    max_topics: int = Field(default=40, ge=1)
    max_tags: int = Field(default=30, ge=1)
    max_creators: int = Field(default=50, ge=1)
    max_seen: int = Field(default=1000, ge=1)
    max_searches: int = Field(default=20, ge=1)
    max_liked: int = Field(default=50, ge=1, description="Liked clips kept for the collaborative signals.")


class CandidateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_candidates: int = Field(default=100, ge=1)
    max_candidates: int = Field(default=300, ge=1)
    per_topic: int = Field(default=60, ge=1)
    embedding_top: int = Field(default=80, ge=0)
    keyword_top: int = Field(default=60, ge=0)


class FeedConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    topic_cap_share: float = Field(default=0.7, gt=0, le=1, description="Max share of a page from one topic.")
    creator_cap_share: float = Field(default=0.3, gt=0, le=1, description="Max share of a page from one creator.")
    creator_gap: int = Field(
        default=1, ge=0, description="At least this many other items between two items of one creator."
    )
    exploration_share: float = Field(default=0.1, ge=0, le=0.5)
    seed: int = 0

    @model_validator(mode="before")
    @classmethod
    def _legacy_creator_cap(cls, data: Any) -> Any:
        # Models saved before the per-share cap and the gap carry ``creator_cap`` (a fixed count per
        # page): the page rules are serving settings, not part of what the model learnt, so the new
        # defaults apply to them.
        if isinstance(data, dict) and "creator_cap" in data:
            data = {k: v for k, v in data.items() if k != "creator_cap"}
        return data


class RankerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_leaves: int = Field(default=31, ge=2)
    learning_rate: float = Field(default=0.05, gt=0)
    num_boost_round: int = Field(default=400, ge=1)
    early_stopping_rounds: int = Field(default=30, ge=1)
    min_data_in_leaf: int = Field(default=50, ge=1)
    valid_after_day: float = Field(default=21.0, ge=0, description="Sessions after this day validate.")
    seed: int = 0
    num_threads: int = Field(default=2, ge=1)


class RecommenderConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    signals: SignalConfig = Field(default_factory=SignalConfig)
    candidates: CandidateConfig = Field(default_factory=CandidateConfig)
    feed: FeedConfig = Field(default_factory=FeedConfig)
    ranker: RankerConfig = Field(default_factory=RankerConfig)

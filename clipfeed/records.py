"""Typed records of the data contracts (catalog, queries, events, gold).

Records are strict: unknown fields are rejected (a misspelt field is an error, not silently
dropped), strings are bounded, and timestamps accept ISO-8601 or epoch seconds and are kept in UTC.

>>> Clip.model_validate({"clip_id": "c1", "title": "t", "creator_id": "k", "language": "en",
...     "topics": ["533"], "duration_s": 30, "published_at": 0}).published_at.year
1970
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_QUERY_CHARS = 256
MAX_TITLE_CHARS = 300
MAX_TEXT_CHARS = 2000
MAX_LIST = 50

Id = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")
]
Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT_CHARS)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Language = Annotated[str, StringConstraints(pattern=r"^[a-z]{2}$")]


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


Timestamp = Annotated[datetime, AfterValidator(_utc)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClickedDoc(_Record):
    title: Title
    snippet: Text | None = None


class Clip(_Record):
    """One short-form clip of the catalog."""

    clip_id: Id
    title: Title
    description: Text = ""
    creator_id: Id
    language: Language
    topics: list[Id] = Field(min_length=1, max_length=8)
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_LIST)
    duration_s: float = Field(gt=0, le=3600)
    published_at: Timestamp
    views: int | None = Field(default=None, ge=0)


class SearchQuery(_Record):
    """One search by one user, with the documents clicked on its result page."""

    user_id: Id
    ts: Timestamp
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)]
    clicked_docs: list[ClickedDoc] = Field(default_factory=list, max_length=20)


class EventType(StrEnum):
    IMPRESSION = "impression"
    WATCH = "watch"
    SKIP = "skip"
    LIKE = "like"
    SHARE = "share"
    COMMENT = "comment"
    FOLLOW = "follow"
    UNFOLLOW = "unfollow"


CLIP_EVENTS = frozenset(
    {EventType.IMPRESSION, EventType.WATCH, EventType.SKIP, EventType.LIKE, EventType.SHARE, EventType.COMMENT}
)
CREATOR_EVENTS = frozenset({EventType.FOLLOW, EventType.UNFOLLOW})


class Event(_Record):
    """One clip or creator event; which target field is required depends on ``type``."""

    event_id: Id
    user_id: Id
    ts: Timestamp
    type: EventType
    clip_id: Id | None = None
    creator_id: Id | None = None
    watch_ratio: float | None = Field(default=None, ge=0, le=10)

    @model_validator(mode="after")
    def _target_matches_type(self) -> Event:
        if self.type in CLIP_EVENTS and self.clip_id is None:
            raise ValueError(f"a {self.type.value} event needs clip_id")
        if self.type in CREATOR_EVENTS and self.creator_id is None:
            raise ValueError(f"a {self.type.value} event needs creator_id")
        if self.type is EventType.WATCH and self.watch_ratio is None:
            raise ValueError("a watch event needs watch_ratio")
        if self.type is not EventType.WATCH and self.watch_ratio is not None:
            raise ValueError(f"watch_ratio is only allowed on watch events, not {self.type.value}")
        return self


class GoldRow(_Record):
    """A curated ``query (+ clicked docs) -> intent tags + topics`` example."""

    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)]
    docs: list[Title] = Field(default_factory=list, max_length=20)
    tags: list[Tag] = Field(default_factory=list, max_length=10)
    topics: list[Id] = Field(min_length=1, max_length=5)
    split: Literal["train", "dev", "test"] | None = None
    pattern: Id | None = None
    lang: Language | None = None


RECORD_KINDS: dict[str, type[_Record]] = {
    "catalog": Clip,
    "queries": SearchQuery,
    "events": Event,
    "gold": GoldRow,
}

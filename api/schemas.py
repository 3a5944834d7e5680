"""Request and response bodies of the feed API (every field validated and bounded)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from api.tagging import Via
from clipfeed.records import MAX_QUERY_CHARS, MAX_TITLE_CHARS

MAX_BATCH = 500
Id = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:\-]+$")]
Query = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)]
EventTypeIn = Literal["search", "impression", "watch", "skip", "like", "share", "comment", "follow", "unfollow"]
CLIP_TYPES = {"impression", "watch", "skip", "like", "share", "comment"}


class DocIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)]
    snippet: Annotated[str, StringConstraints(max_length=1000)] | None = None


class EventIn(BaseModel):
    """One user event; the fields a type needs are required for that type."""

    model_config = ConfigDict(extra="forbid")
    event_id: Id
    user_id: Id
    ts: datetime | Annotated[float, Field(ge=0, le=4_102_444_800)]
    type: EventTypeIn
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)] | None = (
        None
    )
    clicked_docs: list[DocIn] = Field(default_factory=list, max_length=20)
    clip_id: Id | None = None
    creator_id: Id | None = None
    watch_ratio: Annotated[float, Field(ge=0, le=10)] | None = None

    @model_validator(mode="after")
    def _fields_match_type(self) -> EventIn:
        if self.type == "search" and self.query is None:
            raise ValueError("a search event needs query")
        if self.type in CLIP_TYPES and self.clip_id is None:
            raise ValueError(f"a {self.type} event needs clip_id")
        if self.type in ("follow", "unfollow") and self.creator_id is None:
            raise ValueError(f"a {self.type} event needs creator_id")
        if self.type == "watch" and self.watch_ratio is None:
            raise ValueError("a watch event needs watch_ratio")
        return self

    @property
    def epoch(self) -> float:
        return self.ts.timestamp() if isinstance(self.ts, datetime) else float(self.ts)


class EventBatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    events: list[EventIn] = Field(min_length=1, max_length=MAX_BATCH)


class EventResult(BaseModel):
    event_id: str
    status: Literal["accepted", "duplicate", "rejected"]
    reason: str | None = None
    tagging: Via | None = Field(
        default=None,
        description="Searches only: tags from the cache, from the tagger within the request, still being "
        "tagged (folded into the context when done), or the raw-keyword fallback (tagger overloaded or failed).",
    )


class EventsResponse(BaseModel):
    accepted: int
    duplicates: int
    rejected: int
    results: list[EventResult]


class FeedItemOut(BaseModel):
    clip_id: str
    score: float
    topics: list[str]
    explanation: dict[str, Any]


class FeedResponse(BaseModel):
    user_id: str
    arm: str
    items: list[FeedItemOut]
    cursor: str | None
    fallback: str | None = None


class TagsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: Query
    docs: list[Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_TITLE_CHARS)]] = (
        Field(default_factory=list, max_length=20)
    )


class TagOut(BaseModel):
    tag: str
    score: float
    signal: Literal["search", "doc_click"]
    topics: list[dict[str, Any]]
    keep: bool
    reason: str


class TagsResponse(BaseModel):
    query: str
    tagger: str
    tags: list[TagOut]

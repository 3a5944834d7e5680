"""The interfaces the stages implement, so stages meet here instead of importing each other.

The recommender asks for an :class:`IntentTagger` and a :class:`TopicModel`; the tagger and the
classifier packages provide them; ``cli/`` and ``api/`` wire them together.

>>> IntentTag("argentina travel", 0.9)
IntentTag(tag='argentina travel', score=0.9)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class IntentTag:
    tag: str
    score: float


@dataclass(frozen=True)
class TopicScore:
    id: str
    p: float


@dataclass(frozen=True)
class FilteredTag:
    """A tag after the topic filter: its topics and whether it may drive recommendations."""

    tag: str
    score: float
    topics: tuple[TopicScore, ...]
    keep: bool
    reason: str


@runtime_checkable
class IntentTagger(Protocol):
    """Turns queries (with optional clicked-document titles) into intent tags."""

    def tag_batch(
        self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None
    ) -> list[list[IntentTag]]: ...


@runtime_checkable
class TextEncoder(Protocol):
    """Embeds short texts as unit vectors (rows of a float32 array), for similarity search."""

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class TopicModel(Protocol):
    """Maps texts (a tag with its query) to topic probabilities and a keep/drop decision."""

    def filter_tags(self, tags: Sequence[IntentTag], query: str) -> list[FilteredTag]: ...

    def filter_tags_batch(self, searches: Sequence[tuple[Sequence[IntentTag], str]]) -> list[list[FilteredTag]]:
        """``filter_tags`` of each ``(tags, query)``, in order (one model call where it can)."""
        ...

"""The shapes the tagger's parts exchange: prompts, generations, teacher labels.

A teacher backend turns :class:`ChatPrompt` objects into :class:`Generation` objects; the
:class:`~tagger.teacher.Teacher` turns a :class:`QueryInput` into a :class:`TeacherLabel` (parsed,
validated, scored, or abstained with a reason).

>>> QueryInput("볼리비아 비자", ("이과수 폭포 투어 후기",)).key()[:12]
'0dfb7198e722'
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from clipfeed.protocols import IntentTag
from clipfeed.text import normalize


class TeacherError(Exception):
    """A teacher backend could not produce a generation (after its own retries)."""


@dataclass(frozen=True)
class QueryInput:
    """One query with the titles of the documents clicked for it (already normalised by callers)."""

    query: str
    docs: tuple[str, ...] = ()

    @classmethod
    def of(cls, query: str, docs: Sequence[str] = ()) -> QueryInput:
        """The normalised form used for dedup and cache keys."""
        return cls(normalize(query), tuple(normalize(d) for d in docs if normalize(d)))

    def key(self, salt: str = "") -> str:
        """Content hash of the input (plus ``salt``, e.g. the teacher's fingerprint)."""
        raw = json.dumps([salt, self.query, list(self.docs)], ensure_ascii=False)
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChatPrompt:
    """A few-shot prompt in chat shape; text-completion backends render it as plain text."""

    system: str
    shots: tuple[tuple[str, str], ...]  # (user turn, assistant answer)
    user: str


@dataclass
class Generation:
    """One completion. ``logprobs`` are per generated token when the backend reports them."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    logprobs: list[float] | None = None
    tokens: list[str] | None = None  # the generated tokens, aligned with ``logprobs``
    error: str | None = None  # set when the backend failed for this prompt (after retries)


@runtime_checkable
class TeacherBackend(Protocol):
    """Anything that completes chat prompts: a local transformers model or an HTTP endpoint."""

    name: str
    # USD per 1,000 prompt / completion tokens (0 for local models), for the labeling report
    price_per_1k: tuple[float, float]

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]: ...


@dataclass
class TeacherLabel:
    """What the teacher said about one input: tags with scores, or an abstention with a reason."""

    tags: list[IntentTag]
    confidence: float
    abstained: bool = False
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    attempts: int = 1
    raw: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "tags": [{"tag": t.tag, "score": round(t.score, 4)} for t in self.tags],
            "confidence": round(self.confidence, 4),
            "abstained": self.abstained,
            "reason": self.reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "attempts": self.attempts,
        }

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> TeacherLabel:
        tags = d.get("tags", [])
        assert isinstance(tags, list)
        return cls(
            tags=[IntentTag(str(t["tag"]), float(t["score"])) for t in tags],
            confidence=float(d.get("confidence", 0.0)),  # type: ignore[arg-type]
            abstained=bool(d.get("abstained", False)),
            reason=str(d.get("reason", "")),
            prompt_tokens=int(d.get("prompt_tokens", 0)),  # type: ignore[call-overload]
            completion_tokens=int(d.get("completion_tokens", 0)),  # type: ignore[call-overload]
            attempts=int(d.get("attempts", 1)),  # type: ignore[call-overload]
        )


@runtime_checkable
class Labeler(Protocol):
    """What the labeling job needs from a teacher."""

    fingerprint: str  # changes whenever the labels could change (model, prompt, settings)
    backend: TeacherBackend

    def label_batch(self, items: Sequence[QueryInput]) -> list[TeacherLabel]: ...

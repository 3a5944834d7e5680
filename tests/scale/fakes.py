"""Deterministic stand-ins the Ray workers build by name: the rule-based teacher of tests/tagger and a
word tagger, with ways to fail (a worker process killed mid-job, or every worker raising)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from clipfeed.protocols import IntentTag
from clipfeed.text import tokens
from tagger.types import QueryInput, TeacherLabel
from tests.tagger.test_label import RuleLabeler


@dataclass
class FailingLabeler(RuleLabeler):
    """RuleLabeler that, in its ``die_at``-th batch, kills its own process once (a marker file makes
    the restarted worker live), or raises from its ``raise_at``-th batch on, in every worker."""

    die_at: int | None = None
    marker: str = ""
    raise_at: int | None = None

    def label_batch(self, items: Sequence[QueryInput]) -> list[TeacherLabel]:
        if self.die_at is not None and self.batches + 1 >= self.die_at and not Path(self.marker).exists():
            Path(self.marker).write_text(str(os.getpid()))
            os._exit(1)  # the worker process dies mid-batch, as on an OOM kill or a lost node
        if self.raise_at is not None and self.batches + 1 >= self.raise_at:
            raise RuntimeError("teacher went away")
        return super().label_batch(items)


def rule_labeler(die_at: int | None = None, marker: str = "", raise_at: int | None = None) -> FailingLabeler:
    return FailingLabeler(die_at=die_at, marker=marker, raise_at=raise_at)


class WordTagger:
    """A serving tagger (``tag_batch``): the query's words are its tags; "login" has no clip intent."""

    def tag_batch(self, queries: Sequence[str], docs: Sequence[Sequence[str]] | None = None) -> list[list[IntentTag]]:
        return [[] if "login" in q else [IntentTag(w, 0.8) for w in tokens(q)[:4]] for q in queries]


def word_tagger() -> WordTagger:
    return WordTagger()

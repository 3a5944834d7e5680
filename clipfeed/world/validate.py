"""Checks every file of a world: each row against its contract, and references across files."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel

from clipfeed.errors import InputError
from clipfeed.jsonl import JsonlReader, ReadReport
from clipfeed.records import Clip, Event, GoldRow, SearchQuery
from clipfeed.taxonomy import Taxonomy

T = TypeVar("T", bound=BaseModel)


@dataclass
class WorldReport:
    """Per-file reports; ``ok`` is true when no row anywhere was rejected."""

    files: dict[str, ReadReport] = field(default_factory=dict)

    @property
    def rejected(self) -> int:
        return sum(r.rejected for r in self.files.values())

    @property
    def ok(self) -> bool:
        return self.rejected == 0

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rejected": self.rejected,
            "files": {name: r.to_dict() for name, r in self.files.items()},
        }


def validate_world(world: str | Path) -> WorldReport:
    """Reads every file in skip-invalid mode and reports each bad row by file, line and field."""
    world = Path(world)
    report = WorldReport()
    tax_report = ReadReport(file=str(world / "taxonomy.tsv"))
    report.files["taxonomy.tsv"] = tax_report
    try:
        taxonomy: Taxonomy | None = Taxonomy.load(world / "taxonomy.tsv")
        tax_report.rows = len(taxonomy) if taxonomy else 0
    except InputError as e:
        taxonomy = None
        tax_report.add_error(e)

    clip_ids: set[str] = set()
    creator_ids: set[str] = set()
    catalog = JsonlReader(world / "catalog.jsonl", Clip, skip_invalid=True)
    report.files["catalog.jsonl"] = catalog.report
    for lineno, clip in _numbered(catalog):
        if clip.clip_id in clip_ids:
            _reject(catalog.report, InputError(catalog.path, lineno, "clip_id", f"duplicate clip_id {clip.clip_id!r}"))
            continue
        bad = [t for t in clip.topics if taxonomy is not None and t not in taxonomy]
        if bad:
            _reject(catalog.report, InputError(catalog.path, lineno, "topics", f"unknown taxonomy id {bad[0]!r}"))
            continue
        clip_ids.add(clip.clip_id)
        creator_ids.add(clip.creator_id)

    queries = JsonlReader(world / "queries.jsonl", SearchQuery, skip_invalid=True)
    report.files["queries.jsonl"] = queries.report
    for _ in queries:
        pass

    events = JsonlReader(world / "events.jsonl", Event, skip_invalid=True)
    report.files["events.jsonl"] = events.report
    seen_events: set[str] = set()
    for lineno, ev in _numbered(events):
        if ev.event_id in seen_events:
            _reject(events.report, InputError(events.path, lineno, "event_id", f"duplicate event_id {ev.event_id!r}"))
        elif ev.clip_id is not None and ev.clip_id not in clip_ids:
            _reject(events.report, InputError(events.path, lineno, "clip_id", f"clip {ev.clip_id!r} not in catalog"))
        elif ev.creator_id is not None and ev.creator_id not in creator_ids:
            _reject(
                events.report,
                InputError(events.path, lineno, "creator_id", f"creator {ev.creator_id!r} not in catalog"),
            )
        seen_events.add(ev.event_id)

    gold = JsonlReader(world / "gold.jsonl", GoldRow, skip_invalid=True)
    report.files["gold.jsonl"] = gold.report
    for lineno, row in _numbered(gold):
        bad = [t for t in row.topics if taxonomy is not None and t not in taxonomy]
        if bad:
            _reject(gold.report, InputError(gold.path, lineno, "topics", f"unknown taxonomy id {bad[0]!r}"))
    return report


def _numbered(reader: JsonlReader[T]) -> Iterator[tuple[int, T]]:
    for rec in reader:
        yield reader.lineno, rec


def _reject(report: ReadReport, err: InputError) -> None:
    report.rows -= 1
    report.add_error(err)

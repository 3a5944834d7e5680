from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipfeed.errors import InputError
from clipfeed.jsonl import (
    JsonlReader,
    read_catalog,
    read_events,
    read_gold,
    read_queries,
    reader_for,
    write_jsonl,
)
from clipfeed.records import MAX_QUERY_CHARS, Clip, Event, EventType, SearchQuery

CLIP = {
    "clip_id": "c1",
    "title": "이과수 폭포 보트 투어",
    "description": "d",
    "creator_id": "cr1",
    "language": "ko",
    "topics": ["655"],
    "tags": ["이과수"],
    "duration_s": 31.5,
    "published_at": "2026-02-01T10:00:00Z",
}
QUERY = {
    "user_id": "u1",
    "ts": 1767225600,
    "query": "볼리비아 비자",
    "clicked_docs": [{"title": "이과수 폭포 투어 후기"}],
}
EVENT = {
    "event_id": "e1",
    "user_id": "u1",
    "ts": "2026-03-01T00:00:00+09:00",
    "type": "watch",
    "clip_id": "c1",
    "watch_ratio": 0.8,
}
GOLD = {"query": "오타니 홈런", "docs": [], "tags": ["오타니 홈런 하이라이트"], "topics": ["545"], "split": "test"}


def _write(path: Path, lines: list[object]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_good_rows_of_every_kind(tmp_path: Path) -> None:
    assert [c.clip_id for c in read_catalog(_write(tmp_path / "c.jsonl", [CLIP]))] == ["c1"]
    q = next(iter(read_queries(_write(tmp_path / "q.jsonl", [QUERY]))))
    assert q.clicked_docs[0].title == "이과수 폭포 투어 후기" and q.ts.year == 2026
    e = next(iter(read_events(_write(tmp_path / "e.jsonl", [EVENT]))))
    assert e.type is EventType.WATCH and e.ts.utcoffset() is not None and e.ts.hour == 15  # +09:00 -> UTC
    g = next(iter(read_gold(_write(tmp_path / "g.jsonl", [GOLD]))))
    assert g.topics == ["545"]


@pytest.mark.parametrize(
    ("line", "field", "message"),
    [
        ("{not json", None, "invalid JSON"),
        ("[1, 2]", None, "expected a JSON object"),
        (json.dumps({**CLIP, "duration_s": -3}), "duration_s", "greater than 0"),
        (json.dumps({k: v for k, v in CLIP.items() if k != "title"}), "title", "required field is missing"),
        (json.dumps({**CLIP, "titel": "x"}), "titel", "unknown field"),
        (json.dumps({**CLIP, "topics": []}), "topics", "at least 1"),
        (json.dumps({**CLIP, "published_at": "yesterday"}), "published_at", "datetime"),
        (json.dumps({**CLIP, "language": "korean"}), "language", "pattern"),
    ],
)
def test_bad_catalog_row_names_file_line_field(tmp_path: Path, line: str, field: str | None, message: str) -> None:
    path = _write(tmp_path / "catalog.jsonl", [CLIP, "", line])
    with pytest.raises(InputError) as info:
        list(read_catalog(path))
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), 3, field)
    assert message in err.message
    assert "catalog.jsonl:3:" in str(err)


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"watch_ratio": None}, None, "needs watch_ratio"),
        ({"type": "skip"}, None, "only allowed on watch"),
        ({"type": "follow", "clip_id": None, "watch_ratio": None}, None, "needs creator_id"),
        ({"type": "teleport"}, "type", "Input should be"),
        ({"watch_ratio": 99}, "watch_ratio", "less than or equal"),
    ],
)
def test_bad_event_rows(tmp_path: Path, change: dict[str, object], field: str | None, message: str) -> None:
    row = {k: v for k, v in {**EVENT, **change}.items() if v is not None}
    with pytest.raises(InputError) as info:
        list(read_events(_write(tmp_path / "events.jsonl", [row])))
    assert info.value.line == 1 and message in info.value.message
    if field:
        assert info.value.field == field


def test_query_bounds(tmp_path: Path) -> None:
    rows = [{**QUERY, "query": "   "}, {**QUERY, "query": "x" * (MAX_QUERY_CHARS + 1)}, QUERY]
    reader = read_queries(_write(tmp_path / "q.jsonl", rows), skip_invalid=True)
    assert [q.query for q in reader] == ["볼리비아 비자"]
    assert reader.report.rejected == 2
    assert all(e.field == "query" for e in reader.report.errors)
    assert "at most 256" in reader.report.errors[1].message


def test_skip_invalid_keeps_every_valid_row(tmp_path: Path) -> None:
    rows: list[object] = [
        CLIP,
        "{broken",
        {**CLIP, "clip_id": "c2"},
        {**CLIP, "duration_s": 0},
        {**CLIP, "clip_id": "c3"},
    ]
    path = _write(tmp_path / "catalog.jsonl", rows)
    reader = read_catalog(path, skip_invalid=True)
    assert [c.clip_id for c in reader] == ["c1", "c2", "c3"]
    assert (reader.report.rows, reader.report.rejected) == (3, 2)
    assert [e.line for e in reader.report.errors] == [2, 4]


def test_non_utf8_and_oversized_lines(tmp_path: Path) -> None:
    path = tmp_path / "catalog.jsonl"
    path.write_bytes(json.dumps(CLIP).encode() + b"\n\xff\xfe garbage\n" + b'{"a": "' + b"x" * 2000 + b'"}\n')
    reader = JsonlReader(path, Clip, skip_invalid=True, max_line_bytes=1000)
    assert len(list(reader)) == 1
    assert "not UTF-8" in reader.report.errors[0].message
    assert "limit 1000" in reader.report.errors[1].message


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot open"):
        list(read_catalog(tmp_path / "absent.jsonl"))


def test_write_then_read_roundtrip(tmp_path: Path) -> None:
    records = [Clip.model_validate(CLIP), Clip.model_validate({**CLIP, "clip_id": "c2", "views": 10})]
    path = tmp_path / "out" / "catalog.jsonl"
    assert write_jsonl(path, records) == 2
    assert list(read_catalog(path)) == records
    assert "이과수" in path.read_text(encoding="utf-8")  # UTF-8, not \\u escapes
    assert not list(tmp_path.glob("out/*.tmp"))


def test_reader_for_kinds(tmp_path: Path) -> None:
    path = _write(tmp_path / "q.jsonl", [QUERY])
    assert isinstance(next(iter(reader_for("queries", path))), SearchQuery)
    assert isinstance(next(iter(reader_for("events", _write(tmp_path / "e.jsonl", [EVENT])))), Event)
    with pytest.raises(ValueError, match="unknown record kind"):
        reader_for("nope", path)

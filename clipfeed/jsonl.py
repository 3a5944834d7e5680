"""Streaming JSONL readers and writers for the data contracts.

A malformed row raises :class:`~clipfeed.errors.InputError` naming the file, line and field. With
``skip_invalid=True`` every valid row is still yielded and the rejects are counted in
``reader.report``.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "gold.jsonl"
>>> _ = p.write_text('{"query": "q", "topics": ["533"]}\\n{"query": ""}\\n', encoding="utf-8")
>>> r = JsonlReader(p, GoldRow, skip_invalid=True)
>>> [g.query for g in r], r.report.rejected
(['q'], 1)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from clipfeed.errors import InputError
from clipfeed.records import RECORD_KINDS, Clip, Event, GoldRow, SearchQuery

T = TypeVar("T", bound=BaseModel)
MAX_LINE_BYTES = 1_000_000
KEPT_ERRORS = 100  # keep the first errors for the report; count the rest


@dataclass
class ReadReport:
    """What a read saw: valid rows, rejected rows and the first few errors."""

    file: str
    rows: int = 0
    rejected: int = 0
    errors: list[InputError] = field(default_factory=list)

    def add_error(self, err: InputError) -> None:
        self.rejected += 1
        if len(self.errors) < KEPT_ERRORS:
            self.errors.append(err)

    def to_dict(self) -> dict[str, object]:
        return {
            "file": self.file,
            "rows": self.rows,
            "rejected": self.rejected,
            "errors": [str(e) for e in self.errors],
        }


def _first_error(exc: ValidationError) -> tuple[str | None, str]:
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"]) or None
    msg = err["msg"]
    if err["type"] == "missing":
        msg = "required field is missing"
    elif err["type"] == "extra_forbidden":
        msg = "unknown field"
    return loc, msg


class JsonlReader(Generic[T]):
    """Iterates validated records of ``model`` from a JSONL file, one line at a time."""

    def __init__(
        self, path: str | Path, model: type[T], *, skip_invalid: bool = False, max_line_bytes: int = MAX_LINE_BYTES
    ) -> None:
        self.path = Path(path)
        self.model = model
        self.skip_invalid = skip_invalid
        self.max_line_bytes = max_line_bytes
        self.report = ReadReport(file=str(self.path))
        self.lineno = 0  # line number of the record last yielded (for cross-file checks)

    def _parse(self, raw: bytes, lineno: int) -> T:
        if len(raw) > self.max_line_bytes:
            raise InputError(self.path, lineno, None, f"line is {len(raw)} bytes, limit {self.max_line_bytes}")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(self.path, lineno, None, f"not UTF-8 at byte {e.start}") from e
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(self.path, lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from e
        if not isinstance(obj, dict):
            raise InputError(self.path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
        try:
            return self.model.model_validate(obj)
        except ValidationError as e:
            loc, msg = _first_error(e)
            raise InputError(self.path, lineno, loc, msg) from e

    def __iter__(self) -> Iterator[T]:
        try:
            f = self.path.open("rb")
        except OSError as e:
            raise InputError(self.path, None, None, f"cannot open: {e.strerror}") from e
        with f:
            for lineno, raw in enumerate(f, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue  # blank lines carry nothing
                try:
                    record = self._parse(raw, lineno)
                except InputError as err:
                    if not self.skip_invalid:
                        raise
                    self.report.add_error(err)
                    continue
                self.report.rows += 1
                self.lineno = lineno
                yield record


def read_catalog(path: str | Path, *, skip_invalid: bool = False) -> JsonlReader[Clip]:
    return JsonlReader(path, Clip, skip_invalid=skip_invalid)


def read_queries(path: str | Path, *, skip_invalid: bool = False) -> JsonlReader[SearchQuery]:
    return JsonlReader(path, SearchQuery, skip_invalid=skip_invalid)


def read_events(path: str | Path, *, skip_invalid: bool = False) -> JsonlReader[Event]:
    return JsonlReader(path, Event, skip_invalid=skip_invalid)


def read_gold(path: str | Path, *, skip_invalid: bool = False) -> JsonlReader[GoldRow]:
    return JsonlReader(path, GoldRow, skip_invalid=skip_invalid)


def reader_for(kind: str, path: str | Path, *, skip_invalid: bool = False) -> JsonlReader[BaseModel]:
    """A reader for one of the contract kinds: catalog, queries, events, gold."""
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; known: {', '.join(RECORD_KINDS)}")
    return JsonlReader(path, RECORD_KINDS[kind], skip_invalid=skip_invalid)


def dumps_record(record: BaseModel | dict[str, object]) -> str:
    """One compact, deterministic JSON line (UTF-8 text, no ASCII escaping, UTC ``Z`` times)."""
    data = record.model_dump(mode="json", exclude_none=True) if isinstance(record, BaseModel) else record
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace('+00:00"', 'Z"')


def write_jsonl(path: str | Path, records: Iterable[BaseModel | dict[str, object]]) -> int:
    """Writes records one per line, atomically (temp file + rename); returns the count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8", newline="\n") as f:
        for rec in records:
            _write_line(f, rec)
            n += 1
    tmp.replace(path)
    return n


def _write_line(f: IO[str], rec: BaseModel | dict[str, object]) -> None:
    f.write(dumps_record(rec))
    f.write("\n")

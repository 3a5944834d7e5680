"""The teacher labeling job: read queries, dedup, cap head patterns, label in batches, resume after a kill.

Teacher calls are the slow and paid part, so every label is appended to ``cache.jsonl`` (keyed by
the input's content hash salted with the teacher's fingerprint) and fsync'd after each batch: a
run killed at any point resumes where it stopped, and re-running a finished job costs nothing.
Backend failures (reasons starting ``backend:``) are reported but never cached, so the next run
retries them. ``labels.jsonl`` and ``report.json`` are written atomically at the end.

>>> import tempfile, pathlib
>>> p = pathlib.Path(tempfile.mkdtemp()) / "q.jsonl"
>>> _ = p.write_text('{"query": "Chile  Visa"}\\n{"query": "chile visa", "docs": []}\\n', encoding="utf-8")
>>> [(i.query, n) for i, n in read_label_inputs(p)]
[('chile visa', 2)]
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from tqdm import tqdm

from clipfeed.errors import ConfigError, InputError
from clipfeed.jsonl import MAX_LINE_BYTES, ReadReport, dumps_record, write_jsonl
from clipfeed.records import MAX_QUERY_CHARS, SearchQuery, Title
from tagger.patterns import CapStats, PatternModel, cap_patterns
from tagger.types import Labeler, QueryInput, TeacherLabel

_Raw = TypeVar("_Raw")  # one undecoded record: a line's bytes, a Parquet row

BACKEND_ERROR = "backend:"  # reason prefix of abstentions caused by a failing backend (retried, never cached)
_CONTRACT_FIELDS = frozenset({"user_id", "ts", "clicked_docs"})


class _SimpleLine(BaseModel):
    """``{"query": str, "docs": [str]}``: the quick format for hand-made or exported query lists."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    query: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_QUERY_CHARS)]
    docs: list[Title] = Field(default_factory=list, max_length=20)


class LabelInputs(list[tuple[QueryInput, int]]):
    """Unique inputs with raw counts (first-seen order), plus the read report (lines, rejects)."""

    def __init__(self, items: Sequence[tuple[QueryInput, int]] = (), report: ReadReport | None = None) -> None:
        super().__init__(items)
        self.report = report if report is not None else ReadReport(file="")


def _parse_line(path: Path, lineno: int, raw: bytes) -> QueryInput:
    if len(raw) > MAX_LINE_BYTES:
        raise InputError(path, lineno, None, f"line is {len(raw)} bytes, limit {MAX_LINE_BYTES}")
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise InputError(path, lineno, None, f"not UTF-8 at byte {e.start}") from e
    except json.JSONDecodeError as e:
        raise InputError(path, lineno, None, f"invalid JSON: {e.msg} (column {e.colno})") from e
    return parse_record(path, lineno, obj)


def parse_record(path: str | Path, lineno: int | None, obj: object) -> QueryInput:
    """One decoded record (a JSON line, a Parquet row) → the normalised input, or :class:`InputError`."""
    if not isinstance(obj, dict):
        raise InputError(path, lineno, None, f"expected a JSON object, got {type(obj).__name__}")
    try:
        if _CONTRACT_FIELDS & obj.keys():  # a queries.jsonl (data contract) line
            rec = SearchQuery.model_validate(obj)
            query, docs = rec.query, [d.title for d in rec.clicked_docs]
        else:
            simple = _SimpleLine.model_validate(obj)
            query, docs = simple.query, simple.docs
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"]) or None
        msg = {"missing": "required field is missing", "extra_forbidden": "unknown field"}.get(err["type"], err["msg"])
        if loc == "query" and err["type"] == "string_too_short":
            msg = "query is empty or whitespace-only"
        raise InputError(path, lineno, loc, msg) from e
    item = QueryInput.of(query, docs)
    if not item.query:  # e.g. only zero-width or control characters
        raise InputError(path, lineno, "query", "query is empty after normalisation")
    return item


def read_label_inputs(path: str | Path, *, skip_invalid: bool = False) -> LabelInputs:
    """Unique normalised inputs with their raw counts, from queries.jsonl or ``{"query", "docs"}`` lines.

    The format is detected per line (a line with ``user_id``/``ts``/``clicked_docs`` is a
    :class:`~clipfeed.records.SearchQuery`), so both may be mixed. A bad line raises
    :class:`InputError` naming file:line and field; with ``skip_invalid`` it is counted in
    ``.report`` and every valid line is kept.
    """
    path = Path(path)
    try:
        f = path.open("rb")
    except OSError as e:
        raise InputError(path, None, None, f"cannot open: {e.strerror}") from e
    with f:
        lines = ((n, line.rstrip(b"\r\n")) for n, line in enumerate(f, start=1))
        return count_inputs(path, ((n, raw) for n, raw in lines if raw.strip()), _parse_line, skip_invalid)


def count_inputs(
    path: Path,
    numbered: Iterable[tuple[int, _Raw]],
    parse: Callable[[Path, int, _Raw], QueryInput],
    skip_invalid: bool = False,
) -> LabelInputs:
    """Parses numbered records (lines of a file, rows of a Parquet shard) into unique inputs with
    their counts; a bad record raises, or with ``skip_invalid`` is counted in the report."""
    report = ReadReport(file=str(path))
    counts: dict[QueryInput, int] = {}
    for n, raw in numbered:
        try:
            item = parse(path, n, raw)
        except InputError as err:
            if not skip_invalid:
                raise
            report.add_error(err)
            continue
        report.rows += 1
        counts[item] = counts.get(item, 0) + 1
    return LabelInputs(list(counts.items()), report)


def is_backend_error(label: TeacherLabel) -> bool:
    return label.abstained and label.reason.startswith(BACKEND_ERROR)


def read_cache(path: Path) -> dict[str, TeacherLabel]:
    """Final labels by key. Unparseable lines (a torn write) are dropped and the file rewritten cleanly."""
    if not path.exists():
        return {}
    labels: dict[str, TeacherLabel] = {}
    good: list[str] = []
    data = path.read_bytes()
    dirty = bool(data) and not data.endswith(b"\n")
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        try:
            text = line.decode("utf-8")
            obj = json.loads(text)
            key, label = str(obj["key"]), TeacherLabel.from_dict(obj["label"])
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, AssertionError):
            dirty = True
            continue
        if is_backend_error(label):
            continue  # written by an older job; not final
        labels[key] = label
        good.append(text)
    if dirty:
        tmp = path.with_name(path.name + ".tmp")
        with tmp.open("w", encoding="utf-8", newline="\n") as f:
            f.writelines(g + "\n" for g in good)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    return labels


@dataclass
class LabelReport:
    """What a labeling run did, what it cost and how fast it went (saved as ``report.json``).

    ``queries`` counts the non-blank input lines (valid and invalid); ``unique`` the distinct
    normalised inputs; ``after_cap`` those left after pattern capping; ``kept`` after ``limit``.
    Token counts and cost cover this run's teacher calls only (cached labels cost nothing now).
    """

    queries: int = 0
    invalid: int = 0
    invalid_examples: list[str] = field(default_factory=list)
    unique: int = 0
    after_cap: int = 0
    kept: int = 0
    patterns: CapStats = field(default_factory=CapStats)
    labeled_now: int = 0
    from_cache: int = 0
    abstained: int = 0
    abstained_by_reason: dict[str, int] = field(default_factory=dict)
    backend_errors: int = 0  # not cached; retried by the next run
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    queries_per_s: float = 0.0
    estimated_cost_usd: float = 0.0
    teacher: str = ""
    fingerprint: str = ""

    def to_dict(self) -> dict[str, object]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["patterns"] = self.patterns.to_dict()
        d["abstained"] = {"total": self.abstained, "by_reason": d.pop("abstained_by_reason")}
        for name, digits in (("seconds", 3), ("queries_per_s", 3), ("estimated_cost_usd", 6)):
            d[name] = round(d[name], digits)
        return d


@dataclass
class Selection:
    """What :meth:`LabelJob.select` chose: the inputs to label with their raw counts and patterns."""

    report: LabelReport
    items: list[QueryInput]
    counts: list[int]
    patterns: list[str]

    def rows(self, labels: Sequence[TeacherLabel]) -> list[dict[str, object]]:
        """The ``labels.jsonl`` rows: each selected input with its label (``labels`` in the same order)."""
        rows: list[dict[str, object]] = []
        for item, count, pattern, label in zip(self.items, self.counts, self.patterns, labels, strict=True):
            d = label.to_dict()
            row: dict[str, object] = {"query": item.query, "docs": list(item.docs), "count": count}
            rows.append(row | {"pattern": pattern} | {k: d[k] for k in ("tags", "confidence", "abstained", "reason")})
        return rows


@dataclass
class LabelJob:
    """Settings of one labeling run; ``run`` does the work (the CLI builds one from its flags)."""

    out_dir: Path
    batch_size: int = 16
    pattern_cap: int | None = None  # at most this many inputs per query pattern
    max_share: float | None = None  # no pattern above this share of the kept inputs
    seed: int = 0
    limit: int | None = None  # label only the first N inputs left after capping (pilot runs)
    progress: bool = True
    pattern_min_share: float = 0.005
    pattern_min_count: int = 5

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.pattern_cap is not None and self.pattern_cap < 1:
            raise ConfigError(f"pattern_cap must be >= 1, got {self.pattern_cap}")
        if self.max_share is not None and not 0.0 < self.max_share <= 1.0:
            raise ConfigError(f"max_share must be in (0, 1], got {self.max_share}")
        if self.limit is not None and self.limit < 0:
            raise ConfigError(f"limit must be >= 0, got {self.limit}")

    def run(self, inputs: Sequence[tuple[QueryInput, int]], labeler: Labeler) -> LabelReport:
        """Cap, label what the cache lacks, write labels.jsonl and report.json; re-raises labeler errors."""
        start = time.perf_counter()
        sel = self.select(inputs)
        labels = self._label(sel.items, labeler, sel.report)
        p_in, p_out = labeler.backend.price_per_1k
        return self.finish(sel, labels, labeler.fingerprint, labeler.backend.name, (p_in, p_out), start)

    def select(self, inputs: Sequence[tuple[QueryInput, int]]) -> Selection:
        """The inputs to label: pattern caps and ``limit`` applied, in input order (no teacher calls).

        Other engines (``scale/``, Ray) call ``select`` and ``finish`` around their own labeling step.
        """
        self.out_dir.mkdir(parents=True, exist_ok=True)
        report = _input_report(inputs)
        items, counts = [q for q, _ in inputs], [n for _, n in inputs]
        model = PatternModel.fit([q.query for q in items], self.pattern_min_share, self.pattern_min_count)
        keys = [model.key(q.query) for q in items]
        kept, report.patterns = cap_patterns(items, keys, self.pattern_cap, self.max_share, self.seed, counts=counts)
        report.after_cap = len(kept)
        kept = kept if self.limit is None else kept[: self.limit]
        report.kept = len(kept)
        return Selection(report, [items[i] for i in kept], [counts[i] for i in kept], [keys[i] for i in kept])

    def finish(
        self,
        sel: Selection,
        labels: dict[str, TeacherLabel],
        fingerprint: str,
        teacher: str,
        price_per_1k: tuple[float, float],
        start: float,
    ) -> LabelReport:
        """Writes labels.jsonl (one row per selected input, in order) and report.json from ``labels`` by key."""
        report = sel.report
        chosen = [labels[item.key(fingerprint)] for item in sel.items]
        write_jsonl(self.out_dir / "labels.jsonl", sel.rows(chosen))

        by_reason = Counter(label.reason for label in chosen if label.abstained)
        report.abstained = sum(by_reason.values())
        report.abstained_by_reason = dict(by_reason.most_common())
        report.backend_errors = sum(n for r, n in by_reason.items() if r.startswith(BACKEND_ERROR))
        p_in, p_out = price_per_1k
        report.estimated_cost_usd = report.prompt_tokens / 1000 * p_in + report.completion_tokens / 1000 * p_out
        report.teacher, report.fingerprint = teacher, fingerprint
        report.seconds = time.perf_counter() - start
        report.queries_per_s = report.labeled_now / report.seconds if report.seconds > 0 else 0.0
        _write_json(self.out_dir / "report.json", report.to_dict())
        return report

    def _label(self, items: Sequence[QueryInput], labeler: Labeler, report: LabelReport) -> dict[str, TeacherLabel]:
        """Labels by key for ``items``: cached ones as they are, the rest from the labeler, batch by batch.

        Each batch's final labels are appended to the cache and fsync'd before the next teacher
        call, so a kill loses at most the batch in flight.
        """
        cache_path = self.out_dir / "cache.jsonl"
        cached = read_cache(cache_path)
        fp = labeler.fingerprint
        wanted = {item.key(fp): item for item in items}
        labels = {k: cached[k] for k in wanted if k in cached}
        report.from_cache = len(labels)
        pending = [item for k, item in wanted.items() if k not in labels]
        abstained = sum(lb.abstained for lb in labels.values())
        bar = tqdm(
            total=len(wanted), initial=len(labels), desc="tagger: label", unit="query", disable=not self.progress
        )
        with cache_path.open("a", encoding="utf-8", newline="\n") as cache, bar:
            for i in range(0, len(pending), self.batch_size):
                batch = pending[i : i + self.batch_size]
                got = labeler.label_batch(batch)
                if len(got) != len(batch):
                    raise RuntimeError(f"labeler returned {len(got)} labels for {len(batch)} inputs")
                for item, label in zip(batch, got, strict=True):
                    key = item.key(fp)
                    labels[key] = label
                    report.labeled_now += 1
                    report.prompt_tokens += label.prompt_tokens
                    report.completion_tokens += label.completion_tokens
                    abstained += label.abstained
                    if not is_backend_error(label):
                        entry: dict[str, object] = {"key": key, "query": item.query, "docs": list(item.docs)}
                        cache.write(dumps_record(entry | {"label": label.to_dict()}) + "\n")
                cache.flush()
                os.fsync(cache.fileno())
                bar.update(len(batch))
                bar.set_postfix(abstained=abstained, refresh=False)
        return labels


def _input_report(inputs: Sequence[tuple[QueryInput, int]]) -> LabelReport:
    """The report's input funnel; the read counts are known only when ``inputs`` came from a file."""
    valid = sum(n for _, n in inputs)
    if not isinstance(inputs, LabelInputs):
        return LabelReport(queries=valid, unique=len(inputs))
    read = inputs.report
    examples = [str(e) for e in read.errors[:5]]
    return LabelReport(valid + read.rejected, read.rejected, examples, unique=len(inputs))


def _write_json(path: Path, data: dict[str, object]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def run_labeling(
    inputs: Sequence[tuple[QueryInput, int]],
    labeler: Labeler,
    out_dir: Path,
    *,
    batch_size: int = 16,
    pattern_cap: int | None = None,
    max_share: float | None = None,
    seed: int = 0,
    limit: int | None = None,
    progress: bool = True,
) -> LabelReport:
    """Runs a :class:`LabelJob` with these settings (see there)."""
    job = LabelJob(out_dir, batch_size, pattern_cap, max_share, seed, limit, progress)
    return job.run(inputs, labeler)

"""Input shards on Ray Data: JSONL or Parquet files parsed with the local job's own parser, then
deduplicated across shards by content hash.

Each shard is read by one Ray Data task with :func:`tagger.label.read_label_inputs` (JSONL) or the
same record parser over Parquet rows, so validation, normalisation and error messages
(``file:line: field …``) are the local job's. Cross-shard dedup is a Ray Data ``groupby`` on the
normalised input's content hash; the result keeps the local order (first occurrence over the shards
in the given order), so pattern capping and ``--limit`` choose exactly what the local job chooses.

>>> [p.name for p in expand_shards([Path("no-such-dir-here")])]
Traceback (most recent call last):
...
clipfeed.errors.InputError: no-such-dir-here: no such file or directory
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from clipfeed.errors import InputError
from clipfeed.jsonl import ReadReport
from tagger.label import LabelInputs, count_inputs, parse_record, read_label_inputs
from tagger.types import QueryInput

SHARD_SUFFIXES = (".jsonl", ".json", ".parquet")


def expand_shards(paths: Sequence[Path]) -> list[Path]:
    """Files as given; a directory stands for its ``*.jsonl``/``*.parquet`` files in name order."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out += sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SHARD_SUFFIXES)
        elif path.is_file():
            out.append(path)
        else:
            raise InputError(path, None, None, "no such file or directory")
    if not out:
        raise InputError(", ".join(map(str, paths)), None, None, "no .jsonl or .parquet shards")
    return out


def read_parquet_inputs(path: Path, *, skip_invalid: bool = False) -> LabelInputs:
    """:func:`~tagger.label.read_label_inputs` for a Parquet shard (rows numbered from 1 as lines)."""
    import pyarrow.parquet as pq

    def rows() -> Iterator[tuple[int, dict[str, Any]]]:
        n = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, {k: v for k, v in row.items() if v is not None}

    return count_inputs(path, rows(), parse_record, skip_invalid)


def _parse_shard(row: dict[str, Any], skip_invalid: bool) -> Iterator[dict[str, Any]]:
    """One shard → its unique inputs (``kind=item``) and one ``kind=report`` row (or ``kind=error``)."""
    path, shard = Path(row["path"]), int(row["shard"])
    empty: dict[str, Any] = {"key": "", "query": "", "docs": "[]", "count": 0, "shard": shard, "rank": 0, "report": ""}
    try:
        if path.suffix == ".parquet":
            inputs = read_parquet_inputs(path, skip_invalid=skip_invalid)
        else:
            inputs = read_label_inputs(path, skip_invalid=skip_invalid)
    except InputError as e:  # not picklable as is: sent as its parts, raised again by the driver
        yield empty | {"kind": "error", "report": json.dumps([e.file, e.line, e.field, e.message])}
        return
    for rank, (item, count) in enumerate(inputs):
        docs = json.dumps(list(item.docs), ensure_ascii=False)
        yield empty | {"kind": "item", "key": item.key(), "query": item.query, "docs": docs, "count": count}
        empty["rank"] = rank + 1
    rep = inputs.report
    errors = [[e.file, e.line, e.field, e.message] for e in rep.errors]
    summary = {"file": rep.file, "rows": rep.rows, "rejected": rep.rejected, "errors": errors}
    yield empty | {"kind": "report", "report": json.dumps(summary)}


def _merge_group(group: Any) -> Any:
    """One content hash's rows (pandas) → one row: counts summed, the first occurrence kept."""
    group = group.sort_values(["shard", "rank"])
    first = group.iloc[:1].copy()
    first["count"] = int(group["count"].sum())
    return first


def read_unique_inputs(paths: Sequence[Path], *, skip_invalid: bool = False) -> LabelInputs:
    """Unique normalised inputs over all shards with raw counts, in first-seen order, plus the read
    report (rows, rejects, the first errors) — what :func:`~tagger.label.read_label_inputs` returns
    for the shards concatenated. A bad line raises :class:`InputError` (unless ``skip_invalid``)."""
    import ray.data

    shards = expand_shards(paths)
    ds = ray.data.from_items(
        [{"shard": i, "path": str(p.resolve())} for i, p in enumerate(shards)], override_num_blocks=len(shards)
    )
    parsed = ds.flat_map(partial(_parse_shard, skip_invalid=skip_invalid)).materialize()
    notes = parsed.filter(lambda r: r["kind"] != "item").take_all()
    failed = sorted((r for r in notes if r["kind"] == "error"), key=lambda r: r["shard"])
    if failed:
        file, line, fld, message = json.loads(failed[0]["report"])
        raise InputError(file, line, fld, message)
    items = parsed.filter(lambda r: r["kind"] == "item")
    # one shuffle partition per shard (Ray's default of 200 tasks is all overhead for a few shards)
    grouped = items.groupby("key", num_partitions=min(len(shards), 200))
    merged = grouped.map_groups(_merge_group, batch_format="pandas").take_all()
    merged.sort(key=lambda r: (r["shard"], r["rank"]))
    report = ReadReport(file=",".join(str(p) for p in shards) if len(shards) < 4 else f"{len(shards)} shards")
    for note in sorted(notes, key=lambda r: r["shard"]):
        rep = json.loads(note["report"])
        report.rows += rep["rows"]
        for file, line, fld, message in rep["errors"]:
            report.add_error(InputError(file, line, fld, message))
        report.rejected += rep["rejected"] - len(rep["errors"])
    out = [(QueryInput(r["query"], tuple(json.loads(r["docs"]))), int(r["count"])) for r in merged]
    return LabelInputs(out, report)

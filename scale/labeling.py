"""Teacher labeling and student tagging on Ray: the local job's selection, cache and output, with the
model calls mapped over a pool of actors.

The flow of ``clipfeed tagger label --engine ray``:

1. Ray Data reads the JSONL/Parquet shards and deduplicates them (:mod:`scale.shards`);
2. the driver applies the local job's pattern caps and ``--limit`` (:meth:`tagger.label.LabelJob.select`,
   one global step over the unique inputs);
3. what the content-hash cache lacks goes through ``map_batches`` on an actor pool: each actor builds
   the teacher once (a GPU per actor when the cluster has GPUs) and labels with the same
   ``Labeler.label_batch`` as the local job, appending every final label to its own cache shard
   (``cache.d/<host>-<pid>-<id>.jsonl``, fsync'd per batch, the local cache's line format and keys);
4. the driver writes ``labels.jsonl`` and ``report.json`` as the local job does
   (:meth:`~tagger.label.LabelJob.finish`), Parquet shards of the same rows keyed by content hash
   (``labels/part-*.parquet``), and folds the cache shards into ``cache.jsonl``.

A killed actor is restarted by Ray and its batch retried; a failed or killed driver is simply run
again: everything already in the cache (``cache.jsonl`` and ``cache.d/``) is reused, so only what is
missing is labeled, and every input appears exactly once in the output because rows are built from
the selected inputs by key, never appended.

Tagging (``clipfeed tagger tag --file F --engine ray``) is the same job without pattern caps: the
student sits behind the ``Labeler`` protocol (:class:`StudentLabeler`).
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from clipfeed.jsonl import dumps_record, write_jsonl
from clipfeed.protocols import IntentTag
from scale.engine import ActorResources, actor_resources, require_ray, session
from scale.shards import read_unique_inputs
from tagger.format import check_query
from tagger.label import LabelJob, LabelReport, is_backend_error, read_cache
from tagger.types import ChatPrompt, Generation, Labeler, QueryInput, TeacherBackend, TeacherLabel

CACHE_SHARDS = "cache.d"
ROWS_PER_PARQUET = 100_000

LabelerFactory = Callable[[], Labeler]


def _describe(factory: LabelerFactory) -> tuple[str, str, tuple[float, float]]:
    labeler = factory()
    p_in, p_out = labeler.backend.price_per_1k
    return labeler.fingerprint, labeler.backend.name, (float(p_in), float(p_out))


class LabelActor:
    """One model per actor; labels batches and appends their final labels to its own cache shard."""

    def __init__(self, factory: LabelerFactory, cache_dir: str, fingerprint: str) -> None:
        self.labeler = factory()
        if self.labeler.fingerprint != fingerprint:
            raise RuntimeError(f"this worker's labeler is {self.labeler.fingerprint}, the driver's {fingerprint}")
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.path = Path(cache_dir) / f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        items = [
            QueryInput(str(q), tuple(json.loads(str(d)))) for q, d in zip(batch["query"], batch["docs"], strict=True)
        ]
        got = self.labeler.label_batch(items)
        if len(got) != len(items):
            raise RuntimeError(f"labeler returned {len(got)} labels for {len(items)} inputs")
        fp = self.labeler.fingerprint
        keys = [item.key(fp) for item in items]
        lines = [
            dumps_record({"key": key, "query": item.query, "docs": list(item.docs), "label": label.to_dict()}) + "\n"
            for key, item, label in zip(keys, items, got, strict=True)
            if not is_backend_error(label)  # backend failures are retried by the next run, as locally
        ]
        if lines:
            with self.path.open("a", encoding="utf-8", newline="\n") as f:
                f.writelines(lines)
                f.flush()
                os.fsync(f.fileno())
        return {"key": keys, "label": [json.dumps(label.to_dict(), ensure_ascii=False) for label in got]}


def load_cache(out_dir: Path) -> dict[str, TeacherLabel]:
    """Final labels by key from ``cache.jsonl`` and every actor's cache shard (torn lines dropped)."""
    labels = read_cache(out_dir / "cache.jsonl")
    shards = out_dir / CACHE_SHARDS
    for path in sorted(shards.glob("*.jsonl")) if shards.is_dir() else []:
        for key, label in read_cache(path).items():
            labels.setdefault(key, label)
    return labels


def compact_cache(out_dir: Path) -> int:
    """Folds the actors' cache shards into ``cache.jsonl`` (fsync'd before a shard is removed); returns
    how many labels moved. Killed half-way, a key may sit in both places: readers keep one."""
    main = out_dir / "cache.jsonl"
    known = set(read_cache(main))
    moved = 0
    shards = sorted((out_dir / CACHE_SHARDS).glob("*.jsonl")) if (out_dir / CACHE_SHARDS).is_dir() else []
    with main.open("a", encoding="utf-8", newline="\n") as f:
        for path in shards:
            read_cache(path)  # rewrites a torn shard cleanly
            for line in path.read_text(encoding="utf-8").splitlines():
                key = str(json.loads(line)["key"])
                if key not in known and not is_backend_error(TeacherLabel.from_dict(json.loads(line)["label"])):
                    f.write(line + "\n")
                    known.add(key)
                    moved += 1
        f.flush()
        os.fsync(f.fileno())
    for path in shards:
        path.unlink()
    return moved


def _blocks(n: int, batch_size: int, workers: int) -> int:
    """Blocks of about four batches (bounded re-work when a worker dies), at least two per actor."""
    return max(1, min(n, max(2 * workers, -(-n // (4 * batch_size)))))


def label_pending(
    items: Sequence[QueryInput],
    factory: LabelerFactory,
    fingerprint: str,
    out_dir: Path,
    report: LabelReport,
    res: ActorResources,
    batch_size: int,
) -> dict[str, TeacherLabel]:
    """Labels by key for ``items``: cached ones as they are, the rest through the actor pool."""
    import ray.data

    labels_cache = load_cache(out_dir)
    wanted = {item.key(fingerprint): item for item in items}
    labels = {k: labels_cache[k] for k in wanted if k in labels_cache}
    report.from_cache = len(labels)
    pending = [(k, item) for k, item in wanted.items() if k not in labels]
    if not pending:
        return labels
    rows = [{"key": k, "query": i.query, "docs": json.dumps(list(i.docs), ensure_ascii=False)} for k, i in pending]
    ds = ray.data.from_items(rows, override_num_blocks=_blocks(len(rows), batch_size, res.workers))
    out = ds.map_batches(
        LabelActor,
        fn_constructor_kwargs={
            "factory": factory,
            "cache_dir": str(out_dir / CACHE_SHARDS),
            "fingerprint": fingerprint,
        },
        batch_size=batch_size,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=res.workers),
        num_cpus=res.num_cpus,
        num_gpus=res.num_gpus,
    )  # Ray Data restarts a dead actor and retries its task (max_restarts / max_task_retries = -1);
    # min_size=1: a job starts with the CPUs there are (an actor of a failed run whose kill RPC failed
    # can hold one for a long while) and grows the pool as more free up, instead of waiting for all.
    rows_out = iter(out.iter_rows())
    try:
        for row in rows_out:
            label = TeacherLabel.from_dict(json.loads(row["label"]))
            labels[str(row["key"])] = label
            report.labeled_now += 1
            report.prompt_tokens += label.prompt_tokens
            report.completion_tokens += label.completion_tokens
    finally:
        # Closing the iterator shuts Ray Data's executor and its actor pool down now. Left to the
        # garbage collector, a failed run's actors live on while its traceback is held (a caller
        # that retries, or a test) and keep their CPUs: the next job waits for them forever.
        close = getattr(rows_out, "close", None)
        if close is not None:
            close()
    return labels


def write_parquet_shards(directory: Path, rows: Sequence[dict[str, Any]], rows_per_file: int = ROWS_PER_PARQUET) -> int:
    """Writes ``rows`` as ``part-00000.parquet``… into a fresh ``directory`` (replaced whole, so a
    re-run never leaves stale shards behind); returns the number of files."""
    import shutil

    import pyarrow as pa
    import pyarrow.parquet as pq

    tmp = directory.with_name(directory.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    files = 0
    for start in range(0, len(rows), rows_per_file):
        pq.write_table(
            pa.Table.from_pylist(list(rows[start : start + rows_per_file])), tmp / f"part-{files:05d}.parquet"
        )
        files += 1
    shutil.rmtree(directory, ignore_errors=True)
    tmp.replace(directory)
    return files


def label_on_ray(
    shards: Sequence[Path],
    job: LabelJob,
    factory: LabelerFactory,
    *,
    skip_invalid: bool = False,
    workers: int | None = None,
    address: str | None = None,
    use_gpu: bool = True,
) -> LabelReport:
    """``clipfeed tagger label --engine ray``: see the module docstring. ``factory`` builds the labeler
    on each actor (it must be picklable: a module-level function or a ``functools.partial`` of one).

    Returns the local job's report, plus the engine's figures in ``report.json`` (``engine``,
    ``workers``, ``device``, ``parquet_files``)."""
    require_ray()
    with session(address, progress=job.progress) as ray:
        start = time.perf_counter()
        inputs = read_unique_inputs(shards, skip_invalid=skip_invalid)
        sel = job.select(inputs)
        res = actor_resources(workers, use_gpu=use_gpu)
        fingerprint, teacher, price = ray.get(ray.remote(num_cpus=0.01)(_describe).remote(factory))
        labels = label_pending(sel.items, factory, fingerprint, job.out_dir, sel.report, res, job.batch_size)
        report = job.finish(sel, labels, fingerprint, teacher, price, start)
        rows = sel.rows([labels[item.key(fingerprint)] for item in sel.items])
        keyed = [r | {"key": i.key(fingerprint)} for r, i in zip(rows, sel.items, strict=True)]
        files = write_parquet_shards(job.out_dir / "labels", keyed)
        compact_cache(job.out_dir)
        _add_engine(job.out_dir / "report.json", res, files)
        return report


def _add_engine(path: Path, res: ActorResources, files: int) -> None:
    data = json.loads(path.read_text(encoding="utf-8"))
    data |= {"engine": "ray", "workers": res.workers, "device": res.device, "parquet_files": files}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


# --- tagging with the student -------------------------------------------------------------------


@dataclass
class _StudentInfo:
    name: str
    price_per_1k: tuple[float, float] = (0.0, 0.0)

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        raise NotImplementedError("the student tags through StudentLabeler.label_batch")


class StudentLabeler:
    """A serving tagger (``tag_batch``, e.g. :class:`~tagger.intent.StudentTagger`) behind the labeling
    job's ``Labeler`` protocol: tags become a label, no tags an abstention with the reason."""

    def __init__(self, tagger: Any, fingerprint: str) -> None:
        self.tagger = tagger
        self.fingerprint = fingerprint
        self.backend: TeacherBackend = _StudentInfo(f"student:{fingerprint}")

    def label_batch(self, items: Sequence[QueryInput]) -> list[TeacherLabel]:
        results: list[list[IntentTag]] = self.tagger.tag_batch([i.query for i in items], [list(i.docs) for i in items])
        out = []
        for item, tags in zip(items, results, strict=True):
            why = check_query(item.query)
            reason = "" if tags else (why or "no clip intent")
            out.append(TeacherLabel(list(tags), max((t.score for t in tags), default=0.0), not tags, reason))
        return out


def student_labeler(tagger_factory: Callable[[], Any], fingerprint: str) -> StudentLabeler:
    return StudentLabeler(tagger_factory(), fingerprint)


def tag_rows(items: Sequence[QueryInput], labels: Sequence[TeacherLabel]) -> list[dict[str, Any]]:
    """The ``tagger tag --json`` lines (plus the clicked titles), in input order."""
    rows = []
    for item, label in zip(items, labels, strict=True):
        row: dict[str, Any] = {"query": item.query, "docs": list(item.docs)}
        row["tags"] = [{"tag": t.tag, "score": t.score} for t in label.tags]
        why = check_query(item.query)
        if why:
            row["reason"] = why
        rows.append(row)
    return rows


def tag_on_ray(
    shards: Sequence[Path],
    out_dir: Path,
    tagger_factory: Callable[[], Any],
    fingerprint: str,
    *,
    batch_size: int = 32,
    skip_invalid: bool = False,
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    use_gpu: bool = True,
) -> dict[str, Any]:
    """``clipfeed tagger tag --file F --engine ray``: every unique input tagged once by a pool of
    student actors, cached by content hash (salted with ``fingerprint``) like the labeling job;
    writes ``tags.jsonl``, ``tags/part-*.parquet`` and ``report.json``; returns the report."""
    require_ray()
    out_dir.mkdir(parents=True, exist_ok=True)
    factory = partial(student_labeler, tagger_factory, fingerprint)
    with session(address, progress=progress):
        start = time.perf_counter()
        inputs = read_unique_inputs(shards, skip_invalid=skip_invalid)
        items = [i for i, _ in inputs]
        res = actor_resources(workers, use_gpu=use_gpu)
        report = LabelReport(queries=inputs.report.rows + inputs.report.rejected, invalid=inputs.report.rejected)
        report.unique = report.after_cap = report.kept = len(items)
        labels = label_pending(items, factory, fingerprint, out_dir, report, res, batch_size)
        rows = tag_rows(items, [labels[i.key(fingerprint)] for i in items])
        write_jsonl(out_dir / "tags.jsonl", rows)
        files = write_parquet_shards(
            out_dir / "tags", [r | {"key": i.key(fingerprint)} for r, i in zip(rows, items, strict=True)]
        )
        compact_cache(out_dir)
        seconds = time.perf_counter() - start
        summary: dict[str, Any] = {
            "queries": report.queries,
            "invalid": report.invalid,
            "unique": report.unique,
            "tagged_now": report.labeled_now,
            "from_cache": report.from_cache,
            "seconds": round(seconds, 3),
            "queries_per_s": round(report.labeled_now / seconds, 3) if seconds > 0 else 0.0,
            "fingerprint": fingerprint,
            "engine": "ray",
            "workers": res.workers,
            "device": res.device,
            "parquet_files": files,
        }
        (out_dir / "report.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
        return summary

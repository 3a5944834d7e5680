"""The served-impression log: every served feed (with its feature rows as served) and every accepted
event, appended to rotating JSONL files, off the request path.

A request hands a record (plain Python and numpy objects) to a bounded queue and returns; one writer
thread takes records in batches, encodes them (JSON encoding and rounding happen there, not in the
request) and appends them. When the queue is full the record is dropped and counted, so a slow disk
never slows a request. ``close()`` drains the queue, fsyncs and closes the file: a clean shutdown
loses nothing.

Files: ``served-<YYYYmmddTHH0000>-<pid>-<seq>.jsonl``, rotated past ``rotate_bytes`` and when the
hour changes (so a file covers at most one hour), several processes (uvicorn workers) sharing a
directory. A file is written as ``….jsonl.part`` and renamed to ``….jsonl`` (atomic) once closed;
readers (``recommender.from_log``) read both and skip a torn last line of an open or orphaned file.
Each file starts with a ``header`` record naming the feature schema; feed records carry its hash.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> slog = ServedLog(d)
>>> slog.log_event({"event_id": "e1", "user_id": "u1", "ts": 1772700000.0, "type": "skip", "clip_id": "c1"})
True
>>> slog.close()
>>> [p.suffix for p in d.iterdir()], slog.written
(['.jsonl'], 1)
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from recommender.features import FEATURES
from recommender.from_log import CLOSED_SUFFIX, LOG_FORMAT, OPEN_SUFFIX, schema_hash

log = logging.getLogger("clipfeed.api.servelog")

_STOP = object()
DECIMALS = 6  # feature values are float32: 6 decimals keep them to ~1e-6, at a third of the bytes


class ServedLog:
    """Append-only, rotating JSONL log written by one background thread from a bounded queue."""

    def __init__(
        self,
        directory: str | Path,
        rotate_bytes: int = 64 * 2**20,
        queue_size: int = 10_000,
        batch_size: int = 512,
        features: Sequence[str] = FEATURES,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[str, int], None] | None = None,
        clock: Callable[[], float] = time.time,
        start: bool = True,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.batch_size = batch_size
        self.features = list(features)
        self.schema = schema_hash(self.features)
        self.on_written = on_written or (lambda n: None)
        self.on_dropped = on_dropped or (lambda reason, n: None)
        self.clock = clock
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self.written = 0  # records written (headers not counted)
        self.dropped = 0
        self.files: list[Path] = []  # closed files this log wrote, in order
        self.closed = False
        self._file: IO[str] | None = None
        self._path: Path | None = None
        self._hour = ""
        self._size = 0
        self._seq = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        if start:
            self.start()

    # -- the request side: never blocks -------------------------------------------------------------

    @property
    def depth(self) -> int:
        return self.queue.qsize()

    def put(self, record: dict[str, Any]) -> bool:
        """Queues a record for the writer; False (and counted) when the queue is full or closed."""
        if self.closed:
            self._drop("closed")
            return False
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            self._drop("queue_full")
            return False
        return True

    def log_feed(
        self,
        *,
        request_id: str,
        user_id: str,
        arm: str,
        session: str,
        page: int,
        request: dict[str, Any],
        history_len: int,
        candidates: int,
        clip_ids: list[str],
        scores: list[float],
        x: np.ndarray | None,
        complete: Callable[[], object] | None = None,
        ts: float | None = None,
    ) -> bool:
        """One served page: its items in page order and their feature rows as served (``x``, one row
        per item, or None when the page was not ranked). Encoded later, in the writer thread, which
        first calls ``complete`` (``Feed.complete_features``: fills in ``x`` the rows of exploration
        picks, NaN until then); a row still not finite is written as null."""
        return self.put(
            {
                "kind": "feed",
                "request_id": request_id,
                "ts": self.clock() if ts is None else ts,
                "user_id": user_id,
                "arm": arm,
                "session": session,
                "page": page,
                "request": request,
                "history_len": history_len,
                "candidates": candidates,
                "_clip_ids": clip_ids,
                "_scores": scores,
                "_x": x,
                "_complete": complete,
            }
        )

    def log_event(self, event: Any) -> bool:
        """One accepted event (a dict of its fields, or the API's ``EventIn``, dumped in the writer),
        stamped with the server time it arrived (``logged_at``)."""
        return self.put({"kind": "event", "logged_at": self.clock(), "_event": event})

    def _drop(self, reason: str, n: int = 1) -> None:
        self.dropped += n
        self.on_dropped(reason, n)

    # -- the writer thread --------------------------------------------------------------------------

    def start(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="clipfeed-servelog", daemon=True)
                self._thread.start()

    def close(self, timeout_s: float = 60.0) -> None:
        """Stops taking records, writes every queued one, fsyncs and closes the file (idempotent)."""
        if self.closed and self._thread is None:
            return
        self.closed = True
        self.start()  # a log created with start=False still drains on close
        assert self._thread is not None
        deadline = time.monotonic() + timeout_s
        while True:  # the writer is running, so a full queue makes room
            try:
                self.queue.put(_STOP, timeout=0.1)
                break
            except queue.Full:
                if time.monotonic() > deadline or not self._thread.is_alive():
                    break
        self._thread.join(max(0.0, deadline - time.monotonic()))
        if self._thread.is_alive():
            log.error("served-impression log: writer did not finish in %.0f s", timeout_s)
        self._thread = None

    def _run(self) -> None:
        stop = False
        while not stop:
            batch = [self.queue.get()]
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            if any(r is _STOP for r in batch):
                stop = True
                batch = [r for r in batch if r is not _STOP]
                while True:  # whatever arrived before the stop marker was taken
                    try:
                        r = self.queue.get_nowait()
                    except queue.Empty:
                        break
                    if r is not _STOP:
                        batch.append(r)
            before = self.written
            try:
                self._write(batch)
            except Exception:  # a full disk must not stop the writer: count the loss, go on
                lost = len(batch) - (self.written - before)
                log.exception("served-impression log: could not write %d records", lost)
                self._drop("write_error", lost)
                try:
                    self._close_file()
                except OSError:
                    self._file = self._path = None
        try:
            self._close_file()
        except OSError:
            log.exception("served-impression log: could not close %s", self._path)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        chunk: list[str] = []
        size = 0
        for rec in batch:
            # orjson: the writer shares the GIL with the request loop, and json.dumps of a page's
            # feature rows was most of its time per record
            line = orjson.dumps(_encode(rec, self.schema)).decode() + "\n"
            n = len(line.encode())
            hour = time.strftime("%Y%m%dT%H0000", time.gmtime(self.clock()))
            if self._file is not None and (hour != self._hour or self._size + size + n > self.rotate_bytes):
                self._flush(chunk, len(chunk))
                chunk, size = [], 0
                self._close_file()
            if self._file is None:
                self._open(hour)
            chunk.append(line)
            size += n
            time.sleep(0)  # encoding holds the GIL: let a waiting request thread run between records
        self._flush(chunk, len(chunk))

    def _flush(self, lines: list[str], records: int) -> None:
        if not lines or self._file is None:
            return
        text = "".join(lines)
        self._file.write(text)
        self._file.flush()  # in the OS's hands: a killed process loses nothing written
        self._size += len(text.encode())
        self.written += records
        self.on_written(records)

    def _open(self, hour: str) -> None:
        pid = os.getpid()
        while True:  # a restarted process (or a reused pid) never reuses a name
            self._seq += 1
            stem = self.directory / f"served-{hour}-{pid}-{self._seq:04d}"
            closed, part = stem.with_name(stem.name + CLOSED_SUFFIX), stem.with_name(stem.name + OPEN_SUFFIX)
            if closed.exists():
                continue
            try:
                self._file = part.open("x", encoding="utf-8")
            except FileExistsError:
                continue
            break
        self._path, self._hour = part, hour
        header = {"kind": "header", "format": LOG_FORMAT, "schema": self.schema, "features": self.features}
        text = json.dumps({**header, "pid": pid, "opened": self.clock()}, separators=(",", ":")) + "\n"
        self._file.write(text)
        self._size = len(text.encode())

    def _close_file(self) -> None:
        f, path = self._file, self._path
        self._file = self._path = None
        if f is None or path is None:
            return
        f.flush()
        os.fsync(f.fileno())
        f.close()
        final = path.with_name(path.name.removesuffix(".part"))
        os.replace(path, final)  # atomic: readers see a whole closed file or the open .part
        self.files.append(final)
        try:
            fd = os.open(self.directory, os.O_RDONLY)
            try:
                os.fsync(fd)  # the rename itself survives a crash
            finally:
                os.close(fd)
        except OSError:  # some filesystems cannot fsync a directory
            pass


def _encode(rec: dict[str, Any], schema: str) -> dict[str, Any]:
    """The record as written: feed items assembled from the request's lists, floats rounded."""
    if rec.get("kind") == "event":
        ev = rec["_event"]
        fields = dict(ev) if isinstance(ev, dict) else ev.model_dump(mode="json", exclude_none=True)
        if not isinstance(ev, dict):
            fields["ts"] = ev.epoch  # epoch seconds, whichever form the client sent
            if not fields.get("clicked_docs"):
                fields.pop("clicked_docs", None)
        return {"kind": "event", "logged_at": rec["logged_at"], **fields}
    if rec.get("kind") != "feed":
        return rec
    out = {k: v for k, v in rec.items() if not k.startswith("_")}
    x = rec["_x"]
    n = len(rec["_clip_ids"])
    if rec.get("_complete") is not None:
        try:
            rec["_complete"]()
        except Exception:  # those rows stay NaN and are written as null: the rest of the page is kept
            log.warning("served-impression log: could not compute exploration rows", exc_info=True)
    rows: list[Any] = [None] * n
    if x is not None:
        x64 = np.asarray(x, dtype=np.float64)
        finite = np.asarray(np.isfinite(x64).all(axis=1))
        rows = [r if ok else None for r, ok in zip(np.round(x64, DECIMALS).tolist(), finite.tolist(), strict=True)]
    out["schema"] = schema
    out["items"] = [
        {"clip_id": c, "position": n, "score": s, "x": row}
        for n, (c, s, row) in enumerate(zip(rec["_clip_ids"], rec["_scores"], rows, strict=True))
    ]
    return out

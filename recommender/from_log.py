"""Training from the served-impression log: what the API actually showed, with the features as served.

The API (``api/servelog.py``) appends JSONL records to a log directory: a ``header`` record opens
every file (the feature names and their schema hash), then ``feed`` records (one per served page:
user, arm, session, page, request context, and per item its ``clip_id``, ``position``, ``score`` and
feature row ``x``) and ``event`` records (each accepted event, with the server time it arrived,
``logged_at``). Closed files end in ``.jsonl``; the file a writer still has open (or left behind
when its process was killed) ends in ``.jsonl.part`` and is read too, its torn last line skipped.

Labels join each served item with the same user's later events on that clip (within
``window_s`` of the feed, by server time, attributed to the latest feed that showed the clip),
graded like the offline trainer (:func:`recommender.ranker.grade`). One LightGBM group per served
feed; each row keeps its position on the page for LightGBM's position-bias handling.

>>> schema_hash(("a", "b")) == schema_hash(["a", "b"]) != schema_hash(["b", "a"])
True
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from clipfeed.errors import ClipfeedError, InputError
from clipfeed.records import Event
from recommender.collab import CollabModel
from recommender.config import RecommenderConfig
from recommender.features import FEATURES
from recommender.ranker import SESSION_GAP_S, Ranker, TrainingData, grade

log = logging.getLogger("clipfeed.recommender.from_log")

LOG_FORMAT = 1
CLOSED_SUFFIX = ".jsonl"
OPEN_SUFFIX = ".jsonl.part"
_CLIP_EVENTS = {"impression", "watch", "skip", "like", "share", "comment"}


def schema_hash(names: Sequence[str]) -> str:
    """A short digest of a feature schema (names in order): written in every feed record."""
    return hashlib.blake2b("\n".join(names).encode(), digest_size=8).hexdigest()


def log_files(directory: Path) -> list[Path]:
    """The log's files, closed and open, in name order (time, then process, then sequence)."""
    if not directory.is_dir():
        raise ClipfeedError(f"{directory}: not a served-impression log directory")
    files = [p for p in directory.iterdir() if p.name.endswith((CLOSED_SUFFIX, OPEN_SUFFIX))]
    return sorted(files, key=lambda p: p.name.removesuffix(".part"))


@dataclass
class LogRead:
    """What a read saw: records by kind, files, and the torn lines it skipped."""

    feeds: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    files: int = 0
    open_files: int = 0
    torn_lines: int = 0


def _lines(path: Path) -> Iterator[tuple[int, str, bool]]:
    """(line number, text, is the last line) of a file; the last line may lack its newline."""
    with path.open("r", encoding="utf-8", errors="strict") as f:
        prev: tuple[int, str] | None = None
        for n, line in enumerate(f, 1):
            if prev is not None:
                yield prev[0], prev[1], False
            prev = (n, line)
        if prev is not None:
            yield prev[0], prev[1], True


def read_log(directory: str | Path, features: Sequence[str] = FEATURES) -> LogRead:
    """Every feed and event record of a log directory, checked against the feature schema.

    A torn last line of a file (a writer killed mid-line, or still writing) is skipped with a
    warning; any other bad line is an :class:`InputError` naming file:line."""
    out = LogRead()
    want = schema_hash(features)
    for path in log_files(Path(directory)):
        out.files += 1
        out.open_files += path.name.endswith(OPEN_SUFFIX)
        header: dict[str, Any] | None = None
        try:
            lines = list(_lines(path))
        except UnicodeDecodeError as e:
            raise InputError(path, None, None, f"not UTF-8 text ({e.reason})") from e
        for n, line, last in lines:
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                if last and not line.endswith("\n"):
                    log.warning("%s:%d: torn last line skipped (a writer stopped mid-line)", path, n)
                    out.torn_lines += 1
                    continue
                raise InputError(path, n, None, f"invalid JSON record: {e}") from e
            kind = rec.get("kind")
            if kind == "header":
                header = rec
                if rec.get("format") != LOG_FORMAT:
                    raise InputError(path, n, "format", f"log format {rec.get('format')!r}, expected {LOG_FORMAT}")
                if rec.get("schema") != want or list(rec.get("features", [])) != list(features):
                    theirs, ours = list(rec.get("features", [])), list(features)
                    diff = sorted(set(theirs) ^ set(ours)) or ["(same names, different order)"]
                    raise InputError(
                        path,
                        n,
                        "features",
                        f"logged with another feature schema ({', '.join(diff)}); train on logs written by "
                        "the same code version as this one (or move older files out of the directory)",
                    )
            elif kind == "feed":
                if header is None:
                    raise InputError(path, n, "kind", "feed record before the file's header record")
                if rec.get("schema") != want:
                    raise InputError(path, n, "schema", "feed record's schema hash differs from the file's header")
                _check_feed(path, n, rec, len(features))
                out.feeds.append(rec)
            elif kind == "event":
                for key in ("user_id", "type", "logged_at"):
                    if key not in rec:
                        raise InputError(path, n, key, "missing field of an event record")
                out.events.append(rec)
            else:
                raise InputError(path, n, "kind", f"unknown record kind {kind!r} (header, feed, event)")
    return out


def _check_feed(path: Path, n: int, rec: dict[str, Any], width: int) -> None:
    for key in ("user_id", "ts", "items"):
        if key not in rec:
            raise InputError(path, n, key, "missing field of a feed record")
    for item in rec["items"]:
        x = item.get("x")
        if "clip_id" not in item or "position" not in item:
            raise InputError(path, n, "items", "an item needs clip_id and position")
        if x is not None and len(x) != width:
            raise InputError(path, n, "items.x", f"feature row of {len(x)} values, schema has {width}")


def _event(rec: dict[str, Any]) -> Event | None:
    """A logged clip event as the data contract's record (for :func:`grade`); None for others."""
    if rec["type"] not in _CLIP_EVENTS or not rec.get("clip_id"):
        return None
    try:
        return Event(
            event_id=rec.get("event_id") or "logged",
            user_id=rec["user_id"],
            ts=datetime.fromtimestamp(float(rec["logged_at"]), UTC),
            type=rec["type"],
            clip_id=rec["clip_id"],
            watch_ratio=rec.get("watch_ratio") if rec["type"] == "watch" else None,
        )
    except ValidationError:
        return None


@dataclass
class LogTraining:
    data: TrainingData
    feeds: int  # feed records read
    skipped: dict[str, int]  # feeds left out, by reason
    events_joined: int
    read: LogRead


def build_training_from_log(
    directory: str | Path, meaningful: float, window_s: float = SESSION_GAP_S, features: Sequence[str] = FEATURES
) -> LogTraining:
    """One LightGBM group per served feed (its items' rows as served, graded by the user's later
    events on them, their positions on the page), time-stamped by the feed's server time."""
    read = read_log(directory, features)
    # Per user: the feeds in time order; an event counts for the latest feed that showed its clip.
    by_user: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(read.feeds, key=lambda r: float(r["ts"])):
        by_user.setdefault(rec["user_id"], []).append(rec)
    times = {u: [float(r["ts"]) for r in feeds] for u, feeds in by_user.items()}
    reactions: dict[int, dict[str, list[Event]]] = {}  # id(feed record) -> clip -> events
    joined = 0
    for rec in read.events:
        feeds = by_user.get(rec["user_id"])
        ev = _event(rec) if feeds else None
        if ev is None or feeds is None:
            continue
        at = float(rec["logged_at"])
        k = bisect.bisect_right(times[rec["user_id"]], at) - 1
        while k >= 0 and at - float(feeds[k]["ts"]) <= window_s:
            feed = feeds[k]
            if any(it["clip_id"] == ev.clip_id for it in feed["items"]):
                reactions.setdefault(id(feed), {}).setdefault(ev.clip_id or "", []).append(ev)
                joined += 1
                break
            k -= 1
    data = TrainingData()
    skipped: dict[str, int] = {}
    for feeds in by_user.values():
        for feed in feeds:
            items = [it for it in feed["items"] if it.get("x") is not None]
            if len(items) < 2:
                reason = "not ranked (fallback or popularity arm)" if not items else "fewer than 2 ranked items"
                skipped[reason] = skipped.get(reason, 0) + 1
                continue
            got = reactions.get(id(feed), {})
            data.features.append(np.asarray([it["x"] for it in items], dtype=np.float32))
            data.labels.append(np.array([grade(got.get(it["clip_id"], []), meaningful) for it in items]))
            data.positions.append(np.array([int(it["position"]) for it in items], dtype=np.int32))
            data.groups.append(len(items))
            data.times.append(float(feed["ts"]))
    return LogTraining(data, len(read.feeds), skipped, joined, read)


def split_by_share(times: Sequence[float], valid_share: float) -> float:
    """The time after which the last ``valid_share`` of the groups fall (the validation split)."""
    if not times:
        return float("inf")
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, int(len(ordered) * (1.0 - valid_share)))]


VALID_SHARE = 0.2  # the latest fifth of the served feeds validates (early stopping)


def train_from_log(
    directory: str | Path, cfg: RecommenderConfig, collab: CollabModel | None = None, valid_share: float = VALID_SHARE
) -> tuple[Ranker, LogTraining]:
    """A ranker trained on a served-impression log, time-split by feed time. ``collab``: the
    collaborative model of the ranker that served the log (its ``cf_score``/``coengage`` columns were
    computed from it), bound to the new ranker so it serves the same features it was trained on."""
    lt = build_training_from_log(directory, cfg.signals.meaningful_watch_ratio)
    if not lt.data.groups:
        skipped = ", ".join(f"{n} {why}" for why, n in lt.skipped.items()) or "none"
        raise ClipfeedError(
            f"{directory}: no served feed with 2 or more ranked items to train on "
            f"({lt.feeds} feed records in {lt.read.files} files; skipped: {skipped})"
        )
    ranker = Ranker.train(lt.data, cfg, split_by_share(lt.data.times, valid_share), collab)
    ranker.meta.update(
        {
            "from_log": str(directory),
            "log_files": lt.read.files,
            "log_feeds": lt.feeds,
            "log_events": len(lt.read.events),
            "events_joined": lt.events_joined,
            "feeds_skipped": lt.skipped,
            "torn_lines": lt.read.torn_lines,
        }
    )
    return ranker, lt

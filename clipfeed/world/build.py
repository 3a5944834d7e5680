"""``clipfeed world build``: writes a deterministic sample world (same seed, same bytes)."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from clipfeed.errors import InputError
from clipfeed.jsonl import JsonlReader, dumps_record
from clipfeed.records import GoldRow
from clipfeed.taxonomy import Taxonomy, shipped_taxonomy_path
from clipfeed.world.catalog import SimClip, make_clips, make_creators, published_at_iso, topic_weights
from clipfeed.world.config import WorldConfig
from clipfeed.world.events import ChoiceModel, Exposure, SimEvent
from clipfeed.world.users import SimQuery, SimUser, head_queries, make_queries, make_users
from clipfeed.world.vocab import load_vocab


def _iso(ts: datetime) -> str:
    return ts.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def shipped_gold_path() -> Path:
    return Path(str(resources.files("clipfeed") / "data" / "gold.jsonl"))


def load_gold(path: Path, taxonomy: Taxonomy) -> list[GoldRow]:
    """The curated gold set, checked against the taxonomy."""
    rows = []
    for lineno, row in enumerate(JsonlReader(path, GoldRow), start=1):
        for t in row.topics:
            if t not in taxonomy:
                raise InputError(path, lineno, "topics", f"unknown taxonomy id {t!r}")
        rows.append(row)
    return rows


def _write_lines(path: Path, rows: Iterator[dict[str, Any]]) -> int:
    n = 0
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps_record(row))
            f.write("\n")
            n += 1
    return n


def _event_rows(events: list[SimEvent], prefix: str) -> Iterator[dict[str, Any]]:
    for i, e in enumerate(events):
        yield e.row(f"{prefix}{i:08d}", _iso(e.ts))


def _clip_row(cfg: WorldConfig, c: SimClip) -> dict[str, Any]:
    return {
        "clip_id": c.clip_id,
        "title": c.title,
        "description": c.description,
        "creator_id": c.creator.creator_id,
        "language": c.lang,
        "topics": [c.topic],
        "tags": c.tags,
        "duration_s": c.duration_s,
        "published_at": published_at_iso(cfg, c),
        "views": c.views,
    }


def _query_row(q: SimQuery) -> dict[str, Any]:
    return {"user_id": q.user_id, "ts": _iso(q.ts), "query": q.query, "clicked_docs": [{"title": d} for d in q.docs]}


def build_world(out: str | Path, cfg: WorldConfig | None = None, *, progress: bool = True) -> dict[str, Any]:
    """Builds the world into ``out`` and returns its statistics (also saved in ``world.json``)."""
    cfg = cfg or WorldConfig()
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    vocab = load_vocab()
    taxonomy = Taxonomy.load()
    missing = [t for t in vocab.topics if t not in taxonomy]
    if missing:
        raise InputError("world vocabulary", None, "id", f"topics not in the taxonomy: {missing}")
    tier1 = taxonomy.tier1_of
    # Independent streams per component: changing how users are drawn does not reshuffle the catalog.
    r_catalog, r_users, r_queries, r_events, r_heads = (
        np.random.default_rng(s) for s in np.random.SeedSequence(cfg.seed).spawn(5)
    )
    tweights = topic_weights(r_catalog, list(vocab.topics))
    creators = make_creators(cfg, vocab, r_catalog, tweights)
    clips = make_clips(cfg, vocab, r_catalog, creators)
    users = make_users(cfg, vocab, r_users, tweights)
    heads = head_queries(vocab, r_heads)
    span_end = cfg.start + timedelta(days=cfg.days)
    choice = ChoiceModel(cfg, r_events, tier1)
    exposure = Exposure(clips, r_events, tier1)

    queries: list[SimQuery] = []
    events: list[SimEvent] = []
    heldout: list[SimEvent] = []
    span_s = (span_end - cfg.start).total_seconds()
    for user in tqdm(users, desc="world: users", unit="user", disable=not progress, mininterval=0.5):
        user_queries = make_queries(cfg, vocab, r_queries, user, heads, span_end)
        queries.extend(user_queries)
        followed: set[str] = set()
        if user.cold:
            # The cold-start population: searches only. Their reactions to a wide evaluation session
            # after the search period are ground truth, kept out of events.jsonl.
            ts = span_end + timedelta(hours=1)
            for idx in exposure.heldout(user, cfg.heldout_impressions):
                heldout.extend(choice.react(user, clips[idx], ts, followed))
            continue
        lo, hi = cfg.sessions_per_warm_user
        starts = sorted(float(r_events.uniform(0, span_s)) for _ in range(int(r_events.integers(lo, hi + 1))))
        for s in starts:
            ts = cfg.start + timedelta(seconds=int(s))
            recent = [q.query for q in user_queries if q.ts < ts][-3:]
            for j, idx in enumerate(exposure.session(user, cfg.impressions_per_session, recent)):
                events.extend(choice.react(user, clips[idx], ts + timedelta(seconds=40 * j), followed))

    queries.sort(key=lambda q: (q.ts, q.user_id))
    events.sort(key=lambda e: (e.ts, e.user_id))
    heldout.sort(key=lambda e: (e.ts, e.user_id))
    clips_sorted = sorted(clips, key=lambda c: c.clip_id)

    _write_lines(out / "catalog.jsonl", (_clip_row(cfg, c) for c in clips_sorted))
    _write_lines(out / "queries.jsonl", (_query_row(q) for q in queries))
    _write_lines(out / "events.jsonl", _event_rows(events, "e"))
    gold = load_gold(shipped_gold_path(), taxonomy)
    _write_lines(out / "gold.jsonl", (g.model_dump(mode="json", exclude_none=True) for g in gold))
    shutil.copyfile(shipped_taxonomy_path(), out / "taxonomy.tsv")
    _write_lines(out / "truth" / "users.jsonl", (_user_row(u) for u in users))
    _write_lines(
        out / "truth" / "queries.jsonl",
        ({**_query_row(q), "pattern": q.pattern, "interest": q.interest} for q in queries),
    )
    _write_lines(out / "truth" / "heldout_events.jsonl", _event_rows(heldout, "h"))
    _write_lines(
        out / "truth" / "clips.jsonl",
        (
            {"clip_id": c.clip_id, "topic": c.topic, "entity": c.entity, "quality": round(c.quality, 4)}
            for c in clips_sorted
        ),
    )
    stats = world_stats(cfg, taxonomy, clips, users, queries, events, heldout, gold)
    meta = {"config": cfg.model_dump(mode="json"), "stats": stats}
    (out / "world.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return stats


def _user_row(u: SimUser) -> dict[str, Any]:
    return {
        "user_id": u.user_id,
        "language": u.lang,
        "cold": u.cold,
        "interests": [{"topic": i.topic, "entity": i.entity, "weight": i.weight} for i in u.interests],
    }


def world_stats(
    cfg: WorldConfig,
    taxonomy: Taxonomy,
    clips: list[SimClip],
    users: list[SimUser],
    queries: list[SimQuery],
    events: list[SimEvent],
    heldout: list[SimEvent],
    gold: list[GoldRow],
) -> dict[str, Any]:
    """The documented statistics that tests check (see docs/world.md)."""
    q_counts = Counter(q.query for q in queries)
    top = sum(c for _, c in q_counts.most_common(max(1, len(q_counts) // 100)))
    users_with_events = {e.user_id for e in events}
    travel = sum(1 for u in users if any(i.topic == "655" and i.entity for i in u.interests))
    return {
        "clips": len(clips),
        "creators": len({c.creator.creator_id for c in clips}),
        "tier2_topics": len({c.topic for c in clips}),
        "tier1_topics": len({taxonomy.tier1_of(c.topic) for c in clips}),
        "clip_language_share": dict(sorted(Counter(c.lang for c in clips).items())),
        "users": len(users),
        "cold_users": sum(u.cold for u in users),
        "cold_user_share": round(sum(u.cold for u in users) / len(users), 4),
        "cold_users_with_events": sum(1 for u in users if u.cold and u.user_id in users_with_events),
        "travel_planner_users": travel,
        "queries": len(queries),
        "unique_queries": len(q_counts),
        "top1pct_query_share": round(top / max(1, len(queries)), 4),
        "query_patterns": dict(sorted(Counter(q.pattern for q in queries).items())),
        "queries_with_docs": sum(1 for q in queries if q.docs),
        "events": dict(sorted(Counter(e.type for e in events).items())),
        "heldout_events": dict(sorted(Counter(e.type for e in heldout).items())),
        "gold_rows": len(gold),
        "gold_splits": dict(sorted(Counter(g.split or "none" for g in gold).items())),
    }

"""The sample world: determinism, validity and the documented statistics (docs/world.md)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from clipfeed.jsonl import read_catalog, read_events, read_gold, read_queries
from clipfeed.taxonomy import Taxonomy
from clipfeed.world import WORLD_FILES, build_world
from clipfeed.world.validate import validate_world
from tests.conftest import SMALL


def _digests(world: Path) -> dict[str, str]:
    return {
        str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(small_world: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    build_world(again, SMALL, progress=False)
    assert _digests(again) == _digests(small_world)
    other = tmp_path / "other"
    build_world(other, SMALL.model_copy(update={"seed": 4}), progress=False)
    assert _digests(other)["catalog.jsonl"] != _digests(small_world)["catalog.jsonl"]


def test_writes_all_five_files_that_load_with_zero_rejects(small_world: Path) -> None:
    for name in WORLD_FILES:
        assert (small_world / name).stat().st_size > 0
    report = validate_world(small_world)
    assert report.ok, report.to_dict()
    Taxonomy.load(small_world / "taxonomy.tsv")


def test_default_world_statistics(default_world: tuple[Path, dict[str, object]]) -> None:
    world, stats = default_world
    tax = Taxonomy.load(world / "taxonomy.tsv")
    clips = list(read_catalog(world / "catalog.jsonl"))
    assert len(clips) >= 3000
    tier2 = {c.topics[0] for c in clips}
    assert len(tier2) >= 60 and all(tax.node(t).tier == 2 for t in tier2)
    assert len({tax.tier1_of(t) for t in tier2}) >= 15
    langs = Counter(c.language for c in clips)
    assert 0.4 <= langs["ko"] / len(clips) <= 0.6
    creators = Counter(c.creator_id for c in clips)
    # creators have a topic focus: most of a creator's clips share one topic
    focus = [
        max(Counter(c.topics[0] for c in clips if c.creator_id == cr).values()) / n
        for cr, n in creators.most_common(30)
    ]
    assert sum(focus) / len(focus) >= 0.6
    views = sorted((c.views or 0 for c in clips), reverse=True)
    assert sum(views[: len(views) // 10]) / sum(views) >= 0.3  # long tail: top 10% take a large share

    users = [json.loads(line) for line in (world / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(users) >= 2000
    assert all(1 <= len(u["interests"]) <= 3 for u in users)
    cold = {u["user_id"] for u in users if u["cold"]}
    assert 0.2 <= len(cold) / len(users) <= 0.4
    events = list(read_events(world / "events.jsonl"))
    assert not cold & {e.user_id for e in events}  # the cold-start population has no clip events
    assert {e.type.value for e in events} >= {"impression", "watch", "skip", "like", "share", "comment", "follow"}
    heldout_users = {
        json.loads(line)["user_id"]
        for line in (world / "truth" / "heldout_events.jsonl").read_text(encoding="utf-8").splitlines()
    }
    assert heldout_users == cold

    queries = list(read_queries(world / "queries.jsonl"))
    queried = {q.user_id for q in queries}
    assert queried == {u["user_id"] for u in users}
    assert sum(1 for q in queries if q.clicked_docs) / len(queries) >= 0.2
    truth = [json.loads(line) for line in (world / "truth" / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    patterns = Counter(t["pattern"] for t in truth)
    for hard_case in ("prep_cue", "bare_entity", "cue", "navigational", "head"):
        assert patterns[hard_case] >= 100, patterns
    # Zipf repeats: the most frequent 1% of distinct queries take a large share of all searches.
    assert float(stats["top1pct_query_share"]) >= 0.1  # type: ignore[arg-type]
    assert stats["travel_planner_users"] >= 150  # type: ignore[operator]
    # sibling populations: soccer fans and baseball fans both present
    topics = Counter(i["topic"] for u in users for i in u["interests"])
    assert topics["533"] >= 100 and topics["545"] >= 80
    assert len(list(read_gold(world / "gold.jsonl"))) >= 400


def test_argentina_hard_case_is_in_the_world(default_world: tuple[Path, dict[str, object]]) -> None:
    world, _ = default_world
    clips = {c.clip_id: c for c in read_catalog(world / "catalog.jsonl")}
    truth = {
        json.loads(line)["clip_id"]: json.loads(line)
        for line in (world / "truth" / "clips.jsonl").read_text(encoding="utf-8").splitlines()
    }
    argentina = [c for cid, c in clips.items() if truth[cid]["entity"] == "argentina"]
    by_topic = Counter(c.topics[0] for c in argentina)
    assert by_topic["655"] >= 4 and by_topic["533"] >= 4
    # the famous trap: Argentine football outdraws Argentina travel
    views = {t: sum(c.views or 0 for c in argentina if c.topics[0] == t) / by_topic[t] for t in ("655", "533")}
    assert views["533"] > views["655"]


def test_same_bytes_across_processes_and_hash_seeds(small_world: Path, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    out = tmp_path / "proc"
    cfg = SMALL
    code = (
        "from clipfeed.world import WorldConfig, build_world; import sys; "
        f"build_world(sys.argv[1], WorldConfig(seed={cfg.seed}, n_clips={cfg.n_clips}, "
        f"n_creators={cfg.n_creators}, n_users={cfg.n_users}), progress=False)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(out)], check=True, env=env)
    assert _digests(out) == _digests(small_world)

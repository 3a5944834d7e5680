"""benchmarks/youtube_world.py: a world from real YouTube titles loads like a simulated one."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from clipfeed.world.validate import validate_world
from tests.conftest import shared_data

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "youtube_world.py"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("youtube_world", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


def _digests(world: Path) -> dict[str, str]:
    return {
        str(p.relative_to(world)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(world.rglob("*"))
        if p.is_file()
    }


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_youtube_world_is_valid_deterministic_and_real(tmp_path: Path) -> None:
    data = shared_data("youtube_trending_us_2017", "videos.csv").parent
    yt = _script()
    out = tmp_path / "a"
    stats = yt.build(out, seed=5, users=200, data=data)

    report = validate_world(out)
    assert report.ok, report.to_dict()
    for name in ("catalog.jsonl", "queries.jsonl", "events.jsonl", "gold.jsonl", "taxonomy.tsv", "world.json"):
        assert (out / name).stat().st_size > 0
    assert json.loads((out / "world.json").read_text(encoding="utf-8"))["config"]["source"] == yt.SOURCE

    again = tmp_path / "b"
    yt.build(again, seed=5, users=200, data=data)
    assert _digests(again) == _digests(out)

    catalog = _rows(out / "catalog.jsonl")
    assert len(catalog) == stats["clips"] > 2000
    assert len({c["topics"][0] for c in catalog}) >= 10
    titles = [c["title"] for c in catalog]
    assert any("HOW LOGAN PAUL CHANGED YOUTUBE FOREVER" in t for t in titles)
    assert any(t.startswith("iPhone X") for t in titles)

    users = _rows(out / "truth" / "users.jsonl")
    cold = {u["user_id"] for u in users if u["cold"]}
    assert len(users) == 200 and 0 < len(cold) < 200
    assert cold.isdisjoint(e["user_id"] for e in _rows(out / "events.jsonl"))
    assert {e["user_id"] for e in _rows(out / "truth" / "heldout_events.jsonl")} <= cold
    assert stats["cold_users_with_events"] == 0

    # Queries are real words: every non-navigational query occurs in a clip of its interest's category.
    interests = {u["user_id"]: [i["topic"] for i in u["interests"]] for u in users}
    text_by_topic: dict[str, str] = {}
    for c in catalog:
        text = " ".join([c["title"], *c["tags"]]).lower()
        text_by_topic[c["topics"][0]] = text_by_topic.get(c["topics"][0], "") + "\n" + text
    for q in _rows(out / "truth" / "queries.jsonl"):
        assert q["pattern"] in {"title_words", "creator_tag", "navigational"}
        if q["interest"] is None:
            assert q["pattern"] == "navigational"
            continue
        words = q["query"].split()
        haystack = text_by_topic[interests[q["user_id"]][q["interest"]]]
        assert all(w in haystack for w in words), q

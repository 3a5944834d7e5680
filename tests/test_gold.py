"""The hand-curated gold set: size, balance, splits, validity and the hard cases."""

from __future__ import annotations

from collections import Counter

from clipfeed.taxonomy import Taxonomy
from clipfeed.world import load_gold, shipped_gold_path


def test_gold_set_is_balanced_and_valid() -> None:
    tax = Taxonomy.load()
    rows = load_gold(shipped_gold_path(), tax)
    assert len(rows) >= 400
    langs = Counter(r.lang for r in rows)
    assert langs["ko"] >= 0.4 * len(rows) and langs["en"] >= 0.4 * len(rows)
    patterns = Counter(r.pattern for r in rows)
    assert len(patterns) >= 6 and min(patterns.values()) >= 30
    assert max(patterns.values()) <= 3 * min(patterns.values())  # no pattern dominates
    for pattern in patterns:
        splits = Counter(r.split for r in rows if r.pattern == pattern)
        assert splits["train"] and splits["dev"] and splits["test"], (pattern, splits)
    keys = [(r.query, tuple(r.docs)) for r in rows]
    assert len(keys) == len(set(keys))
    for r in rows:
        worthy = all(tax.is_clip_worthy(t) for t in r.topics)
        assert bool(r.tags) == worthy, r  # no-clip-interest rows have no tags, and only those


def test_gold_set_holds_the_hard_cases() -> None:
    rows = load_gold(shipped_gold_path(), Taxonomy.load())
    travel = [r for r in rows if r.pattern == "entity_travel"]
    assert travel and all(r.topics[0] in {"655", "663", "664", "654"} for r in travel)
    # the same ambiguous query gets different topics depending on the clicked documents
    by_query: dict[str, set[str]] = {}
    for r in rows:
        by_query.setdefault(r.query, set()).add(r.topics[0])
    assert any(len(ts) > 1 for ts in by_query.values())
    sports = {r.topics[0] for r in rows if r.pattern == "sibling_sports"}
    assert {"533", "545"} <= sports

from __future__ import annotations

import pytest

from clipfeed.taxonomy import Taxonomy
from recommender.metrics import (
    average_precision_at_k,
    bootstrap_ci,
    coverage,
    intra_list_diversity,
    ndcg_at_k,
    novelty,
    recall_at_k,
    topic_leak,
)


def test_ranking_metrics() -> None:
    gains = {"a": 3.0, "b": 2.0, "c": 1.0}
    assert ndcg_at_k(["a", "b", "c"], gains) == pytest.approx(1.0)
    assert ndcg_at_k(["c", "b", "a"], gains) < 1.0
    assert ndcg_at_k(["x", "y"], gains) == 0.0
    assert ndcg_at_k(["a"], {}) == 0.0
    assert average_precision_at_k(["a", "x", "b"], {"a", "b"}) == pytest.approx((1 + 2 / 3) / 2)
    assert recall_at_k(["a", "x"], {"a", "b"}, 50) == 0.5 and recall_at_k(["a"], set(), 50) == 0.0


def test_feed_metrics() -> None:
    topic = {"a": "533", "b": "533", "c": "545", "d": "655"}.__getitem__
    assert intra_list_diversity(["a", "b"], topic) == 0.0
    assert intra_list_diversity(["a", "c", "d"], topic) == 1.0
    assert coverage([["a", "b"], ["b", "c"]], 10) == 0.3
    assert novelty(["a"], {"a": 0.25}) == pytest.approx(2.0)
    lo, hi = bootstrap_ci([1.0, 2.0, 3.0, 4.0])
    assert 1.0 <= lo < 2.5 < hi <= 4.0


def test_topic_leak() -> None:
    tax = Taxonomy.load()
    topic = {
        "soccer": "533",
        "baseball": "545",
        "arg_soccer": "533",
        "arg_travel": "655",
        "arg_prep": "663",
        "jp_prep": "663",
        "cats": "424",
    }.__getitem__
    entity = {"arg_soccer": "argentina", "arg_travel": "argentina", "arg_prep": "argentina", "jp_prep": "japan"}.get
    soccer_fan = [("533", None)]
    assert topic_leak(["soccer", "baseball"], topic, entity, soccer_fan, tax.tier1_of) == 0.5
    assert topic_leak(["soccer", "cats"], topic, entity, soccer_fan, tax.tier1_of) == 0.0  # off-topic, not a leak
    planner = [("655", "argentina")]
    feed = ["arg_travel", "arg_soccer", "arg_prep", "jp_prep"]
    # Argentine football leaks (entity in another topic); Japan visa leaks (sibling); Argentina prep does not.
    assert topic_leak(feed, topic, entity, planner, tax.tier1_of) == 0.5

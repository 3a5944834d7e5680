"""Offline ranking and feed metrics.

>>> round(ndcg_at_k(["a", "b"], {"b": 3.0}, 10), 3)
0.631
>>> average_precision_at_k(["a", "b", "c"], {"a", "c"}, 10)
0.8333333333333333
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np


def ndcg_at_k(ranked: Sequence[str], gains: Mapping[str, float], k: int = 10) -> float:
    """Normalised DCG with graded gains (2^g - 1) over the ideal ordering of all judged items."""
    dcg = sum((2 ** gains.get(c, 0.0) - 1) / math.log2(r + 2) for r, c in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(r + 2) for r, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def average_precision_at_k(ranked: Sequence[str], relevant: set[str], k: int = 10) -> float:
    hits = 0
    total = 0.0
    for r, c in enumerate(ranked[:k]):
        if c in relevant:
            hits += 1
            total += hits / (r + 1)
    denom = min(len(relevant), k)
    return total / denom if denom else 0.0


def recall_at_k(ranked: Sequence[str], relevant: set[str], k: int = 50) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0


def coverage(feeds: Sequence[Sequence[str]], catalog_size: int) -> float:
    """Share of the catalog that appears in at least one feed."""
    return len({c for f in feeds for c in f}) / catalog_size if catalog_size else 0.0


def intra_list_diversity(feed: Sequence[str], topic_of: Callable[[str], str]) -> float:
    """Share of item pairs in the feed whose topics differ."""
    topics = [topic_of(c) for c in feed]
    n = len(topics)
    if n < 2:
        return 0.0
    same = sum(1 for a in range(n) for b in range(a + 1, n) if topics[a] == topics[b])
    return 1.0 - same / (n * (n - 1) / 2)


def novelty(feed: Sequence[str], popularity: Mapping[str, float]) -> float:
    """Mean self-information (-log2 of the popularity share) of the feed's items."""
    vals = [-math.log2(max(popularity.get(c, 0.0), 1e-9)) for c in feed]
    return sum(vals) / len(vals) if vals else 0.0


def topic_leak(
    feed: Sequence[str],
    topic_of: Callable[[str], str],
    entity_of: Callable[[str], str | None],
    interests: Sequence[tuple[str, str | None]],
    tier1: Callable[[str], str],
) -> float:
    """Share of feed items on a sibling topic of an interest (same tier 1, other tier 2, without the
    interest's entity) or on an interest's entity in another topic (Argentine football for an
    Argentina-travel planner)."""
    if not feed:
        return 0.0
    topics = {t for t, _ in interests}
    leaks = 0
    for c in feed:
        t, e = topic_of(c), entity_of(c)
        if t in topics:
            continue
        for it_topic, it_entity in interests:
            same_t1 = tier1(t) == tier1(it_topic)
            if same_t1 and not (it_entity is not None and e == it_entity):
                leaks += 1
                break
            if not same_t1 and it_entity is not None and e == it_entity:
                leaks += 1
                break
    return leaks / len(feed)


def bootstrap_ci(values: Sequence[float], n: int = 1000, seed: int = 0, alpha: float = 0.05) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean, resampling users."""
    arr = np.asarray(values, dtype=float)
    if len(arr) == 0:
        return (0.0, 0.0)
    rng = np.random.default_rng(seed)
    means = arr[rng.integers(0, len(arr), size=(n, len(arr)))].mean(axis=1)
    return float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))

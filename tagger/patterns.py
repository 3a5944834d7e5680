"""Query-pattern keys and per-pattern capping, so a few head templates do not dominate training data.

Search logs are skewed: "<country> 비자" may be a large share of all queries. A student trained on
such a log learns the template rather than the intents, so the labeling job keys every query by its
*pattern* (frequent "template words" kept, everything else replaced by ``*``) and keeps at most a
fixed number, or share, of queries per pattern.

>>> m = PatternModel.fit(["볼리비아 비자", "칠레 비자", "페루 비자", "칠레 맛집"], min_count=3)
>>> m.key("볼리비아 비자"), m.key("칠레  맛집"), m.key("")
('* 비자', '*x2', '*x0')
>>> kept, stats = cap_patterns(["a", "b", "c", "d"], ["* 비자", "* 비자", "* 비자", "*x2"], cap=1)
>>> len(kept), stats.largest_share_before, stats.largest_share_after
(2, 0.75, 0.5)
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from clipfeed.text import normalize, tokens

WILDCARD = "*"


@dataclass(frozen=True)
class PatternModel:
    """The template words of a query log; ``key`` maps a query onto its pattern."""

    template_words: frozenset[str]
    n_queries: int = 0  # distinct queries it was fitted on (for the record)

    @classmethod
    def fit(cls, queries: Sequence[str], min_share: float = 0.005, min_count: int = 5) -> PatternModel:
        """Tokens in at least ``min_share`` of the distinct queries (and at least ``min_count``) are template words.

        Document frequency over *distinct* queries: a token that is frequent only because one query
        is repeated a million times says nothing about templates.
        """
        if not 0.0 <= min_share <= 1.0:
            raise ValueError(f"min_share must be in [0, 1], got {min_share}")
        if min_count < 1:
            raise ValueError(f"min_count must be >= 1, got {min_count}")
        distinct = dict.fromkeys(normalize(q) for q in queries)
        df: Counter[str] = Counter()
        for q in distinct:
            df.update(set(tokens(q)))
        threshold = max(min_count, math.ceil(min_share * len(distinct)))
        return cls(frozenset(t for t, n in df.items() if n >= threshold), len(distinct))

    def key(self, query: str) -> str:
        """Template words kept, runs of other tokens collapsed to one ``*``.

        A query without any template word becomes ``*x<number of tokens>``: a single ``*`` bucket
        would lump all rare queries together and the cap would then throw most of the tail away.
        """
        toks = tokens(query)
        if not any(t in self.template_words for t in toks):
            return f"{WILDCARD}x{len(toks)}"
        out: list[str] = []
        for t in toks:
            word = t if t in self.template_words else WILDCARD
            if word == WILDCARD and out and out[-1] == WILDCARD:
                continue
            out.append(word)
        return " ".join(out)


@dataclass
class CapStats:
    """How capping changed the pattern distribution: sizes of the top patterns, largest share."""

    total_before: int = 0
    total_after: int = 0
    largest_before: str = ""  # the pattern that was largest before capping
    largest_share_before: float = 0.0
    largest_share_after: float = 0.0  # share of the largest pattern after capping (any pattern)
    top: dict[str, tuple[int, int]] = field(default_factory=dict)  # pattern -> (before, after), largest first

    def to_dict(self) -> dict[str, object]:
        return {
            "total_before": self.total_before,
            "total_after": self.total_after,
            "largest_before": self.largest_before,
            "largest_share_before": round(self.largest_share_before, 4),
            "largest_share_after": round(self.largest_share_after, 4),
            "top": [{"pattern": p, "before": b, "after": a} for p, (b, a) in self.top.items()],
        }


def _share_limit(sizes: Sequence[int], max_share: float) -> int:
    """The largest per-pattern limit L with min(n, L) <= max_share * sum(min(n_q, L)) for every pattern.

    The slack ``max_share * S(L) - L`` is concave in L, so the feasible limits form an interval
    starting at 1 and a binary search finds its end. If even L = 1 is infeasible (fewer than
    1 / max_share patterns), the share cannot be met; patterns are then evened out at the smallest
    pattern's size, which already gives the lowest possible largest share, 1 / number of patterns.
    """

    def ok(limit: int) -> bool:
        return min(max(sizes), limit) <= max_share * sum(min(n, limit) for n in sizes) + 1e-9

    if not ok(1):
        return min(sizes)
    lo, hi = 1, max(sizes)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo


def cap_patterns(
    items: Sequence[object],
    keys: Sequence[str],
    cap: int | None = None,
    max_share: float | None = None,
    seed: int = 0,
    *,
    counts: Sequence[int] | None = None,
    top: int = 10,
) -> tuple[list[int], CapStats]:
    """Indices (ascending) of the items kept: at most ``cap`` per pattern key, and no pattern above ``max_share``.

    Within a pattern, items that occur more often in the raw log (``counts``) are kept first; ties
    are broken by a shuffle seeded with ``seed``, so the same inputs and seed keep the same items.
    ``max_share`` is a share of the *kept* total (the limit is solved for, not taken from the
    total before capping, which would leave the head pattern above the share).
    """
    n = len(items)
    if len(keys) != n or (counts is not None and len(counts) != n):
        raise ValueError(f"items, keys and counts must have the same length ({n}, {len(keys)}, ...)")
    if cap is not None and cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    if max_share is not None and not 0.0 < max_share <= 1.0:
        raise ValueError(f"max_share must be in (0, 1], got {max_share}")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        groups[k].append(i)
    limits = {k: len(ix) if cap is None else min(len(ix), cap) for k, ix in groups.items()}
    if max_share is not None and limits:
        share_cap = _share_limit(list(limits.values()), max_share)
        limits = {k: min(v, share_cap) for k, v in limits.items()}

    order = list(range(n))
    random.Random(seed).shuffle(order)
    rank = {i: r for r, i in enumerate(order)}
    weight = counts if counts is not None else [1] * n
    kept: list[int] = []
    for k, ix in groups.items():
        if limits[k] >= len(ix):
            kept.extend(ix)
        else:
            kept.extend(sorted(ix, key=lambda i: (-weight[i], rank[i]))[: limits[k]])
    kept.sort()
    return kept, _stats(groups, limits, n, len(kept), top)


def _stats(groups: dict[str, list[int]], limits: dict[str, int], before: int, after: int, top: int) -> CapStats:
    ranked = sorted(groups, key=lambda k: (-len(groups[k]), k))
    if not ranked:
        return CapStats()
    largest = ranked[0]
    return CapStats(
        total_before=before,
        total_after=after,
        largest_before=largest,
        largest_share_before=len(groups[largest]) / before,
        largest_share_after=max(limits.values()) / after if after else 0.0,
        top={k: (len(groups[k]), limits[k]) for k in ranked[:top]},
    )

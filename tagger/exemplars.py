"""Few-shot exemplars for each query, chosen from the gold set: similar, but not all alike.

A small teacher copies its exemplars closely, so they must (a) resemble the query (character
n-gram similarity works across Korean and English without a tokenizer) and (b) show different
answers (maximal marginal relevance over the exemplars' tag words and patterns), including, when
the query looks navigational, an exemplar whose answer is ``NONE``.

>>> from clipfeed.records import GoldRow
>>> rows = [GoldRow(query="볼리비아 비자", tags=["볼리비아 여행"], topics=["655"]),
...         GoldRow(query="여권 재발급", tags=[], topics=["CF101"]),
...         GoldRow(query="손흥민 골", tags=["손흥민"], topics=["533"])]
>>> [r.query for r in ExemplarSelector(rows).select("칠레 비자 발급", (), k=2)]
['볼리비아 비자', '여권 재발급']
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from clipfeed.records import GoldRow
from clipfeed.text import normalize, tokens


def char_ngrams(text: str, n: tuple[int, ...] = (2, 3)) -> set[str]:
    grams: set[str] = set()
    for word in tokens(text):
        padded = f" {word} "
        for size in n:
            grams.update(padded[i : i + size] for i in range(max(1, len(padded) - size + 1)))
    return grams


def _cos(a: set[str], b: set[str]) -> float:
    return len(a & b) / math.sqrt(len(a) * len(b)) if a and b else 0.0


class ExemplarSelector:
    """Picks ``k`` gold rows for a query by similarity with a diversity penalty (MMR)."""

    def __init__(self, rows: Sequence[GoldRow], diversity: float = 0.5) -> None:
        self.rows = list(rows)
        self.diversity = diversity
        self.grams = [char_ngrams(r.query + " " + " ".join(r.docs)) for r in self.rows]
        self.tag_words = [set(tokens(" ".join(r.tags))) for r in self.rows]

    def select(self, query: str, docs: Sequence[str], k: int, exclude: str | None = None) -> list[GoldRow]:
        """The exemplars for one input, most similar first; ``exclude`` drops a row with that query."""
        if k <= 0 or not self.rows:
            return []
        q = char_ngrams(query + " " + " ".join(docs))
        skip = normalize(exclude) if exclude else None
        sims = [(_cos(q, g), i) for i, g in enumerate(self.grams) if normalize(self.rows[i].query) != skip]
        pool = sorted(sims, reverse=True)[: max(4 * k, 12)]
        chosen: list[int] = []
        while pool and len(chosen) < k:
            best, best_score = 0, -math.inf
            for j, (sim, i) in enumerate(pool):
                penalty = max((self._alike(i, c) for c in chosen), default=0.0)
                score = sim - self.diversity * penalty
                if score > best_score:
                    best, best_score = j, score
            chosen.append(pool.pop(best)[1])
        return [self.rows[i] for i in chosen]

    def _alike(self, a: int, b: int) -> float:
        """How much two exemplars teach the same answer: shared tag words, same pattern, both NONE."""
        ta, tb = self.tag_words[a], self.tag_words[b]
        if not ta and not tb:
            return 1.0
        tags = len(ta & tb) / len(ta | tb) if ta | tb else 0.0
        same_pattern = 0.5 if self.rows[a].pattern and self.rows[a].pattern == self.rows[b].pattern else 0.0
        return max(tags, same_pattern)

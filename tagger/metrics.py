"""Tag precision / recall / F1, exact and fuzzy, with "no tags" counted as an answer.

A navigational query whose gold answer is no tags is right when the model also says ``NONE``: the
empty answer is scored as the single tag ``∅``. Fuzzy matching forgives spacing, case, and one
tag containing the other ("아르헨티나 여행" vs "아르헨티나 여행 브이로그") or sharing half its words.

>>> prf([["아르헨티나 여행"]], [["아르헨티나여행", "축구"]], fuzzy=True)["f1"]
0.6667
>>> prf([[]], [[]])["f1"]
1.0
"""

from __future__ import annotations

from collections.abc import Sequence

from clipfeed.text import normalize, tokens

EMPTY = "∅"


def _key(tag: str) -> str:
    return normalize(tag).replace(" ", "")


def fuzzy_equal(a: str, b: str) -> bool:
    ka, kb = _key(a), _key(b)
    if ka == kb:
        return True
    if min(len(ka), len(kb)) >= 2 and (ka in kb or kb in ka):
        return True
    ta, tb = set(tokens(a)), set(tokens(b))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) >= 0.5


def matches(gold: Sequence[str], pred: Sequence[str], fuzzy: bool) -> int:
    """Greedy one-to-one matches between two tag lists."""
    g = list(gold) or [EMPTY]
    p = list(pred) or [EMPTY]
    used: set[int] = set()
    hits = 0
    for t in p:
        for j, u in enumerate(g):
            if j in used:
                continue
            same = (t == EMPTY) == (u == EMPTY) and (
                t == u == EMPTY or (fuzzy_equal(t, u) if fuzzy else _key(t) == _key(u))
            )
            if same:
                used.add(j)
                hits += 1
                break
    return hits


def prf(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], fuzzy: bool = False) -> dict[str, float]:
    """Micro-averaged precision, recall and F1 over rows (rounded to 4 places)."""
    tp = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        tp += matches(g, p, fuzzy)
        n_pred += max(1, len(p))
        n_gold += max(1, len(g))
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def agreement(a: Sequence[Sequence[str]], b: Sequence[Sequence[str]]) -> float:
    """Fuzzy F1 of one model's tags against another's (how often the student says what the teacher says)."""
    return prf(a, b, fuzzy=True)["f1"]

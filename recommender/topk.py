"""Top-k selection that agrees with a full stable sort, in O(n) instead of O(n log n)."""

from __future__ import annotations

import numpy as np


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """The positions of the ``k`` highest ``scores``, best first, ties by position: exactly
    ``np.argsort(-scores, kind="stable")[:k]``. A feed ranks a few dozen of thousands of clips per
    source, so a partition plus a sort of the few that can win is 5-10x cheaper than a full sort.

    >>> top_k(np.array([0.1, 0.5, 0.5, 0.9, 0.0]), 3).tolist()
    [3, 1, 2]
    """
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if k >= n or n <= 64:
        return np.argsort(-scores, kind="stable")[:k]
    threshold = scores[np.argpartition(-scores, k - 1)[k - 1]]
    # every clip at or above the k-th score (ties included), in position order, then sorted stably
    contenders = np.flatnonzero(scores >= threshold)
    out: np.ndarray = contenders[np.argsort(-scores[contenders], kind="stable")][:k]
    return out

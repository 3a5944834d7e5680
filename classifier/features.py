"""Hashed sub-word features for short Korean and English texts (fastText-style).

Word unigrams and bigrams plus character n-grams of each word (with boundary marks) are hashed
into a fixed number of buckets, so the model needs no vocabulary and handles any script: Korean
particles ("손흥민이", "손흥민의") share their stem's n-grams, and unseen words still land on known
n-grams. The query a tag came from contributes features in its own namespace.

>>> ids = featurize("손흥민 골", "", n_buckets=1024)
>>> len(ids) > 5 and all(0 <= i < 1024 for i in ids)
True
"""

from __future__ import annotations

import itertools
import zlib

from clipfeed.text import normalize, tokens

__all__ = ["featurize", "normalize", "tokens"]


def _hash(feature: str, n_buckets: int) -> int:
    # crc32 is stable across processes (unlike hash()), fast, and good enough for bucketing.
    return zlib.crc32(feature.encode("utf-8")) % n_buckets


def _word_features(words: list[str], prefix: str, min_n: int, max_n: int) -> list[str]:
    feats: list[str] = []
    for w in words:
        feats.append(f"{prefix}w:{w}")
        marked = f"<{w}>"
        for n in range(min_n, max_n + 1):
            feats.extend(f"{prefix}c:{marked[i : i + n]}" for i in range(len(marked) - n + 1))
    feats.extend(f"{prefix}b:{a} {b}" for a, b in itertools.pairwise(words))
    return feats


def featurize(text: str, query: str = "", *, n_buckets: int, min_n: int = 2, max_n: int = 4) -> list[int]:
    """Bucket ids for a tag text and (optionally) the query it came from."""
    feats = _word_features(tokens(text), "", min_n, max_n)
    if query:
        feats.extend(_word_features(tokens(query), "q", min_n, max_n))
    return [_hash(f, n_buckets) for f in feats] or [_hash("<empty>", n_buckets)]

"""The catalog as arrays and inverted indexes (topic, token, creator) plus clip text embeddings."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

import numpy as np

from clipfeed.errors import ClipfeedError
from clipfeed.protocols import TextEncoder
from clipfeed.records import Clip, Event
from clipfeed.taxonomy import Taxonomy
from clipfeed.text import hangul_share, tokens
from recommender.entities import EntityIndex
from recommender.signals import TOPIC_SIGNALS, TopicAffinity, UserContext

if TYPE_CHECKING:
    from recommender.ann import ClipVectorIndex


@dataclass
class ClipStats:
    impressions: int = 0
    watches: int = 0
    meaningful: int = 0
    skips: int = 0


@dataclass(frozen=True)
class OverlapWeights:
    """Word sets as ``token_match`` weighs them: word -> column, (words x sets) idf, each set's norm."""

    words: dict[str, int]
    weights: np.ndarray
    norms: np.ndarray
    n_sets: int
    word_idf: np.ndarray  # each word's idf, by column (what ``token_match``'s clip-side coverage adds)


class CatalogIndex:
    """Read-only view of the catalog that candidate generation and features need."""

    def __init__(
        self, clips: Sequence[Clip], taxonomy: Taxonomy, encoder: TextEncoder | None = None, now: datetime | None = None
    ) -> None:
        if not clips:
            raise ClipfeedError("the catalog is empty: nothing to recommend")
        self.clips = list(clips)
        self.taxonomy = taxonomy
        self.ids = [c.clip_id for c in self.clips]
        self.pos = {cid: i for i, cid in enumerate(self.ids)}
        self.topic = [self._tier2(c.topics[0]) for c in self.clips]
        self.tier1 = [taxonomy.tier1_of(t) if t in taxonomy else t for t in self.topic]
        self.creator = [c.creator_id for c in self.clips]
        self.hangul = np.array([hangul_share(c.title) for c in self.clips], dtype=np.float32)
        views = np.array([float(c.views or 0) for c in self.clips])
        self.log_views = np.log1p(views).astype(np.float32)
        self.popularity_rank = np.argsort(-views, kind="stable")
        ref = now or max(c.published_at for c in self.clips)
        self.age_days = np.array(
            [max(0.0, (ref - c.published_at).total_seconds() / 86400) for c in self.clips], dtype=np.float32
        )
        self.duration = np.array([c.duration_s for c in self.clips], dtype=np.float32)
        self.quality = np.full(len(self.clips), 0.5, dtype=np.float32)  # smoothed watch rate; see fit_stats
        self.by_topic: dict[str, list[int]] = defaultdict(list)
        self.by_creator: dict[str, list[int]] = defaultdict(list)
        self.by_token: dict[str, list[int]] = defaultdict(list)
        self.clip_tokens: list[set[str]] = []
        for i, c in enumerate(self.clips):
            self.by_topic[self.topic[i]].append(i)
            self.by_creator[c.creator_id].append(i)
            toks = set(tokens(c.title)) | {t for tag in c.tags for t in tokens(tag)}
            self.clip_tokens.append(toks)
            for t in toks:
                self.by_token[t].append(i)
        for lists in (self.by_topic, self.by_creator):
            for k in lists:
                lists[k].sort(key=lambda i: -self.log_views[i])
        # The same lists as arrays, for candidate generation (it filters and takes whole lists per feed).
        self.topic_clips = {t: np.asarray(ix, dtype=np.int64) for t, ix in self.by_topic.items()}
        self.creator_clips = {c: np.asarray(ix, dtype=np.int64) for c, ix in self.by_creator.items()}
        self.token_clips = {t: np.asarray(ix, dtype=np.int64) for t, ix in self.by_token.items()}
        # topics and creators as codes, so that per-candidate lookups are array gathers
        self.topic_names = list(self.by_topic)
        self.topic_tier1 = [taxonomy.tier1_of(t) if t in taxonomy else t for t in self.topic_names]
        self.topic_code = {t: k for k, t in enumerate(self.topic_names)}
        self.topic_codes = np.array([self.topic_code[t] for t in self.topic], dtype=np.int64)
        self.tier1_code = {t: k for k, t in enumerate(dict.fromkeys(self.tier1))}
        self.tier1_codes = np.array([self.tier1_code[t] for t in self.tier1], dtype=np.int64)
        self.creator_code = {c: k for k, c in enumerate(self.by_creator)}
        self.creator_codes = np.array([self.creator_code[c] for c in self.creator], dtype=np.int64)
        self._guard_masks: dict[frozenset[str], np.ndarray] = {}
        self.guards: dict[frozenset[str], frozenset[str]] = {}  # wanted topics -> sibling guard (cache)
        # Each catalog topic's tier 1 and ancestors, computed once (the sibling guard reads them per feed).
        self.topic_lineage: dict[str, tuple[str, frozenset[str]]] = {
            t: (taxonomy.tier1_of(t), frozenset(taxonomy.ancestors(t))) for t in self.by_topic if t in taxonomy
        }
        n = len(self.clips)
        self.idf = {t: math.log((n + 1) / (len(ix) + 1)) + 1.0 for t, ix in self.by_token.items()}
        # each clip's own words' idf mass: the denominator of the clip-side coverage (``token_match``)
        self.idf_total = np.array([sum(self.idf[t] for t in sorted(toks)) for toks in self.clip_tokens])
        self.entities = EntityIndex(self.clips)
        self.has_entity = np.asarray(self.entities.clip_entities.sum(axis=1)).ravel() > 0
        by_entity = self.entities.clip_entities.tocsc()
        # the topics (catalog codes, sorted) each entity has clips in
        self.entity_topics = [np.unique(self.topic_codes[by_entity[:, j].indices]) for j in range(len(self.entities))]
        self._aligned: dict[str, str] = {}
        self.encoder = encoder
        self.vectors: np.ndarray | None = None
        if encoder is not None:
            self.vectors = encoder.encode([f"{c.title} {' '.join(c.tags)}" for c in self.clips])
        # approximate search over ``vectors`` for the embedding candidates (None: exact search); see attach_ann
        self.ann: ClipVectorIndex | None = None

    def attach_ann(self, index: ClipVectorIndex) -> None:
        """Serve the embedding candidates from ``index`` (built from this catalog's text vectors by
        ``clipfeed ranker index``) instead of a scan of every clip; it must hold exactly these clips."""
        if self.vectors is None:
            raise ClipfeedError("the catalog has no text vectors (no encoder): an ANN index has nothing to replace")
        if index.dim != self.vectors.shape[1]:
            raise ClipfeedError(
                f"ANN index dimension mismatch: the index holds {index.dim}-d vectors, "
                f"the catalog's encoder gives {self.vectors.shape[1]}-d (rebuild it with `clipfeed ranker index`)"
            )
        if index.cfg.space == "l2":
            raise ClipfeedError("ANN index space l2: the embedding candidates need a similarity (build it with ip)")
        ids = index.ids
        if len(ids) != len(self.ids) or set(ids) != set(self.ids):
            missing = len(set(self.ids) - set(ids))
            extra = len(set(ids) - set(self.ids))
            raise ClipfeedError(
                f"ANN index does not match the catalog: {missing} catalog clips missing from it, "
                f"{extra} clips not in the catalog (rebuild it with `clipfeed ranker index`)"
            )
        # the same ids from another encoder (or another world's text) would pass the checks above
        sample = self.ids[:: max(1, len(self.ids) // 16)][:16]
        rows = [self.pos[c] for c in sample]
        if not np.allclose(index.vectors_of(sample), self.vectors[rows], atol=1e-4):
            raise ClipfeedError(
                "ANN index vectors differ from the catalog's text vectors (built with another topic model?): "
                "rebuild it with `clipfeed ranker index`"
            )
        self.ann = index

    def align(self, topic: str) -> str:
        """The catalog's own topic for a topic of the topic model: itself when clips carry it, else its
        nearest ancestor that clips carry (a model at tier 2 meets a catalog labelled at tier 1: Soccer
        -> Sports), else itself."""
        hit = self._aligned.get(topic)
        if hit is None:
            hit = topic
            if topic not in self.by_topic and topic in self.taxonomy:
                hit = next((a for a in self.taxonomy.ancestors(topic) if a in self.by_topic), topic)
            self._aligned[topic] = hit
        return hit

    def view(self, ctx: UserContext) -> UserContext:
        """The context with its topics (and its tags' topics) expressed in this catalog's topics."""
        if all(self.align(t) == t for t in ctx.topics) and all(
            self.align(a.topic) == a.topic for a in ctx.tags.values() if a.topic
        ):
            return ctx
        topics: dict[str, TopicAffinity] = {}
        for t, a in ctx.topics.items():
            merged = topics.setdefault(self.align(t), TopicAffinity())
            for name in TOPIC_SIGNALS:
                setattr(merged, name, getattr(merged, name) + getattr(a, name))
        tags = {k: replace(a, topic=self.align(a.topic) if a.topic else a.topic) for k, a in ctx.tags.items()}
        return replace(ctx, topics=topics, tags=tags)

    def _tier2(self, topic: str) -> str:
        if topic in self.taxonomy:
            return self.taxonomy.tier2_of(topic) or topic
        return topic

    def fit_stats(self, events: Iterable[Event], meaningful_ratio: float = 0.5) -> None:
        """Clip quality from logged reactions: a smoothed meaningful-watch rate per impression."""
        stats: dict[int, ClipStats] = defaultdict(ClipStats)
        for e in events:
            i = self.pos.get(e.clip_id or "")
            if i is None:
                continue
            s = stats[i]
            if e.type.value == "impression":
                s.impressions += 1
            elif e.type.value == "watch":
                s.watches += 1
                s.meaningful += int((e.watch_ratio or 0) >= meaningful_ratio)
            elif e.type.value == "skip":
                s.skips += 1
        total_imp = sum(s.impressions for s in stats.values())
        prior = sum(s.meaningful for s in stats.values()) / total_imp if total_imp else 0.2
        for i, s in stats.items():
            self.quality[i] = (s.meaningful + 5 * prior) / (s.impressions + 5)
        for i in range(len(self.clips)):
            if i not in stats:
                self.quality[i] = prior

    def keyword_scores(self, words: Iterable[str]) -> dict[int, float]:
        """idf-weighted token overlap between words and clip text (the raw-keyword matcher)."""
        scores: dict[int, float] = defaultdict(float)
        for w in dict.fromkeys(words):  # first-seen order: the same sums and ties whatever the hash seed
            idf = self.idf.get(w)
            if idf is None:
                continue
            for i in self.by_token[w]:
                scores[i] += idf
        return scores

    def keyword_ranked(self, words: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """``keyword_scores`` as arrays, best first: (clip indices, scores). Ties keep the order in
        which the dict version first meets the clips, so both rank the same clips the same way."""
        known = [w for w in dict.fromkeys(words) if w in self.idf]
        if not known:
            return np.zeros(0, dtype=np.int64), np.zeros(0)
        n = len(self.ids)
        # catalog-sized but calloc'd (np.zeros): only the pages of hit clips are touched
        scores, hit, first_word = np.zeros(n), np.zeros(n, dtype=bool), np.zeros(n, dtype=np.int64)
        for k in range(len(known) - 1, -1, -1):  # backwards: each clip keeps its first word
            first_word[self.token_clips[known[k]]] = k
        for w in known:  # forwards: each clip's sum is added word by word, as keyword_scores does
            clips = self.token_clips[w]
            scores[clips] += self.idf[w]
            hit[clips] = True
        clips = np.flatnonzero(hit)
        # the dict meets clips word by word, each word's clips in index order (token lists are)
        order = np.lexsort((clips, first_word[clips], -scores[clips]))
        return clips[order], scores[clips][order]

    def allowed(self, guard: set[str], seen: np.ndarray) -> np.ndarray:
        """A mask over clips: False for clips of a ``guard`` topic and for the ``seen`` positions.
        The guard part is cached per guard set (a handful of distinct sets serve most users)."""
        key = frozenset(guard)
        base = self._guard_masks.get(key)
        if base is None:
            blocked = np.zeros(len(self.topic_code), dtype=bool)
            blocked[[self.topic_code[t] for t in key if t in self.topic_code]] = True
            base = ~blocked[self.topic_codes]
            if len(self._guard_masks) >= 256:
                self._guard_masks.clear()
            self._guard_masks[key] = base
        out = base.copy()
        out[seen] = False
        return out

    def overlap_weights(self, word_sets: list[set[str]]) -> OverlapWeights:
        """The word-set side of ``token_match``: the known words, each set's idf weights and norm
        (the same for every clip, so computed once per feed)."""
        words: dict[str, int] = {}
        norms = np.zeros(len(word_sets), dtype=np.float32)
        cells: list[tuple[int, int, float]] = []
        for j, ws in enumerate(word_sets):
            for w in sorted(ws):  # a fixed order: float sums must not depend on the hash seed
                idf = self.idf.get(w)
                if idf is not None:
                    cells.append((words.setdefault(w, len(words)), j, idf))
                    norms[j] += idf
        weights = np.zeros((len(words), len(word_sets)), dtype=np.float32)
        word_idf = np.zeros(len(words), dtype=np.float32)
        for k, j, idf in cells:
            weights[k, j] += idf
            word_idf[k] = idf
        return OverlapWeights(words, weights, norms, len(word_sets), word_idf)

    def token_match(
        self, idx: list[int], word_sets: list[set[str]], weights: OverlapWeights | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(overlap, coverage) of the clips ``idx`` with the word sets (``weights``:
        ``overlap_weights(word_sets)`` when the caller has it). The **overlap** (len(idx) x
        len(word_sets)) is the idf-weighted share of each word set found in each clip's text; the
        **coverage** (len(idx)) is the idf share of the clip's own words that any of the word sets
        uses. The overlap looks from the tags' side and cannot tell "태국 여행"
        from "여행 꿀팁" for a user who searched "베트남 여행" (both hold 여행); the coverage looks
        from the clip's side, and a clip about another entity leaves its entity word uncovered."""
        ow = weights if weights is not None else self.overlap_weights(word_sets)
        words = ow.words
        if not words or not len(idx):
            return np.zeros((len(idx), ow.n_sets), dtype=np.float32), np.zeros(len(idx), dtype=np.float32)
        # (candidates x words) incidence from each word's clip list, then one product with the
        # (words x sets) idf weights. ``row_of`` maps a clip to its candidate row + 1 (0: not a
        # candidate); np.zeros is calloc, so only the pages the word lists touch cost anything.
        at = np.asarray(idx, dtype=np.int64)
        row_of = np.zeros(len(self.ids), dtype=np.int64)
        row_of[at] = np.arange(1, len(at) + 1)
        if (row_of[at] != np.arange(1, len(at) + 1)).any():  # a clip twice in idx: once, then spread
            uniq, back = np.unique(at, return_inverse=True)
            overlap, cover = self.token_match(uniq.tolist(), word_sets, ow)
            return overlap[back], cover[back]
        incidence = np.zeros((len(idx) + 1, len(words)), dtype=np.float32)
        for w, k in words.items():
            incidence[row_of[self.token_clips[w]], k] = 1.0
        result: np.ndarray = (incidence[1:] @ ow.weights) / np.maximum(ow.norms, 1e-9)
        coverage = ((incidence[1:] @ ow.word_idf) / np.maximum(self.idf_total[at], 1e-9)).astype(np.float32)
        return result, coverage

    def similar(self, vectors: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray]:
        """(clip indices, best cosine) of the ``top`` clips closest to any of ``vectors``."""
        if self.vectors is None or len(vectors) == 0 or top <= 0:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        sims = (self.vectors @ vectors.T).max(axis=1)
        top = min(top, len(sims))
        idx = np.argpartition(-sims, top - 1)[:top]
        return idx, sims[idx]

"""``TopicFilter``: keep or drop each intent tag, with the reason.

Rules, in order: unreadable text is dropped as unknown; a tag whose best topic is on the
not-clip-worthy list (utility intents, sensitive topics, ...) is dropped; a tag whose calibrated
confidence is below ``min_confidence`` is dropped; otherwise it is kept at tier-2 granularity (so
Soccer and Baseball stay apart). Tags that normalise to the same text are merged first.
"""

from __future__ import annotations

from collections.abc import Sequence

from classifier.config import FilterConfig
from classifier.features import normalize
from classifier.topic_model import TopicClassifier, TopicPrediction
from clipfeed.protocols import FilteredTag, IntentTag
from clipfeed.taxonomy import Taxonomy


class TopicFilter:
    """Implements :class:`clipfeed.protocols.TopicModel` on top of a :class:`TopicClassifier`."""

    def __init__(
        self, classifier: TopicClassifier, taxonomy: Taxonomy | None = None, config: FilterConfig | None = None
    ) -> None:
        self.classifier = classifier
        self.taxonomy = taxonomy if taxonomy is not None else Taxonomy.load()
        self.config = config or classifier.cfg.filter

    def decide(self, pred: TopicPrediction) -> tuple[bool, str]:
        if pred.unknown is not None:
            return False, f"unknown: {pred.unknown}"
        if len(normalize(pred.text)) < self.config.min_tag_chars:
            return False, f"too short: fewer than {self.config.min_tag_chars} characters"
        best = pred.topics[0]
        name = self._name(best.id)
        if self.classifier.cfg.taxonomy_labels and best.id in self.taxonomy:
            why = self.taxonomy.not_clip_worthy_reason(best.id)
            if why is not None:
                return False, f"not clip-worthy: {name} ({why})"
        if best.p < self.config.min_confidence:
            return False, f"low confidence: {name} p={best.p:.2f} < {self.config.min_confidence:.2f}"
        return True, f"on topic: {name} p={best.p:.2f}"

    def _name(self, node_id: str) -> str:
        if self.classifier.cfg.taxonomy_labels and node_id in self.taxonomy:
            return " > ".join(self.taxonomy.node(node_id).path)
        return node_id

    def topic_json(self, score_id: str, p: float) -> dict[str, object]:
        """The output contract's topic object: id, name, tier1, tier2, p."""
        if self.classifier.cfg.taxonomy_labels and score_id in self.taxonomy:
            node = self.taxonomy.node(score_id)
            tier2 = self.taxonomy.tier2_of(score_id)
            return {
                "id": score_id,
                "name": node.name,
                "tier1": self.taxonomy.name(self.taxonomy.tier1_of(score_id)),
                "tier2": self.taxonomy.name(tier2) if tier2 else None,
                "p": p,
            }
        return {"id": score_id, "name": score_id, "tier1": score_id, "tier2": None, "p": p}

    def explain(self, pred: TopicPrediction) -> dict[str, object]:
        keep, reason = self.decide(pred)
        return {
            "text": pred.text,
            "topics": [self.topic_json(t.id, t.p) for t in pred.topics],
            "keep": keep,
            "reason": reason,
        }

    def filter_tags(self, tags: Sequence[IntentTag], query: str) -> list[FilteredTag]:
        return self.filter_tags_batch([(tags, query)])[0]

    def filter_tags_batch(self, searches: Sequence[tuple[Sequence[IntentTag], str]]) -> list[list[FilteredTag]]:
        """``filter_tags`` of many searches with one classifier call: a world's searches are filtered
        in the batches they are tagged in (one call per search was half of loading a world)."""
        kept_per_search: list[list[IntentTag]] = []
        pairs: list[tuple[str, str]] = []
        for tags, query in searches:
            merged: dict[str, IntentTag] = {}
            for tag in tags:
                key = normalize(tag.tag)
                if key and (key not in merged or tag.score > merged[key].score):
                    merged[key] = tag
            kept = list(merged.values())
            kept_per_search.append(kept)
            # The query is context for a tag derived from it; a tag that *is* the query gets none (its
            # words would otherwise count twice, unlike anything the model was trained on).
            q = normalize(query)
            pairs += [(t.tag[:512], query if key != q else "") for key, t in merged.items()]
        preds = self.classifier.predict(pairs) if pairs else []
        out: list[list[FilteredTag]] = []
        at = 0
        for kept in kept_per_search:
            filtered = []
            for tag, pred in zip(kept, preds[at : at + len(kept)], strict=True):
                keep, reason = self.decide(pred)
                filtered.append(FilteredTag(tag.tag, tag.score, pred.topics, keep, reason))
            at += len(kept)
            out.append(sorted(filtered, key=lambda f: (-f.keep, -f.score)))
        return out

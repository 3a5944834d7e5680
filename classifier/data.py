"""Training rows for the topic model: ``{"text", "label", "query"?}`` JSONL, and builders from a world."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, StringConstraints

from clipfeed.errors import InputError
from clipfeed.jsonl import JsonlReader, ReadReport, read_catalog, read_gold
from clipfeed.taxonomy import Taxonomy
from clipfeed.world.vocab import load_vocab

MAX_CHARS = 512
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=MAX_CHARS)]


class TopicRow(BaseModel):
    """One labelled example: a tag (or any short text), its label, and optionally its query."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text: Text
    label: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
    query: Annotated[str, StringConstraints(strip_whitespace=True, max_length=MAX_CHARS)] = ""


def read_rows(path: str | Path, taxonomy: Taxonomy | None = None) -> tuple[list[TopicRow], ReadReport]:
    """Reads training rows, skipping (and reporting) bad ones; taxonomy labels map to tier 2."""
    reader = JsonlReader(path, TopicRow, skip_invalid=True)
    rows: list[TopicRow] = []
    for row in reader:
        if taxonomy is not None:
            if row.label not in taxonomy:
                reader.report.rows -= 1
                reader.report.add_error(InputError(path, reader.lineno, "label", f"unknown taxonomy id {row.label!r}"))
                continue
            tier2 = taxonomy.tier2_of(row.label) or row.label
            row = row.model_copy(update={"label": tier2})
        rows.append(row)
    return rows, reader.report


def world_training_rows(world: str | Path, taxonomy: Taxonomy, catalog_only: bool = False) -> Iterator[dict[str, str]]:
    """Rows a world offers without peeking at simulator internals: catalog titles and hashtags
    (the catalog's own topics), gold train rows (tags with their queries), and the hand-written
    utility queries labelled with their utility topics. ``catalog_only`` keeps the catalog rows and
    the utility queries (for a catalog whose topics are not the sample world's)."""
    world = Path(world)
    for clip in read_catalog(world / "catalog.jsonl"):
        topic = taxonomy.tier2_of(clip.topics[0]) or clip.topics[0]
        yield {"text": clip.title, "label": topic}
        for tag in clip.tags[:2]:
            yield {"text": tag, "label": topic}
    vocab = load_vocab()
    for uqs in vocab.utility.values():
        for uq in uqs:
            yield {"text": uq.query, "label": uq.topic}
    if catalog_only:
        return
    yield from gold_rows(world / "gold.jsonl", taxonomy, splits={"train"})
    yield from gold_rows(world / "gold.jsonl", taxonomy, splits={"train"})  # curated rows count twice
    # The world's vocabulary is a fact sheet (topic terms, entity cues per topic): learn it directly.
    for tid, tv in vocab.topics.items():
        for lv in tv.langs.values():
            for term in lv.terms:
                yield {"text": term, "label": tid}
    for ent in vocab.entities.values():
        for tid, by_lang in ent.cues.items():
            for cues in by_lang.values():
                for cue in cues:
                    yield {"text": cue, "label": tid}


def gold_rows(path: Path, taxonomy: Taxonomy, splits: set[str]) -> Iterator[dict[str, str]]:
    """One row per gold tag (text = tag, query = the query); tagless rows give the query itself."""
    for g in read_gold(path):
        if (g.split or "train") not in splits:
            continue
        label = taxonomy.tier2_of(g.topics[0]) or g.topics[0]
        if g.tags:
            for tag in g.tags:
                yield {"text": tag, "label": label, "query": g.query}
        else:
            yield {"text": g.query, "label": label}


def world_eval_rows(world: str | Path, taxonomy: Taxonomy) -> Iterator[dict[str, str]]:
    """Held-out evaluation rows from a world's ground truth: each interest search labelled with the
    topic of the interest it came from (the query stands in for its tag until the tagger lands).
    Bare entity names ("아르헨티나") are left out: without clicked documents they are ambiguous by
    design. A travel planner's preparation searches ("볼리비아 비자") are labelled Travel Preparation."""
    world = Path(world)
    users = {}
    for line in (world / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines():
        u = json.loads(line)
        users[u["user_id"]] = u["interests"]
    seen: set[tuple[str, str]] = set()
    for line in (world / "truth" / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        q = json.loads(line)
        if q["interest"] is None or q["pattern"] == "bare_entity":
            continue
        topic = "663" if q["pattern"] == "prep_cue" else users[q["user_id"]][q["interest"]]["topic"]
        key = (q["query"], topic)
        if key not in seen:
            seen.add(key)
            yield {"text": q["query"], "label": taxonomy.tier2_of(topic) or topic}

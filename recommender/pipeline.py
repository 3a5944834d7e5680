"""From logs to user contexts: tagging searches (tagger -> topic filter) and replaying events."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from clipfeed.jsonl import read_catalog, read_events, read_queries
from clipfeed.protocols import FilteredTag, IntentTag, IntentTagger, TopicModel, TopicScore
from clipfeed.records import Clip, Event, EventType, SearchQuery
from clipfeed.taxonomy import Taxonomy
from clipfeed.text import hangul_share, normalize
from recommender.catalog import CatalogIndex
from recommender.signals import ContextUpdater, UserContext
from recommender.standin import QueryAsTagTagger

SearchKey = tuple[str, tuple[str, ...]]
SearchTags = tuple[list[FilteredTag], list[FilteredTag]]


class PassThroughFilter:
    """No topic model: every tag is kept with no topic (the ``tags_unfiltered`` baseline)."""

    def filter_tags(self, tags: Sequence[IntentTag], query: str) -> list[FilteredTag]:
        return [FilteredTag(t.tag, t.score, (), True, "unfiltered") for t in tags]

    def filter_tags_batch(self, searches: Sequence[tuple[Sequence[IntentTag], str]]) -> list[list[FilteredTag]]:
        return [self.filter_tags(tags, query) for tags, query in searches]


class SearchTagging:
    """Tags a search with the tagger and filters the tags; results are cached by normalised input."""

    def __init__(self, tagger: IntentTagger, topic_model: TopicModel, cache_size: int = 100_000) -> None:
        self.tagger = tagger
        self.topic_model = topic_model
        self.cache: dict[SearchKey, SearchTags] = {}
        self.cache_size = cache_size
        self.hits = self.misses = 0
        # One tagger call at a time: the API tags from its worker thread and while seeding a context
        # in another, and a model tagger (its LRU cache, its tensors) is not meant to be shared.
        self.lock = threading.Lock()

    @staticmethod
    def key(query: str, docs: Sequence[str] = ()) -> SearchKey:
        """The cache key of a search: its normalised query and clicked titles."""
        return (normalize(query), tuple(normalize(d) for d in docs))

    def lookup(self, query: str, docs: Sequence[str] = ()) -> SearchTags | None:
        """The cached tags of a search, or None (nothing is tagged; the miss is counted)."""
        hit = self.cache.get(self.key(query, docs))
        if hit is not None:
            self.hits += 1
        else:
            self.misses += 1
        return hit

    def prime(self, query: str, docs: Sequence[str], tags: SearchTags) -> None:
        """Puts tags found elsewhere (a shared cache) into this cache."""
        if len(self.cache) >= self.cache_size:
            self.cache.clear()
        self.cache[self.key(query, docs)] = tags

    def raw_keywords(self, query: str, docs: Sequence[str] = ()) -> SearchTags:
        """The fallback when the tagger cannot answer in time: the query text itself as the tag (the
        raw-keyword approach), still through the topic filter; not cached, so the tagger's answer can
        replace it for the next search."""
        standin = QueryAsTagTagger()
        alone = standin.tag_batch([query])[0]
        both = standin.tag_batch([query], [list(docs)])[0] if docs else None
        search = self.topic_model.filter_tags(alone, query)
        alone_set = {t.tag for t in alone}
        doc = self.topic_model.filter_tags([t for t in both if t.tag not in alone_set], query) if both else []
        mark = "raw-keyword fallback"
        return (
            [FilteredTag(t.tag, t.score, t.topics, t.keep, f"{mark}: {t.reason}") for t in search],
            [FilteredTag(t.tag, t.score, t.topics, t.keep, f"{mark}: {t.reason}") for t in doc],
        )

    def tag(self, query: str, docs: Sequence[str] = ()) -> SearchTags:
        """(tags of the query alone: the search signal, tags the clicked documents add: doc_click)."""
        key = self.key(query, docs)
        hit = self.cache.get(key)
        if hit is not None:
            self.hits += 1
            return hit
        self.misses += 1
        with self.lock:
            q_tags = self.tagger.tag_batch([query])[0]
            all_tags = self.tagger.tag_batch([query], [list(docs)])[0] if docs else None
        return self._store(key, query, q_tags, all_tags)

    def _store(
        self, key: SearchKey, query: str, q_tags: list[IntentTag], all_tags: list[IntentTag] | None
    ) -> SearchTags:
        """Filters one search's tags (the query alone; with its documents, when it had any) and caches them."""
        return self._store_batch([(key, query, q_tags, all_tags)])[0]

    def _store_batch(
        self, searches: Sequence[tuple[SearchKey, str, list[IntentTag], list[IntentTag] | None]]
    ) -> list[SearchTags]:
        """``_store`` of many searches, their tags filtered in one topic-model call."""
        inputs: list[tuple[Sequence[IntentTag], str]] = []
        for _, query, q_tags, all_tags in searches:
            inputs.append((q_tags, query))
            if all_tags is not None:  # the tags the documents add
                q_set = {t.tag for t in q_tags}
                inputs.append(([t for t in all_tags if t.tag not in q_set], query))
        filtered = iter(self.topic_model.filter_tags_batch(inputs))
        out: list[SearchTags] = []
        for key, _, _, all_tags in searches:
            search = next(filtered)
            doc = next(filtered) if all_tags is not None else []
            if len(self.cache) >= self.cache_size:
                self.cache.clear()
            self.cache[key] = (search, doc)
            out.append((search, doc))
        return out

    def known_tags(self) -> list[str]:
        """Every distinct tag in the cache (kept or not), in first-seen order: what a training run
        warms its tag-vector cache with."""
        return list(dict.fromkeys(t.tag for search, doc in self.cache.values() for t in (*search, *doc)))

    def prefetch(
        self, searches: Iterable[tuple[str, Sequence[str]]], batch_size: int = 64, progress: bool = False
    ) -> int:
        """Tags many searches in batches (a model tagger is far cheaper per query batched than one at a
        time), filling the cache that :meth:`tag` reads; returns how many were tagged."""
        todo: dict[SearchKey, tuple[str, list[str]]] = {}
        for query, docs in searches:
            key = self.key(query, docs)
            if key not in self.cache and key not in todo:
                todo[key] = (query, list(docs))
        items = list(todo.items())[: self.cache_size]
        bar = tqdm(total=len(items), desc="tagging searches", unit="search", disable=not progress or not items)
        for start in range(0, len(items), batch_size):
            chunk = items[start : start + batch_size]
            queries = [q for _, (q, _) in chunk]
            with_docs = [(n, q, d) for n, (_, (q, d)) in enumerate(chunk) if d]
            with self.lock:
                alone = self.tagger.tag_batch(queries)
                both = (
                    self.tagger.tag_batch([q for _, q, _ in with_docs], [d for _, _, d in with_docs])
                    if with_docs
                    else []
                )
            doc_tags: dict[int, list[IntentTag]] = {n: tags for (n, _, _), tags in zip(with_docs, both, strict=True)}
            self._store_batch([(key, query, alone[n], doc_tags.get(n)) for n, (key, (query, _)) in enumerate(chunk)])
            bar.update(len(chunk))
        bar.close()
        return len(items)


def tags_to_json(tags: SearchTags) -> list[list[dict[str, object]]]:
    """A search's filtered tags as JSON-ready lists (for a cache shared between processes)."""
    return [
        [
            {
                "tag": t.tag,
                "score": t.score,
                "topics": [[s.id, s.p] for s in t.topics],
                "keep": t.keep,
                "reason": t.reason,
            }
            for t in part
        ]
        for part in tags
    ]


def tags_from_json(data: list[list[dict[str, object]]]) -> SearchTags:
    """The inverse of :func:`tags_to_json`.

    >>> t = ([FilteredTag("a", 1.0, (TopicScore("t1", 0.9),), True, "kept")], [])
    >>> tags_from_json(tags_to_json(t)) == t
    True
    """
    search, doc = (
        [
            FilteredTag(
                str(d["tag"]),
                float(d["score"]),  # type: ignore[arg-type]
                tuple(TopicScore(str(i), float(p)) for i, p in d["topics"]),  # type: ignore[attr-defined]
                bool(d["keep"]),
                str(d["reason"]),
            )
            for d in part
        ]
        for part in data
    )
    return search, doc


@dataclass
class UserLog:
    queries: list[SearchQuery] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class WorldData:
    """A world's catalog, per-user logs and taxonomy (the ``truth/`` folder is not read here)."""

    path: Path
    clips: list[Clip]
    taxonomy: Taxonomy
    users: dict[str, UserLog]
    events: list[Event]

    @classmethod
    def load(cls, world: str | Path, skip_invalid: bool = False) -> WorldData:
        world = Path(world)
        taxonomy = Taxonomy.load(world / "taxonomy.tsv")
        clips = list(read_catalog(world / "catalog.jsonl", skip_invalid=skip_invalid))
        clip_ids = {c.clip_id for c in clips}
        users: dict[str, UserLog] = defaultdict(UserLog)
        for q in read_queries(world / "queries.jsonl", skip_invalid=skip_invalid):
            users[q.user_id].queries.append(q)
        events = [
            e
            for e in read_events(world / "events.jsonl", skip_invalid=skip_invalid)
            if e.clip_id is None or e.clip_id in clip_ids
        ]  # clips missing from the catalog are dropped
        for e in events:
            users[e.user_id].events.append(e)
        return cls(world, clips, taxonomy, dict(users), events)


def apply_query(
    updater: ContextUpdater, ctx: UserContext, tagging: SearchTagging, q: SearchQuery, *, settle: bool = True
) -> None:
    search, doc = tagging.tag(q.query, [d.title for d in q.clicked_docs])
    updater.on_search(ctx, q.query, q.ts.timestamp(), search, doc, hangul=hangul_share(q.query), settle=settle)


def apply_event(
    updater: ContextUpdater, ctx: UserContext, catalog: CatalogIndex, e: Event, *, settle: bool = True
) -> None:
    ts = e.ts.timestamp()
    if e.type in (EventType.FOLLOW, EventType.UNFOLLOW):
        updater.on_follow(ctx, e.creator_id or "", ts, e.type is EventType.FOLLOW, settle=settle)
        return
    i = catalog.pos.get(e.clip_id or "")
    if i is None:
        return  # an event for a clip that is not in the catalog changes nothing
    updater.on_clip_event(
        ctx, e.type.value, catalog.ids[i], catalog.topic[i], catalog.creator[i], ts, e.watch_ratio, settle=settle
    )


def timeline(log: UserLog) -> list[tuple[float, SearchQuery | Event]]:
    """A user's searches and events in time order (epoch seconds; a search before an event at the
    same second), as replays and training sessions fold them."""
    items: list[tuple[float, int, SearchQuery | Event]] = [(q.ts.timestamp(), 0, q) for q in log.queries]
    items += [(e.ts.timestamp(), 1, e) for e in log.events]
    items.sort(key=lambda x: (x[0], x[1]))
    return [(ts, item) for ts, _, item in items]


def replay(
    updater: ContextUpdater,
    catalog: CatalogIndex,
    tagging: SearchTagging,
    log: UserLog,
    until: float | None = None,
    max_clip_events: int | None = None,
) -> UserContext:
    """A user's context from their log (searches and events in time order, up to ``until``);
    ``max_clip_events``: no clip event after that many (the user as they were early on; searches
    up to ``until`` still count)."""
    ctx = UserContext()
    for ts, item in timeline(log):
        if until is not None and ts >= until:
            break
        if isinstance(item, SearchQuery):
            apply_query(updater, ctx, tagging, item, settle=False)
        elif max_clip_events is None or ctx.clip_events < max_clip_events:
            apply_event(updater, ctx, catalog, item, settle=False)
    ctx.settle()  # the decay was left pending event by event (see ContextUpdater)
    return ctx


def iter_logs(users: dict[str, UserLog], ids: Iterable[str]) -> Iterable[tuple[str, UserLog]]:
    for uid in ids:
        yield uid, users.get(uid, UserLog())

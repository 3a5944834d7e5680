"""Entity clusters mined from clip tags (``recommender/entities.py``) and the two features built on
them (``entity_match``, ``entity_other``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np

from cli.wiring import Stack
from clipfeed.protocols import FilteredTag, TopicScore
from clipfeed.records import Clip
from clipfeed.text import tokens
from recommender import FEATURES, ContextUpdater, UserContext
from recommender.candidates import TagVectorCache
from recommender.entities import EntityIndex
from recommender.features import compute


def _clip(i: str, *tags: str, topic: str = "387") -> Clip:
    return Clip(
        clip_id=i,
        title=i,
        creator_id="cr",
        language="en",
        topics=[topic],
        duration_s=30,
        published_at=datetime(2026, 3, 1, tzinfo=UTC),
        tags=list(tags),
    )


def test_an_entity_is_a_tag_with_several_cues_and_a_topic_phrase_is_not() -> None:
    clips = [
        _clip("a", "voter turnout", "exit poll", "Brazil", "Lula"),
        _clip("b", "polling station", "early voting", "Brazil", "Lula"),
        _clip("c", "voter turnout", "polling station", "Brazil", "Workers' Party"),
        _clip("d", "exit poll", "early voting", "Brazil", "Workers' Party"),
        _clip("e", "polling station", "voter turnout", "Brazil", "Bolsonaro"),
        # "recount" sits next to "exit poll" twice (by chance) and "Keiko" next to "Peru" twice: one
        # member each, so neither "exit poll" nor "Peru" is taken for an entity
        _clip("f", "voter turnout", "exit poll", "recount"),
        _clip("g", "polling station", "exit poll", "recount"),
        _clip("h", "voter turnout", "Peru", "Keiko"),
        _clip("i", "polling station", "Peru", "Keiko"),
    ]
    index = EntityIndex(clips)
    assert index.names == ["Brazil"]
    brazil = index.names.index("Brazil")
    on = index.clip_entities.toarray()[:, brazil]
    assert on.tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0]
    # cues seen twice ("Lula", "Workers' Party") and one seen once on a Brazil clip ("Bolsonaro")
    for words in ({"lula"}, {"workers", "party"}, {"bolsonaro"}, {"brazil"}):
        assert index.named([words | {"campaign", "rally"}])[brazil], words
        assert index.is_name(words), words
    assert not index.named([{"voter", "turnout"}, {"keiko"}, {"exit", "poll"}]).any()
    assert not index.is_name({"lula", "campaign"})


def test_entity_clusters_of_the_small_world_are_true_entities(stack: Stack) -> None:
    """Against the world's ground truth: clips given a cluster have a true entity, and many clips
    with a true entity get one. The small world has few clips per entity, so fewer cues are seen
    twice (recall 0.30 here; 956 of 1,155 on the default world, and no clip without an entity)."""
    catalog = stack.catalog
    truth = {
        (c := json.loads(line))["clip_id"]: c["entity"]
        for line in (stack.world.path / "truth" / "clips.jsonl").read_text(encoding="utf-8").splitlines()
    }
    has_truth = np.array([truth[cid] is not None for cid in catalog.ids])
    found = catalog.has_entity
    assert len(catalog.entities) >= 5
    precision = (found & has_truth).sum() / max(found.sum(), 1)
    recall = (found & has_truth).sum() / has_truth.sum()
    assert precision >= 0.95 and recall >= 0.25, (precision, recall)
    # one cluster is one entity: its clips agree on the true entity
    entities = catalog.entities.clip_entities.tocsc()
    for j in range(len(catalog.entities)):
        rows = entities[:, j].indices
        top = max(np.unique([str(truth[catalog.ids[i]]) for i in rows], return_counts=True)[1])
        assert top / len(rows) >= 0.9, catalog.entities.names[j]


def _cues(stack: Stack, j: int, rows: list[int]) -> list[str]:
    """The tags on the clips ``rows`` that are cues of entity ``j``: members other than its name."""
    entities = stack.catalog.entities
    name = entities.names[j]
    return [
        t
        for i in rows
        for t in stack.catalog.clips[int(i)].tags
        if t != name and entities.is_name(set(tokens(t))) and entities.named([set(tokens(t))])[j]
    ]


def _search(ctx: UserContext, tag: str, topic: str) -> None:
    ContextUpdater().on_search(ctx, tag, 1.0, [FilteredTag(tag, 1.0, (TopicScore(topic, 0.99),), True, "")])


def test_a_cue_search_matches_the_entitys_clips_of_its_topic_and_marks_other_entities(stack: Stack) -> None:
    catalog = stack.catalog
    entities = catalog.entities
    x_of = {f: FEATURES.index(f) for f in ("entity_match", "entity_other")}
    # an entity, one of its cues (a member that is not its name), and clips of the entity's topic
    # about entities the cue does not name
    ent_clips = entities.clip_entities.tocsc()
    for j in range(len(entities)):
        rows = ent_clips[:, j].indices.tolist()
        topic = catalog.topic[rows[0]]
        cues = _cues(stack, j, rows)
        if not cues:
            continue
        cue = sorted(cues)[0]
        by_cue = entities.named([set(tokens(cue))])
        others = [
            i
            for i in catalog.by_topic[topic]
            if catalog.has_entity[i] and not by_cue[entities.clip_entities[i].indices].any()
        ]
        if others:
            break
    else:
        raise AssertionError("the small world has an entity with a cue and rival entities in its topic")
    ctx = UserContext()
    _search(ctx, f"{cue} highlights", topic)
    same = [int(i) for i in catalog.by_topic[topic] if by_cue[entities.clip_entities[i].indices].any()]
    plain = [i for i in catalog.by_topic[topic] if not catalog.has_entity[i]]
    idx = same + others + plain
    x = compute(ctx, catalog, TagVectorCache(catalog), idx)
    n, m = len(same), len(others)
    assert (x[:n, x_of["entity_match"]] == 1).all() and not x[:n, x_of["entity_other"]].any()
    assert not x[n : n + m, x_of["entity_match"]].any() and (x[n : n + m, x_of["entity_other"]] == 1).all()
    assert not x[n + m :, [x_of["entity_match"], x_of["entity_other"]]].any()  # clips without an entity
    # the same search filed under another topic matches nothing here
    other_topic = next(t for t in catalog.by_topic if t != topic)
    ctx2 = UserContext()
    _search(ctx2, f"{cue} highlights", other_topic)
    x2 = compute(ctx2, catalog, TagVectorCache(catalog), idx)
    assert not x2[:, [x_of["entity_match"], x_of["entity_other"]]].any()


def test_a_bare_entity_name_counts_in_the_topic_of_the_users_other_searches(stack: Stack) -> None:
    """A bare name's topic is the topic model's guess. It names its entity in the topic (among the
    entity's) where the user's other searches are; alone, in the guessed topic; and where a cue
    search names the entity already, only there."""
    catalog = stack.catalog
    entities = catalog.entities
    ent_clips = entities.clip_entities.tocsc()
    pick = None
    for j, name in enumerate(entities.names):
        rows = [int(i) for i in ent_clips[:, j].indices]
        topics = sorted({catalog.topic[i] for i in rows})
        cues = _cues(stack, j, [i for i in rows if catalog.topic[i] == topics[0]])
        if len(topics) >= 2 and cues and entities.is_name(set(tokens(name))):
            pick = (name, rows, topics, cues[0])
            break
    assert pick is not None, "the small world has an entity in two topics"
    name, rows, topics, cue = pick
    wanted, guessed = topics[0], topics[1]
    in_guessed = [i for i in rows if catalog.topic[i] == guessed]
    in_wanted = [i for i in rows if catalog.topic[i] == wanted]
    col = FEATURES.index("entity_match")

    def matched(*searches: tuple[str, str]) -> tuple[bool, bool]:
        ctx = UserContext()
        for text, topic in searches:
            _search(ctx, text, topic)
        x = compute(ctx, catalog, TagVectorCache(catalog), in_guessed + in_wanted)[:, col]
        return bool(x[: len(in_guessed)].all()), bool(x[len(in_guessed) :].all())

    plain = "zzqv weekend plans"  # a search that names no entity
    assert not entities.named([set(tokens(plain))]).any()
    assert matched((name, guessed)) == (True, False)  # nothing else to go by: the guess stands
    assert matched((name, guessed), (plain, wanted)) == (False, True)  # the user's other searches decide
    assert matched((name, guessed), (f"{cue} tips", wanted)) == (False, True)  # a cue names it there

"""Users with latent interests, and the search log their interests produce.

Query patterns (the hard cases are deliberate):
``topic`` a topic template; ``entity`` a template naming the entity; ``cue`` a landmark/player/
dish that points at the entity without naming it ("이과수 폭포"); ``prep_cue`` a trip-preparation
cue of a travel planner, often about a neighbouring country ("볼리비아 비자"); ``bare_entity``
just the entity's name (whose surface reading points at the wrong topic: football, politics);
``head`` a frequent canonical query, repeated across users with Zipf weights; ``navigational``
a utility query with no clip interest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

from clipfeed.world.config import WorldConfig
from clipfeed.world.vocab import LANGS, WorldVocab

TRAVEL_LOCATIONS, TRAVEL_PREP = "655", "663"
SOCCER, BASEBALL = "533", "545"
_DOC_TEMPLATES = {
    "en": (
        "{x} guide",
        "my {x} experience",
        "{x}: everything you need to know",
        "top 10 {x} tips",
        "{x} review",
        "first time {x}",
    ),
    "ko": ("{x} 후기", "{x} 총정리", "{x} 완벽 가이드", "{x} 추천 best 5", "{x} 다녀왔어요", "{x} 꿀팁"),
}
HEAD_QUERIES_PER_TOPIC = 6


@dataclass(frozen=True)
class Interest:
    topic: str
    entity: str | None
    weight: float


@dataclass
class SimUser:
    user_id: str
    lang: str
    interests: list[Interest]
    cold: bool


@dataclass
class SimQuery:
    user_id: str
    ts: datetime
    query: str
    docs: list[str]
    pattern: str
    interest: int | None  # index into the user's interests; None for navigational queries


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def make_users(cfg: WorldConfig, vocab: WorldVocab, rng: np.random.Generator, tweights: np.ndarray) -> list[SimUser]:
    topic_ids = list(vocab.topics)
    countries = [e.key for e in vocab.entities.values() if e.kind == "country"]
    users = []
    for i in range(cfg.n_users):
        lang = LANGS[1] if rng.random() < cfg.ko_share else LANGS[0]
        n = int(rng.choice([1, 2, 3], p=[0.4, 0.4, 0.2]))
        chosen: list[tuple[str, str | None]] = []
        u = rng.random()
        # Forced hard-case populations, then free interests by topic popularity.
        if u < cfg.travel_planner_share:
            chosen.append((TRAVEL_LOCATIONS, _pick(rng, countries)))
        elif u < cfg.travel_planner_share + cfg.soccer_fan_share:
            chosen.append((SOCCER, _pick(rng, [e.key for e in vocab.entities_for(SOCCER) if e.kind == "soccer"])))
        elif u < cfg.travel_planner_share + cfg.soccer_fan_share + cfg.baseball_fan_share:
            chosen.append((BASEBALL, _pick(rng, [e.key for e in vocab.entities_for(BASEBALL)])))
        while len(chosen) < n:
            topic = topic_ids[rng.choice(len(topic_ids), p=tweights)]
            if any(t == topic for t, _ in chosen):
                continue
            ents = vocab.entities_for(topic)
            ent = ents[int(rng.integers(len(ents)))].key if ents and rng.random() < 0.5 else None
            chosen.append((topic, ent))
        weights = rng.dirichlet(np.full(len(chosen), 2.0))
        interests = [Interest(t, e, round(float(w), 4)) for (t, e), w in zip(chosen, weights, strict=True)]
        users.append(SimUser(f"u{i:05d}", lang, interests, cold=bool(rng.random() < cfg.cold_share)))
    return users


def _fill(template: str, term: str, entity: str) -> str:
    return " ".join(template.replace("{term}", term).replace("{entity}", entity).split())


def head_queries(vocab: WorldVocab, rng: np.random.Generator) -> dict[tuple[str, str], list[str]]:
    """A few canonical queries per (topic, language), reused by many users (the frequent patterns)."""
    out: dict[tuple[str, str], list[str]] = {}
    for tid, tv in vocab.topics.items():
        for lang in LANGS:
            lv = tv.langs[lang]
            plain = [q for q in lv.queries if "{entity}" not in q] or list(lv.queries)
            heads = {_fill(_pick(rng, plain), _pick(rng, lv.terms), "") for _ in range(3 * HEAD_QUERIES_PER_TOPIC)}
            out[(tid, lang)] = sorted(heads)[:HEAD_QUERIES_PER_TOPIC]
    return out


_ZIPF = 1.0 / np.arange(1, HEAD_QUERIES_PER_TOPIC + 1) ** 1.2
_ZIPF = _ZIPF / _ZIPF.sum()


def _interest_query(
    rng: np.random.Generator, vocab: WorldVocab, user: SimUser, it: Interest, heads: dict[tuple[str, str], list[str]]
) -> tuple[str, str, str]:
    """(query, pattern, doc_phrase) for one interest."""
    lang = user.lang
    lv = vocab.topics[it.topic].langs[lang]
    term = _pick(rng, lv.terms)
    ent = vocab.entities[it.entity] if it.entity else None
    u = rng.random()
    if ent is not None:
        cue = _pick(rng, ent.cues[it.topic][lang])
        if it.topic == TRAVEL_LOCATIONS and TRAVEL_PREP in ent.cues and u < 0.25:
            prep = _pick(rng, ent.cues[TRAVEL_PREP][lang])
            return prep, "prep_cue", cue
        if u < 0.55:
            q = cue if rng.random() < 0.5 else f"{cue} {term}"
            return q, "cue", cue
        if u < 0.70:
            return ent.names[lang], "bare_entity", cue
        with_entity = [t for t in lv.queries if "{entity}" in t]
        if with_entity and u < 0.85:
            return _fill(_pick(rng, with_entity), term, ent.names[lang]), "entity", cue
    if u < 0.45 or ent is not None:
        head = heads[(it.topic, lang)]
        return head[int(rng.choice(len(head), p=_ZIPF[: len(head)] / _ZIPF[: len(head)].sum()))], "head", term
    plain = [t for t in lv.queries if "{entity}" not in t] or list(lv.queries)
    return _fill(_pick(rng, plain), term, ""), "topic", term


def make_queries(
    cfg: WorldConfig,
    vocab: WorldVocab,
    rng: np.random.Generator,
    user: SimUser,
    heads: dict[tuple[str, str], list[str]],
    span_end: datetime,
) -> list[SimQuery]:
    lo, hi = cfg.queries_per_user
    n = int(rng.integers(lo, hi + 1))
    span = (span_end - cfg.start).total_seconds()
    times = sorted(float(rng.uniform(0, span)) for _ in range(n))
    weights = np.array([it.weight for it in user.interests])
    out = []
    for t in times:
        ts = cfg.start + timedelta(seconds=int(t))
        if rng.random() < cfg.navigational_share:
            utility = vocab.utility[user.lang]
            uq = utility[int(rng.integers(len(utility)))]
            out.append(SimQuery(user.user_id, ts, uq.query, [], "navigational", None))
            continue
        k = int(rng.choice(len(weights), p=weights / weights.sum()))
        query, pattern, phrase = _interest_query(rng, vocab, user, user.interests[k], heads)
        docs: list[str] = []
        # Ambiguous queries get clicked documents more often: that is where docs carry the intent.
        p_docs = 0.7 if pattern in {"bare_entity", "prep_cue"} else cfg.docs_share
        if rng.random() < p_docs:
            for _ in range(1 + int(rng.random() < 0.3)):
                docs.append(_pick(rng, _DOC_TEMPLATES[user.lang]).replace("{x}", phrase))
        out.append(SimQuery(user.user_id, ts, query, list(dict.fromkeys(docs)), pattern, k))
    return out

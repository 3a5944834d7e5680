"""Creators and clips: topic-focused creators, bilingual titles, long-tail popularity."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from clipfeed.world.config import WorldConfig
from clipfeed.world.vocab import LANGS, Entity, WorldVocab

# Topics whose clips about a country draw big audiences: the reason raw keywords fail (a country
# name in a query matches popular football and politics clips before travel ones).
_POPULAR_ENTITY_TOPICS = {"533": 4.0, "387": 3.0, "388": 3.0}


@dataclass
class Creator:
    creator_id: str
    lang: str
    topics: list[str]
    entity: str | None
    quality: float


@dataclass
class SimClip:
    clip_id: str
    creator: Creator
    lang: str
    topic: str
    entity: str | None
    title: str
    description: str
    tags: list[str]
    duration_s: float
    age_days: float
    views: int
    quality: float
    extra: dict[str, str] = field(default_factory=dict)


def _pick(rng: np.random.Generator, items: tuple[str, ...] | list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def topic_weights(rng: np.random.Generator, topic_ids: list[str]) -> np.ndarray:
    """A Zipf-like popularity over topics (random order, fixed by the seed)."""
    ranks = rng.permutation(len(topic_ids)) + 1
    w: np.ndarray = 1.0 / ranks.astype(float) ** 0.7
    out: np.ndarray = w / w.sum()
    return out


def make_creators(cfg: WorldConfig, vocab: WorldVocab, rng: np.random.Generator, tweights: np.ndarray) -> list[Creator]:
    topic_ids = list(vocab.topics)
    creators = []
    for i in range(cfg.n_creators):
        lang = LANGS[1] if rng.random() < 0.5 else LANGS[0]
        # Every topic gets creators in both languages first, then popularity decides.
        main = topic_ids[i // 2] if i < 2 * len(topic_ids) else topic_ids[rng.choice(len(topic_ids), p=tweights)]
        if i < 2 * len(topic_ids):
            lang = LANGS[i % 2]
        topics = [main]
        if rng.random() < 0.3:
            topics.append(topic_ids[int(rng.integers(len(topic_ids)))])
        ents = vocab.entities_for(main)
        entity = ents[int(rng.integers(len(ents)))].key if ents and rng.random() < 0.4 else None
        quality = float(np.clip(rng.normal(0.0, 1.0), -2.5, 2.5))
        creators.append(Creator(f"cr{i:04d}", lang, topics, entity, quality))
    return creators


def _entity_slot(rng: np.random.Generator, ent: Entity, topic: str, lang: str) -> str:
    # Mostly the name; sometimes a cue (a landmark, a player) so that titles, like real ones,
    # do not always spell the entity out.
    if rng.random() < 0.35:
        return _pick(rng, ent.cues[topic][lang])
    return ent.names[lang]


def render_clip_text(
    rng: np.random.Generator, vocab: WorldVocab, topic: str, lang: str, ent: Entity | None
) -> tuple[str, str, list[str]]:
    """Title, description and hashtags of one clip."""
    lv = vocab.topics[topic].langs[lang]
    term = _pick(rng, lv.terms)
    with_entity = [t for t in lv.titles if "{entity}" in t]
    without = [t for t in lv.titles if "{entity}" not in t] or list(lv.titles)
    if ent is not None and with_entity and rng.random() < 0.75:
        template = _pick(rng, with_entity)
    else:
        template = _pick(rng, without)
    slot = _entity_slot(rng, ent, topic, lang) if ent is not None else ""
    title = " ".join(template.replace("{term}", term).replace("{entity}", slot).split())
    desc = _pick(rng, lv.descriptions).replace("{term}", term).replace("{entity}", slot)
    if ent is not None and "{entity}" not in template:
        desc = f"{desc} #{_pick(rng, ent.cues[topic][lang])}"
    tags = [term, _pick(rng, lv.terms)]
    if ent is not None:
        tags += [ent.names[lang], _pick(rng, ent.cues[topic][lang])]
    return title[:300], " ".join(desc.split())[:2000], list(dict.fromkeys(tags))


def make_clips(cfg: WorldConfig, vocab: WorldVocab, rng: np.random.Generator, creators: list[Creator]) -> list[SimClip]:
    by_topic_lang: dict[tuple[str, str], list[Creator]] = {}
    for c in creators:
        by_topic_lang.setdefault((c.topics[0], c.lang), []).append(c)
    plan: list[tuple[Creator, str, Entity | None]] = []
    # Coverage first: every (entity, topic) pair gets two clips in each language, so every intent
    # the users can hold has clips to find.
    for entity in vocab.entities.values():
        for topic in entity.topics:
            for lang in LANGS:
                pool = by_topic_lang.get((topic, lang)) or [c for c in creators if c.lang == lang]
                for _ in range(2):
                    plan.append((pool[int(rng.integers(len(pool)))], topic, entity))
    while len(plan) < cfg.n_clips:
        c = creators[int(rng.integers(len(creators)))]
        topic = c.topics[0] if len(c.topics) == 1 or rng.random() < 0.8 else c.topics[1]
        ents = vocab.entities_for(topic)
        ent: Entity | None = None
        if c.entity is not None and topic == c.topics[0] and rng.random() < 0.7:
            ent = vocab.entities[c.entity]
        elif ents and rng.random() < 0.35:
            ent = ents[int(rng.integers(len(ents)))]
        plan.append((c, topic, ent))
    order = rng.permutation(len(plan))
    clips = []
    for n, idx in enumerate(order):
        c, topic, ent = plan[int(idx)]
        title, desc, tags = render_clip_text(rng, vocab, topic, c.lang, ent)
        quality = float(np.clip(c.quality * 0.6 + rng.normal(0, 0.8), -3, 3))
        boost = _POPULAR_ENTITY_TOPICS.get(topic, 1.0) if ent is not None and ent.kind == "country" else 1.0
        views = int((rng.pareto(1.2) + 1.0) * 800 * np.exp(0.5 * quality) * boost)
        duration = float(np.clip(rng.lognormal(3.4, 0.6), 5, 180))
        age = float(rng.uniform(0, cfg.catalog_age_days))
        clips.append(
            SimClip(
                f"c{n:06d}",
                c,
                c.lang,
                topic,
                ent.key if ent else None,
                title,
                desc,
                tags,
                round(duration, 1),
                age,
                views,
                quality,
            )
        )
    return clips


def published_at_iso(cfg: WorldConfig, clip: SimClip) -> str:
    ts = cfg.start - timedelta(days=clip.age_days)
    return ts.replace(microsecond=0).isoformat().replace("+00:00", "Z")

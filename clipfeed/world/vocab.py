"""The simulator's bilingual vocabulary: topics, named entities and utility queries.

The data lives in ``clipfeed/data/world/*.json`` (hand-written, English and Korean) and is
validated on load so a bad edit fails with the file and the entry that is wrong.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from clipfeed.errors import InputError

LANGS = ("en", "ko")
_PLACEHOLDER = re.compile(r"\{([^}]*)\}")
_LIST_KEYS = ("terms", "titles", "queries", "descriptions")


@dataclass(frozen=True)
class LangVocab:
    terms: tuple[str, ...]
    titles: tuple[str, ...]
    queries: tuple[str, ...]
    descriptions: tuple[str, ...]


@dataclass(frozen=True)
class TopicVocab:
    id: str
    langs: dict[str, LangVocab]


@dataclass(frozen=True)
class Entity:
    key: str
    kind: str
    names: dict[str, str]
    topics: tuple[str, ...]
    cues: dict[str, dict[str, tuple[str, ...]]]  # topic -> lang -> phrases


@dataclass(frozen=True)
class UtilityQuery:
    query: str
    topic: str


@dataclass(frozen=True)
class WorldVocab:
    topics: dict[str, TopicVocab]
    entities: dict[str, Entity]
    utility: dict[str, tuple[UtilityQuery, ...]]

    def entities_for(self, topic: str) -> list[Entity]:
        return [e for e in self.entities.values() if topic in e.topics]


def data_dir() -> Path:
    return Path(str(resources.files("clipfeed") / "data" / "world"))


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise InputError(path, None, None, f"cannot load world vocabulary: {e}") from e


def _check_placeholders(path: Path, where: str, text: str, allowed: set[str]) -> None:
    found = set(_PLACEHOLDER.findall(text))
    if not found <= allowed or text.count("{") != text.count("}"):
        raise InputError(path, None, where, f"bad placeholder in {text!r} (allowed: {sorted(allowed)})")


def _lang_vocab(path: Path, tid: str, lang: str, obj: Any) -> LangVocab:
    if not isinstance(obj, dict) or set(obj) != set(_LIST_KEYS):
        raise InputError(path, None, f"{tid}.{lang}", f"expected keys {list(_LIST_KEYS)}")
    lists: dict[str, tuple[str, ...]] = {}
    for key in _LIST_KEYS:
        items = obj[key]
        if not isinstance(items, list) or not items or not all(isinstance(s, str) and s.strip() for s in items):
            raise InputError(path, None, f"{tid}.{lang}.{key}", "expected a non-empty list of strings")
        allowed = set() if key == "terms" else {"term", "entity"}
        for s in items:
            _check_placeholders(path, f"{tid}.{lang}.{key}", s, allowed)
        lists[key] = tuple(items)
    return LangVocab(**lists)


@lru_cache(maxsize=4)
def load_vocab(directory: str | None = None) -> WorldVocab:
    """Loads and validates every vocabulary file in ``directory`` (default: the shipped data)."""
    root = Path(directory) if directory else data_dir()
    topics: dict[str, TopicVocab] = {}
    for path in sorted(root.glob("topics_*.json")):
        for obj in _load_json(path):
            tid = str(obj.get("id", ""))
            if not tid or tid in topics:
                raise InputError(path, None, "id", f"missing or duplicate topic id {tid!r}")
            topics[tid] = TopicVocab(tid, {lang: _lang_vocab(path, tid, lang, obj.get(lang)) for lang in LANGS})
    entities: dict[str, Entity] = {}
    epath = root / "entities.json"
    for obj in _load_json(epath):
        key = obj["key"]
        cues = {t: {lang: tuple(v[lang]) for lang in LANGS} for t, v in obj["cues"].items()}
        ent = Entity(key, obj["kind"], {lang: obj[lang] for lang in LANGS}, tuple(obj["topics"]), cues)
        bad = [t for t in ent.topics if t not in topics]
        if bad or set(cues) != set(ent.topics):
            raise InputError(epath, None, key, f"topics {bad or list(ent.topics)} must be vocabulary topics with cues")
        entities[key] = ent
    upath = root / "utility.json"
    raw_util = _load_json(upath)
    utility = {lang: tuple(UtilityQuery(u["query"], u["topic"]) for u in raw_util[lang]) for lang in LANGS}
    return WorldVocab(topics, entities, utility)

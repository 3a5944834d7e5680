"""A world directory built from REAL clip titles, to prove the recommender is not tuned to the simulator.

Writes the same layout and record contracts as `clipfeed world build` (docs/world.md) from
../shared/data/youtube_trending_us_2017 (real US trending YouTube videos, Sep–Oct 2017, CC0), read at
run time and never copied into the repository. Clips are the real videos (one per distinct id, the row
with the most views): real titles, channels and creator tags; each YouTube category maps to one node of
the project taxonomy. Users, searches and reactions are simulated with a seeded numpy Generator (same
seed, same bytes); queries are made of real words of real titles or real creator tags.

What the source lacks, and what stands in for it:
- no durations: `duration_s` is a deterministic pseudo-duration in [15, 180] s from a hash of the id;
- no descriptions: `description` is "";
- no publish times: `published_at` is the first day the video trended (`date`, "DD.MM" of 2017, saved by
  a spreadsheet that dropped trailing zeros: "1.1" is 1 October);
- the spreadsheet turned some ids into "#NAME?": those rows are keyed by a hash of channel + title.

Run: .venv/bin/python benchmarks/youtube_world.py --out DIR [--seed N] [--users 1500]
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from clipfeed.jsonl import dumps_record
from clipfeed.taxonomy import Taxonomy, shipped_taxonomy_path
from clipfeed.world.build import shipped_gold_path

SOURCE = "youtube_trending_us_2017"
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / SOURCE
# YouTube category name -> tier-2 node of the project taxonomy (tier-1 where no tier-2 fits).
CATEGORY_TOPICS = {
    "Film & Animation": "324", "Autos & Vehicles": "1", "Music": "338", "Pets & Animals": "422", "Sports": "483",
    "Travel & Events": "653", "Gaming": "680", "People & Blogs": "432", "Comedy": "440", "Entertainment": "JLBCU7",
    "News & Politics": "386", "Howto & Style": "552", "Education": "132", "Science & Technology": "596",
    "Nonprofits & Activism": "388", "Shows": "640",
}  # fmt: skip
NAVIGATIONAL = [
    "youtube login", "gmail", "facebook", "facebook login", "amazon", "netflix login", "google maps",
    "yahoo mail", "instagram", "twitter", "weather", "bank of america login", "craigslist", "ebay",
]  # fmt: skip
SPAN_START = datetime(2017, 11, 1, tzinfo=UTC)
SPAN_END = datetime(2017, 11, 28, tzinfo=UTC)
FALLBACK_DAY = datetime(2017, 9, 13, tzinfo=UTC)  # first day of the source
_YT_ID = re.compile(r"[A-Za-z0-9_-]{11}")
_DAY = re.compile(r"(\d{1,2})\.(\d{1,2})")
_WORD = re.compile(r"\w[\w'&+.-]*")


@dataclass
class YtClip:
    clip_id: str
    title: str
    creator_id: str
    topic: str
    tags: list[str]
    published: datetime
    views: int
    likes: int
    duration_s: int
    quality: float = 0.0


@dataclass
class YtUser:
    user_id: str
    cold: bool
    interests: list[tuple[str, float]]  # (topic id, weight)


@dataclass
class Ev:
    user_id: str
    ts: datetime
    type: str
    clip_id: str | None = None
    creator_id: str | None = None
    watch_ratio: float | None = None


def _iso(ts: datetime) -> str:
    return ts.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def _int(s: str) -> int:
    return int(s) if s.strip().isdigit() else 0


def _hash(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()


def _trend_day(s: str) -> datetime | None:
    m = _DAY.match(s)
    if m is None:
        return None
    try:
        return datetime(2017, int(m.group(2).ljust(2, "0")), int(m.group(1)), tzinfo=UTC)
    except ValueError:
        return None


def _creator_id(channel: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "_", channel.lower()).strip("_")[:120]
    return "ch_" + (slug or _hash(channel)[:12])


def _tags(raw: str) -> list[str]:
    out: list[str] = []
    for t in raw.split("|"):
        t = t.replace('"', "").strip()[:64].strip()
        if t and t != "[none]" and t not in out:
            out.append(t)
    return out[:8]


def load_catalog(data: Path = DATA) -> list[YtClip]:
    """One clip per distinct video (the row with the most views), sorted by clip id."""
    items = json.loads((data / "US_category_id.json").read_text(encoding="utf-8"))["items"]
    names = {str(it["id"]): str(it["snippet"]["title"]) for it in items}
    best: dict[str, dict[str, str]] = {}
    first: dict[str, datetime] = {}
    with (data / "videos.csv").open(encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            topic = CATEGORY_TOPICS.get(names.get(row["category_id"], ""))
            if topic is None or not row["title"].strip():
                continue
            vid = row["video_id"]
            key = vid if _YT_ID.fullmatch(vid) else "x" + _hash(row["channel_title"] + "\n" + row["title"])[:11]
            day = _trend_day(row["date"])
            if day is not None and (key not in first or day < first[key]):
                first[key] = day
            if key not in best or _int(row["views"]) > _int(best[key]["views"]):
                best[key] = row
    clips = []
    for key, row in best.items():
        clip_id = "yt_" + re.sub(r"[^A-Za-z0-9_.:-]", "_", key)
        clips.append(
            YtClip(
                clip_id=clip_id,
                title=row["title"].strip()[:300].strip(),
                creator_id=_creator_id(row["channel_title"]),
                topic=CATEGORY_TOPICS[names[row["category_id"]]],
                tags=_tags(row["tags"]),
                published=first.get(key, FALLBACK_DAY),
                views=_int(row["views"]),
                likes=_int(row["likes"]),
                duration_s=15 + int(_hash(clip_id)[:8], 16) % 166,
            )
        )
    clips.sort(key=lambda c: c.clip_id)
    q = np.log1p(np.array([c.likes for c in clips], dtype=float))
    for c, z in zip(clips, (q - q.mean()) / (q.std() or 1.0), strict=True):
        c.quality = float(z)
    return clips


def _query(rng: np.random.Generator, clip: YtClip) -> tuple[str, str]:
    """Real words of a real clip: one creator tag, or 2-3 consecutive title words (lowercased)."""
    if clip.tags and rng.random() < 0.5:
        return clip.tags[int(rng.integers(len(clip.tags)))].lower(), "creator_tag"
    words = [w.rstrip(".-'") for w in _WORD.findall(clip.title)]
    words = [w for w in words if w]
    if not words:
        return clip.title.lower()[:256], "title_words"
    n = min(len(words), int(rng.integers(2, 4)))
    i = int(rng.integers(len(words) - n + 1))
    return " ".join(words[i : i + n]).lower(), "title_words"


def _react(rng: np.random.Generator, user: YtUser, clip: YtClip, ts: datetime, followed: set[str]) -> list[Ev]:
    """The simulator's choice model with relevance 2.0 for an interest category, else 0."""
    r = 2.0 if any(clip.topic == t for t, _ in user.interests) else 0.0
    out = [Ev(user.user_id, ts, "impression", clip.clip_id)]
    logit = -2.4 + 1.5 * r + 0.25 * clip.quality + rng.normal(0.0, 0.6)
    t = ts + timedelta(seconds=1)
    if rng.random() >= 1.0 / (1.0 + np.exp(-logit)):
        return [*out, Ev(user.user_id, t, "skip", clip.clip_id)]
    mean = min(0.2 + 0.22 * r, 0.92)
    ratio = round(float(rng.beta(mean * 4.0, (1.0 - mean) * 4.0)), 3)
    out.append(Ev(user.user_id, t, "watch", clip.clip_id, watch_ratio=ratio))
    if ratio >= 0.5:
        t2 = t + timedelta(seconds=max(1, int(ratio * clip.duration_s)))
        for etype, p in (("like", 0.08 * r), ("share", 0.015 * r), ("comment", 0.02 * r)):
            if rng.random() < p:
                out.append(Ev(user.user_id, t2, etype, clip.clip_id))
        if clip.creator_id not in followed and rng.random() < 0.03 * r:
            followed.add(clip.creator_id)
            out.append(Ev(user.user_id, t2, "follow", creator_id=clip.creator_id))
    return out


def _event_rows(events: list[Ev], prefix: str) -> list[dict[str, Any]]:
    rows = []
    for i, e in enumerate(events, start=1):
        row: dict[str, Any] = {"event_id": f"{prefix}{i:08d}", "user_id": e.user_id, "ts": _iso(e.ts), "type": e.type}
        for k, v in (("clip_id", e.clip_id), ("creator_id", e.creator_id), ("watch_ratio", e.watch_ratio)):
            if v is not None:
                row[k] = v
        rows.append(row)
    return rows


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(dumps_record(row) + "\n")


def build(out: str | Path, seed: int = 42, users: int = 1500, data: Path = DATA) -> dict[str, Any]:
    """Builds the world into ``out`` and returns its statistics (also saved in ``world.json``)."""
    if not (data / "videos.csv").exists():
        raise FileNotFoundError(f"real data not present at {data} (see ../shared/data/README.md)")
    out = Path(out)
    (out / "truth").mkdir(parents=True, exist_ok=True)
    taxonomy = Taxonomy.load()
    for name, topic in CATEGORY_TOPICS.items():
        assert topic in taxonomy, f"{name} -> {topic} is not in the taxonomy"
    clips = load_catalog(data)
    by_topic: dict[str, list[int]] = {}
    for i, c in enumerate(clips):
        by_topic.setdefault(c.topic, []).append(i)
    topics = sorted(by_topic)
    p_topic = np.array([len(by_topic[t]) for t in topics], dtype=float)
    p_topic /= p_topic.sum()
    cdf = np.cumsum([float(c.views) + 1.0 for c in clips])
    r_users, r_queries, r_events = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))

    people: list[YtUser] = []
    for i in range(users):
        k = 1 + int(r_users.random() < 0.5)
        picks = r_users.choice(len(topics), size=k, replace=False, p=p_topic)
        weights = r_users.dirichlet([2.0] * k) if k > 1 else np.ones(1)
        interests = [(topics[int(j)], float(w)) for j, w in zip(picks, weights, strict=True)]
        people.append(YtUser(f"u{i:05d}", bool(r_users.random() < 0.3), interests))

    span_s = (SPAN_END - SPAN_START).total_seconds()
    queries: list[dict[str, Any]] = []
    events: list[Ev] = []
    heldout: list[Ev] = []
    for u in people:
        w = np.array([wt for _, wt in u.interests])
        for s in sorted(float(x) for x in r_queries.uniform(0, span_s, int(r_queries.integers(3, 9)))):
            interest: int | None = None
            if r_queries.random() < 0.1:
                text, pattern = NAVIGATIONAL[int(r_queries.integers(len(NAVIGATIONAL)))], "navigational"
            else:
                interest = int(r_queries.choice(len(w), p=w / w.sum()))
                pool = by_topic[u.interests[interest][0]]
                text, pattern = _query(r_queries, clips[pool[int(r_queries.integers(len(pool)))]])
            ts = _iso(SPAN_START + timedelta(seconds=int(s)))
            queries.append({"user_id": u.user_id, "ts": ts, "query": text, "pattern": pattern, "interest": interest})
        followed: set[str] = set()
        pools = [by_topic[t] for t, _ in u.interests]
        if u.cold:  # searches only; a wide evaluation session after the search span is the ground truth
            shown: list[int] = []
            for j in range(150):
                if j % 4 == 0:
                    shown.append(int(r_events.integers(len(clips))))
                else:
                    pool = pools[int(r_events.integers(len(pools)))]
                    shown.append(pool[int(r_events.integers(len(pool)))])
            for idx in dict.fromkeys(shown):
                heldout.extend(_react(r_events, u, clips[idx], SPAN_END + timedelta(hours=1), followed))
            continue
        for s in sorted(float(x) for x in r_events.uniform(0, span_s, int(r_events.integers(3, 7)))):
            shown = []
            for _ in range(10):
                x = r_events.random()
                if x < 0.4:  # popular, weighted by real views
                    shown.append(min(len(clips) - 1, int(np.searchsorted(cdf, r_events.random() * cdf[-1]))))
                elif x < 0.7:
                    shown.append(int(r_events.integers(len(clips))))
                else:
                    pool = pools[int(r_events.integers(len(pools)))]
                    shown.append(pool[int(r_events.integers(len(pool)))])
            start = SPAN_START + timedelta(seconds=int(s))
            for j, idx in enumerate(dict.fromkeys(shown)):
                events.extend(_react(r_events, u, clips[idx], start + timedelta(seconds=40 * j), followed))

    queries.sort(key=lambda q: (q["ts"], q["user_id"]))
    events.sort(key=lambda e: (e.ts, e.user_id))
    heldout.sort(key=lambda e: (e.ts, e.user_id))
    _write(
        out / "catalog.jsonl",
        [
            {
                "clip_id": c.clip_id,
                "title": c.title,
                "description": "",
                "creator_id": c.creator_id,
                "language": "en",
                "topics": [c.topic],
                "tags": c.tags,
                "duration_s": c.duration_s,
                "published_at": _iso(c.published),
                "views": c.views,
            }
            for c in clips
        ],
    )
    plain = ("user_id", "ts", "query")
    _write(out / "queries.jsonl", [{**{k: q[k] for k in plain}, "clicked_docs": []} for q in queries])
    _write(out / "events.jsonl", _event_rows(events, "e"))
    shutil.copyfile(shipped_gold_path(), out / "gold.jsonl")
    shutil.copyfile(shipped_taxonomy_path(), out / "taxonomy.tsv")
    _write(
        out / "truth" / "users.jsonl",
        [
            {
                "user_id": u.user_id,
                "language": "en",
                "cold": u.cold,
                "interests": [{"topic": t, "entity": None, "weight": round(wt, 4)} for t, wt in u.interests],
            }
            for u in people
        ],
    )
    _write(out / "truth" / "queries.jsonl", [{**{k: q[k] for k in plain}, "clicked_docs": [], **q} for q in queries])
    _write(out / "truth" / "heldout_events.jsonl", _event_rows(heldout, "h"))
    _write(
        out / "truth" / "clips.jsonl",
        [{"clip_id": c.clip_id, "topic": c.topic, "entity": None, "quality": round(c.quality, 4)} for c in clips],
    )
    with_events = {e.user_id for e in events}
    stats: dict[str, Any] = {
        "clips": len(clips),
        "creators": len({c.creator_id for c in clips}),
        "users": len(people),
        "cold_users": sum(u.cold for u in people),
        "cold_users_with_events": sum(1 for u in people if u.cold and u.user_id in with_events),
        "queries": len(queries),
        "unique_queries": len({q["query"] for q in queries}),
        "query_patterns": dict(sorted(Counter(str(q["pattern"]) for q in queries).items())),
        "events": dict(sorted(Counter(e.type for e in events).items())),
        "heldout_events": dict(sorted(Counter(e.type for e in heldout).items())),
        "categories": {t: len(by_topic[t]) for t in topics},
    }
    config = {"seed": seed, "users": users, "source": SOURCE}
    meta = {"config": config, "stats": stats}
    (out / "world.json").write_text(json.dumps(meta, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    return stats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--users", type=int, default=1500)
    args = parser.parse_args()
    t0 = time.perf_counter()
    stats = build(args.out, args.seed, args.users)
    print(json.dumps(stats, indent=2, ensure_ascii=False))
    print(f"built {args.out} in {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()

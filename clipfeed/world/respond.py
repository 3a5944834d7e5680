"""World users reacting to pages served by the feed API, with the world's own choice model.

:class:`Responder` loads a built world's ground truth (``truth/users.jsonl``, ``truth/clips.jsonl``)
and reacts to a served page the way the world's users react to impressions
(:class:`clipfeed.world.events.ChoiceModel`: watch with probability
``sigmoid(-2.4 + 1.5 r + 0.25 q + noise)``, else skip; meaningful watches may lead to likes, shares,
comments, follows). On top, an **examination model** the legacy logs do not have: the user scrolls
down the page and stops after each clip with probability ``stop_p``, so lower positions are seen
less often (position bias); clips never reached get no events at all.

:func:`simulate_traffic` drives any HTTP client with ``get``/``post`` (a FastAPI ``TestClient``, an
``httpx.Client``): users request feeds, react, and post the reactions as events.

>>> from clipfeed.world.respond import Examination
>>> Examination(stop_p=0.0).seen(5, __import__("numpy").random.default_rng(0))
5
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from clipfeed.taxonomy import Taxonomy
from clipfeed.world.catalog import Creator, SimClip
from clipfeed.world.config import WorldConfig
from clipfeed.world.events import ChoiceModel
from clipfeed.world.users import Interest, SimUser


@dataclass(frozen=True)
class Examination:
    """How far down a page the user scrolls: after each clip they stop with probability ``stop_p``."""

    stop_p: float = 0.12

    def seen(self, n: int, rng: np.random.Generator) -> int:
        k = 0
        while k < n:
            k += 1
            if rng.random() < self.stop_p:
                break
        return k


class Responder:
    """Reactions of a world's users to served clips, from the world's documented choice model."""

    def __init__(self, world: str | Path, seed: int = 0, examination: Examination | None = None) -> None:
        path = Path(world)
        meta = json.loads((path / "world.json").read_text(encoding="utf-8"))
        self.cfg = WorldConfig.model_validate(meta["config"])
        tax = Taxonomy.load(path / "taxonomy.tsv")
        self.rng = np.random.default_rng(seed)
        self.choice = ChoiceModel(self.cfg, self.rng, tax.tier1_of)
        self.examination = examination or Examination()
        self.users: dict[str, SimUser] = {}
        for line in (path / "truth" / "users.jsonl").read_text(encoding="utf-8").splitlines():
            u = json.loads(line)
            interests = [Interest(i["topic"], i["entity"], i["weight"]) for i in u["interests"]]
            self.users[u["user_id"]] = SimUser(u["user_id"], u["language"], interests, u["cold"])
        truth = {
            c["clip_id"]: c
            for c in map(json.loads, (path / "truth" / "clips.jsonl").read_text(encoding="utf-8").splitlines())
        }
        self.clips: dict[str, SimClip] = {}
        for line in (path / "catalog.jsonl").read_text(encoding="utf-8").splitlines():
            c = json.loads(line)
            t = truth[c["clip_id"]]
            creator = Creator(c["creator_id"], c["language"], [t["topic"]], t["entity"], t["quality"])
            self.clips[c["clip_id"]] = SimClip(
                c["clip_id"], creator, c["language"], t["topic"], t["entity"], c["title"], "", [],
                float(c["duration_s"]), 0.0, int(c.get("views") or 0), float(t["quality"]),
            )  # fmt: skip
        self.followed: dict[str, set[str]] = {}
        self._n = 0

    def warm_users(self) -> list[str]:
        return sorted(u for u, s in self.users.items() if not s.cold)

    def react(self, user_id: str, clip_ids: Sequence[str], ts: float) -> list[dict[str, Any]]:
        """API events (impression, watch/skip, engagement, follow) for the clips the user reaches,
        one clip every few seconds from ``ts``; unknown users or clips get none."""
        user = self.users.get(user_id)
        if user is None:
            return []
        out: list[dict[str, Any]] = []
        followed = self.followed.setdefault(user_id, set())
        t = ts
        for cid in clip_ids[: self.examination.seen(len(clip_ids), self.rng)]:
            clip = self.clips.get(cid)
            if clip is None:
                continue
            for e in self.choice.react(user, clip, datetime.fromtimestamp(t, UTC), followed):
                self._n += 1
                out.append(e.row(f"sim-{self._n}", e.ts.timestamp()))
            t += 5.0
        return out


def simulate_traffic(
    client: Any,  # get/post like httpx.Client or FastAPI's TestClient
    responder: Responder,
    users: Iterable[str],
    feeds_per_user: int = 3,
    limit: int = 20,
    start_ts: float = 1_775_000_000.0,
    headers: dict[str, str] | None = None,
) -> dict[str, int]:
    """Each user requests ``feeds_per_user`` feeds (a new session each), reacts to each page and
    posts the reactions; returns counts of feeds served and events accepted."""
    feeds = accepted = 0
    ts = start_ts
    for uid in users:
        for _ in range(feeds_per_user):
            r = client.get(f"/v1/users/{uid}/feed?limit={limit}")
            r.raise_for_status()
            feeds += 1
            events = responder.react(uid, [it["clip_id"] for it in r.json()["items"]], ts)
            ts += 600.0
            for k in range(0, len(events), 200):
                p = client.post("/v1/events", json={"events": events[k : k + 200]}, headers=headers or {})
                p.raise_for_status()
                accepted += int(p.json()["accepted"])
    return {"feeds": feeds, "events_accepted": accepted}

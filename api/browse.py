"""Read endpoints for browsing (the console uses them): clip cards and the raw-keyword baseline feed.

``GET /v1/clips?ids=a,b`` gives the title, creator and topic names of up to ``MAX_CLIP_IDS`` clips
(feed items carry ids and topic ids only). ``GET /v1/users/{id}/feed/baseline?system=raw_keywords``
gives the user's feed under the raw-keyword baseline of the offline evaluation
(:func:`recommender.evaluate.raw_keyword_ranking`: the user's search words matched against clip
text, no tagger, no topic filter), for side-by-side comparison with the full system.

>>> browse_router().url_path_for("get_clips")
'/v1/clips'
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, params
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.deps import Store, Svc, UserId
from api.schemas import FeedItemOut, FeedResponse
from api.services import Services
from api.store import StoreUnavailable
from clipfeed.text import tokens
from recommender import UserContext
from recommender.evaluate import raw_keyword_ranking

MAX_CLIP_IDS = 50
ClipIds = Annotated[
    str,
    Query(
        min_length=1,
        max_length=MAX_CLIP_IDS * 129,
        pattern=r"^[A-Za-z0-9_.:\-]{1,128}(,[A-Za-z0-9_.:\-]{1,128})*$",
        description=f"Comma-separated clip ids, at most {MAX_CLIP_IDS}.",
    ),
]


class TopicName(BaseModel):
    id: str
    name: str
    tier1: str


class ClipOut(BaseModel):
    clip_id: str
    title: str
    creator_id: str
    language: str
    duration_s: float
    topics: list[TopicName]


class ClipsResponse(BaseModel):
    clips: list[ClipOut]
    missing: list[str]


def topic_name(svc: Services, topic: str) -> TopicName:
    tax = svc.catalog.taxonomy
    if topic not in tax:
        return TopicName(id=topic, name=topic, tier1=topic)
    tier1 = tax.tier1_of(topic)
    return TopicName(id=topic, name=tax.name(topic), tier1=tax.name(tier1) if tier1 in tax else tier1)


def browse_router(dependencies: list[params.Depends] | None = None) -> APIRouter:
    """The routes; ``dependencies`` carries the app's read guard (auth when ``read_auth``, rate limits)."""
    router = APIRouter(dependencies=dependencies or [])

    @router.get("/v1/clips", response_model=ClipsResponse)
    async def get_clips(ids: ClipIds, svc: Svc) -> ClipsResponse:
        """Cards for clips: title, creator, language, duration and topic names (the catalog's tier 2)."""
        wanted = list(dict.fromkeys(ids.split(",")))
        if len(wanted) > MAX_CLIP_IDS:
            raise HTTPException(422, f"{len(wanted)} ids, limit {MAX_CLIP_IDS}")
        found, missing = [], []
        for cid in wanted:
            i = svc.catalog.pos.get(cid)
            if i is None:
                missing.append(cid)
                continue
            c = svc.catalog.clips[i]
            found.append(
                ClipOut(
                    clip_id=cid,
                    title=c.title,
                    creator_id=c.creator_id,
                    language=c.language,
                    duration_s=c.duration_s,
                    topics=[topic_name(svc, svc.catalog.topic[i])],
                )
            )
        return ClipsResponse(clips=found, missing=missing)

    @router.get("/v1/users/{user_id}/feed/baseline", response_model=FeedResponse)
    async def get_baseline_feed(
        user_id: UserId,
        svc: Svc,
        st: Store,
        system: Annotated[Literal["raw_keywords"], Query(description="The baseline system.")] = "raw_keywords",
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
    ) -> FeedResponse:
        """The user's feed under a baseline of the offline evaluation (read-only: nothing is logged as
        served). ``raw_keywords`` matches the words of the user's searches (queries as stored in the
        context) against clip text; clips the user has seen are left out."""
        try:
            raw = await st.get_context(user_id)
        except StoreUnavailable as e:
            raise HTTPException(503, "store unavailable") from e
        # a user known from the world's logs is replayed (their searches tagged) off the event loop
        ctx = UserContext.from_dict(raw) if raw is not None else await run_in_threadpool(svc.seed_context, user_id)
        queries = [s.query for s in ctx.searches]
        words = set(tokens(" ".join(queries)))
        ranked = raw_keyword_ranking(svc.catalog, queries, set(ctx.seen), limit)
        items = []
        for cid, score in ranked:
            i = svc.catalog.pos[cid]
            matched = sorted(words & svc.catalog.clip_tokens[i])
            explanation: dict[str, Any] = {
                "sources": ["raw_keywords"] if matched else ["popular"],
                "reason": f"matches your search words: {', '.join(matched)}" if matched else "popular now",
                "words": matched,
            }
            items.append(FeedItemOut(clip_id=cid, score=score, topics=[svc.catalog.topic[i]], explanation=explanation))
        fallback = None if queries else "no searches yet: popular clips"
        return FeedResponse(user_id=user_id, arm=system, items=items, cursor=None, fallback=fallback)

    return router

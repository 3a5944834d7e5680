"""The feed API: FastAPI over the feed store (Redis by default), versioned under /v1.

>>> from api.app import API_VERSION
>>> API_VERSION
'v1'
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import logging
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict
from typing import Annotated, Any

import orjson
from fastapi import Depends, FastAPI, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send

from api.browse import browse_router
from api.console import mount_console
from api.deps import ApiKey, Store, Svc, UserId
from api.schemas import (
    EventBatch,
    EventIn,
    EventResult,
    EventsResponse,
    FeedResponse,
    TagOut,
    TagsRequest,
    TagsResponse,
)
from api.servelog import ServedLog
from api.services import Metrics, Services, single_threaded_blas
from api.store import FeedStore, StoreUnavailable
from api.tagging import Deferred, TaggingWorker, TagJob, Via
from clipfeed.text import hangul_share
from recommender import RequestContext, SearchTagging, SearchTags, UserContext, tags_from_json, tags_to_json
from recommender.feed import Feed, FeedItem

API_VERSION = "v1"
log = logging.getLogger("clipfeed.api")
# Upper bounds on the shutdown steps (seconds): the worker's own drain is 10 s.
SHUTDOWN_WORKER_S = 15.0
SHUTDOWN_LOG_S = 30.0
SHUTDOWN_STORE_S = 5.0


def guard(write: bool) -> Callable[..., Awaitable[None]]:
    """Auth (writes always, reads when ``read_auth``) and per-key rate limiting."""

    async def check(request: Request, svc: Svc, x_api_key: ApiKey = None) -> None:
        if (write or svc.settings.read_auth) and not svc.check_key(x_api_key):
            raise HTTPException(401, "missing or wrong X-API-Key")
        client = x_api_key or (request.client.host if request.client else "anonymous")
        if not svc.limiter.allow(client):
            raise HTTPException(429, "rate limit exceeded; retry later")

    return check


class LatencyMiddleware:
    """Observes each HTTP request's latency by route template into the Prometheus histogram."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        try:
            await self.app(scope, receive, send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)


def after_response(step: Callable[[], object]) -> None:
    """Runs ``step`` on the event loop once the handler's response is on its way: a callback queued
    now runs at the loop's next turn, after this request's (synchronous) writes of the response.
    Not a FastAPI background task, for which uvicorn holds the connection's cycle open until the
    task ends; the two measured alike within the machine's noise (`benchmarks/servelog_bench.py`),
    and this one needs no framework machinery per request."""

    def run() -> None:
        try:
            step()
        except Exception:  # the client has its answer: log, never fail the loop
            log.exception("after-response step failed")

    asyncio.get_running_loop().call_soon(run)


def shared_tag_key(query: str, docs: list[str]) -> str:
    """The store's key for a search's tags: a digest of its normalised text (bounded length)."""
    raw = json.dumps(SearchTagging.key(query, docs), ensure_ascii=False)
    return hashlib.blake2b(raw.encode(), digest_size=16).hexdigest()


def open_servelog(services: Services) -> ServedLog | None:
    """The served-impression log of ``settings.servelog_dir`` (None when unset), its metrics wired."""
    settings, m = services.settings, services.metrics
    if settings.servelog_dir is None:
        return None
    slog = ServedLog(
        settings.servelog_dir,
        rotate_bytes=int(settings.servelog_rotate_mb * 2**20),
        queue_size=settings.servelog_queue_size,
        on_written=m.servelog_written.inc,
        on_dropped=lambda reason, n: m.servelog_dropped.labels(reason).inc(n),
    )
    m.servelog_queue.set_function(lambda: slog.depth)
    return slog


def create_app(services: Services, store: FeedStore, on_shutdown: Callable[[], None] | None = None) -> FastAPI:
    """The app over ready services and a store (``clipfeed serve`` builds both; tests pass their own)."""

    async def share_tags(jobs: list[TagJob]) -> None:
        for job in jobs:  # other API processes (and this one after a restart) reuse these tags
            await store.put_tags(shared_tag_key(job.query, job.docs), json.dumps(tags_to_json(job.future.result())))

    settings = services.settings
    single_threaded_blas()
    worker = TaggingWorker(
        services.tagging,
        max_queue=settings.tagger_queue_size,
        batch_size=settings.tagger_batch_size,
        on_depth=services.metrics.tagger_queue.set,
        on_tagged=share_tags,
    )
    servelog = open_servelog(services)
    ranker = services.builder.ranker
    if ranker is not None:  # operators can see when the compiled trees fell back to LightGBM
        services.metrics.ranker_compiled.labels("content").set(float(ranker.compiled is not None))
        if ranker.residual is not None:
            services.metrics.ranker_compiled.labels("residual").set(float(ranker.compiled_residual is not None))

    async def bounded(step: Awaitable[None], seconds: float, what: str) -> None:
        # A clean stop must end: a step stuck on a dependency (a Redis call that never returns, a
        # wedged thread) is logged and left behind instead of holding the process forever.
        try:
            await asyncio.wait_for(step, seconds)
        except TimeoutError:
            log.warning("shutdown: %s did not finish in %.0f s; going on without it", what, seconds)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # queued searches are folded in before the store closes (the worker drains for up to 10 s)
        await bounded(worker.stop(), SHUTDOWN_WORKER_S, "the tagging worker")
        if servelog is not None:  # after the last request: every served feed and event is on disk
            await bounded(asyncio.to_thread(servelog.close), SHUTDOWN_LOG_S, "closing the served log")
        await bounded(store.close(), SHUTDOWN_STORE_S, "closing the store")
        if on_shutdown is not None:
            on_shutdown()

    app = FastAPI(
        title="clipfeed feed API",
        version="0.1.0",
        lifespan=lifespan,
        description="Cold-start clip feeds from search intent. Writes need `X-API-Key`.",
    )
    app.state.services = services
    app.state.store = store
    app.state.tagging_worker = worker
    app.state.servelog = servelog

    Write = Depends(guard(write=True))
    Read = Depends(guard(write=False))
    app.include_router(browse_router(dependencies=[Read]))  # /v1/clips, /v1/users/{id}/feed/baseline
    mount_console(app)  # the feed console at /console/

    # A plain ASGI middleware: Starlette's BaseHTTPMiddleware (``@app.middleware``) costs a task and
    # a stream per request. Unhandled errors become a bare JSON 500 in the handler below.
    app.add_middleware(LatencyMiddleware, metrics=services.metrics)

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s", request.url.path, exc_info=exc)  # never leak a traceback
        return JSONResponse({"error": "internal error"}, status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": ".".join(str(p) for p in e.get("loc", ())), "error": e.get("msg", "invalid")}
            for e in exc.errors()[:20]
        ]
        return JSONResponse({"error": "invalid request", "details": errors}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    async def load_context(svc: Services, st: FeedStore, user_id: str) -> UserContext:
        raw = await st.get_context(user_id)
        if raw is not None:
            return UserContext.from_dict(raw)
        # A user known from the world's logs: their searches are tagged once, off the event loop.
        ctx = await run_in_threadpool(svc.seed_context, user_id)
        if ctx.updated_at:  # keep the replayed context
            await st.put_context(user_id, ctx.to_dict())
        return ctx

    def fold_search(svc: Services, ctx: UserContext, ev: EventIn, tags: SearchTags, via: str) -> None:
        assert ev.query is not None
        search, doc = tags
        ts = max(ev.epoch, ctx.updated_at)
        svc.updater.on_search(ctx, ev.query, ts, search, doc, hangul=hangul_share(ev.query), via=via)

    def apply(svc: Services, ctx: UserContext, ev: EventIn) -> str | None:
        """Folds one clip or follow event into the context; returns a rejection reason or None."""
        ts = max(ev.epoch, ctx.updated_at)
        if ev.type in ("follow", "unfollow"):
            svc.updater.on_follow(ctx, ev.creator_id or "", ts, ev.type == "follow")
            return None
        i = svc.catalog.pos.get(ev.clip_id or "")
        if i is None:
            return f"unknown clip_id {ev.clip_id!r}"
        svc.updater.on_clip_event(
            ctx, ev.type, svc.catalog.ids[i], svc.catalog.topic[i], svc.catalog.creator[i], ts, ev.watch_ratio
        )
        return None

    async def resolve_searches(
        svc: Services, st: FeedStore, events: list[EventIn]
    ) -> tuple[dict[str, tuple[SearchTags, Via]], dict[str, TagJob]]:
        """Tags for a batch's searches: in-process cache, then the shared cache, then the worker
        (waited for up to ``tagger_wait_ms``), or the raw-keyword fallback when its queue is full."""
        ready: dict[str, tuple[SearchTags, Via]] = {}
        jobs: dict[str, TagJob] = {}
        for ev in events:
            if ev.query is None:
                continue
            docs = [d.title for d in ev.clicked_docs]
            key = shared_tag_key(ev.query, docs)
            if key in ready or key in jobs:
                continue
            hit = svc.tagging.lookup(ev.query, docs)
            if hit is None:
                try:
                    raw = await st.get_tags(key)
                except StoreUnavailable:
                    raw = None
                if raw is not None:
                    hit = tags_from_json(json.loads(raw))
                    svc.tagging.prime(ev.query, docs, hit)
            if hit is not None:
                ready[key] = (hit, "cache")
                continue
            job = worker.submit(ev.query, docs)
            if job is None:
                svc.metrics.fallbacks.labels("tagger_overloaded").inc()
                ready[key] = (svc.tagging.raw_keywords(ev.query, docs), "raw_keywords")
            else:
                jobs[key] = job
        if jobs:
            await asyncio.wait([j.future for j in jobs.values()], timeout=svc.settings.tagger_wait_ms / 1000)
        svc.metrics.tag_cache.set(svc.tagging.hits / max(1, svc.tagging.hits + svc.tagging.misses))
        return ready, jobs

    def fold_later(svc: Services, st: FeedStore, user_id: str, ev: EventIn) -> Deferred:
        async def fold(tags: SearchTags, via: Via) -> None:
            try:
                async with svc.lock(user_id):
                    ctx = await load_context(svc, st, user_id)
                    fold_search(svc, ctx, ev, tags, via)
                    await st.put_context(user_id, ctx.to_dict())
            except StoreUnavailable:
                svc.metrics.fallbacks.labels("late_search_lost").inc()
                raise
            svc.metrics.searches.labels(f"{via}_late").inc()

        return fold

    @app.post(
        f"/{API_VERSION}/events",
        response_model=EventsResponse,
        dependencies=[Write],
        responses={503: {"description": "store unavailable: nothing was accepted"}},
    )
    async def post_events(batch: EventBatch, svc: Svc, st: Store) -> EventsResponse | JSONResponse:
        """Ingest a batch of events; idempotent by ``event_id`` (a replay changes nothing and says so)."""
        if len(batch.events) > svc.settings.max_batch_events:
            raise HTTPException(413, f"batch of {len(batch.events)} events, limit {svc.settings.max_batch_events}")
        results: dict[int, EventResult] = {}
        by_user: dict[str, list[tuple[int, EventIn]]] = {}
        for n, ev in enumerate(batch.events):
            by_user.setdefault(ev.user_id, []).append((n, ev))
        ready, jobs = await resolve_searches(svc, st, batch.events)

        lanes = asyncio.Semaphore(4)  # users of one batch in flight at once (each holds a pool connection)

        async def ingest(user_id: str, items: list[tuple[int, EventIn]]) -> None:
            async with lanes, svc.lock(user_id):
                ctx = await load_context(svc, st, user_id)
                changed = False
                in_time = sorted(items, key=lambda x: x[1].epoch)
                claims = await st.claim_events([ev.event_id for _, ev in in_time])  # one round trip
                for (n, ev), fresh in zip(in_time, claims, strict=True):
                    if not fresh:
                        results[n] = EventResult(event_id=ev.event_id, status="duplicate")
                        continue
                    if ev.query is None:
                        reason = apply(svc, ctx, ev)
                        changed |= reason is None
                        results[n] = EventResult(
                            event_id=ev.event_id, status="rejected" if reason else "accepted", reason=reason
                        )
                        continue
                    key = shared_tag_key(ev.query, [d.title for d in ev.clicked_docs])
                    job = jobs.get(key)
                    if key in ready:
                        tags, via = ready[key]
                    elif job is not None and job.future.done():
                        tags, via = job.future.result(), job.via
                    else:  # still being tagged: the worker folds it in when the tags arrive
                        assert job is not None
                        job.deferred.append(fold_later(svc, st, user_id, ev))
                        svc.metrics.searches.labels("pending").inc()
                        results[n] = EventResult(event_id=ev.event_id, status="accepted", tagging="pending")
                        continue
                    fold_search(svc, ctx, ev, tags, via)
                    svc.metrics.searches.labels(via).inc()
                    changed = True
                    results[n] = EventResult(event_id=ev.event_id, status="accepted", tagging=via)
                if changed:
                    await st.put_context(user_id, ctx.to_dict())

        # Users are independent: their store round trips overlap (each user's events stay in order
        # under that user's lock).
        outcomes = await asyncio.gather(*(ingest(u, items) for u, items in by_user.items()), return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and not any(isinstance(f, StoreUnavailable) for f in failures):
            raise failures[0]
        if failures:
            svc.metrics.fallbacks.labels("events_rejected").inc()
            return JSONResponse(
                {"error": "store unavailable: events were not accepted; retry later"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        ordered = [results[n] for n in range(len(batch.events))]
        for r in ordered:
            svc.metrics.events.labels(r.status).inc()
        if servelog is not None:
            accepted = [ev for ev, r in zip(batch.events, ordered, strict=True) if r.status == "accepted"]
            if accepted:
                slog = servelog
                after_response(lambda: [slog.log_event(ev) for ev in accepted])
        return EventsResponse(
            accepted=sum(r.status == "accepted" for r in ordered),
            duplicates=sum(r.status == "duplicate" for r in ordered),
            rejected=sum(r.status == "rejected" for r in ordered),
            results=ordered,
        )

    def log_feed(
        slog: ServedLog,
        response: Response,
        user_id: str,
        arm: str,
        session: str,
        page: int,
        ctx: UserContext,
        feed: Feed,
        req: RequestContext | None = None,
    ) -> None:
        """Logs the served page after the response is sent (its exploration rows computed and the
        record encoded then, on the loop); the request id goes back in a header, so a client can
        quote it."""
        request_id = secrets.token_hex(8)
        response.headers["X-Clipfeed-Request-Id"] = request_id
        req = req or RequestContext()
        log_page = functools.partial(
            slog.log_feed,
            request_id=request_id,
            user_id=user_id,
            arm=arm,
            session=session,
            page=page,
            request={"hour": req.hour, "device": req.device},
            history_len=ctx.clip_events,
            candidates=feed.candidates,
            clip_ids=[it.clip_id for it in feed.items],
            scores=[it.score for it in feed.items],
            x=feed.features,
            complete=feed.complete_features if feed.pending is not None else None,
        )
        after_response(log_page)

    def popular(svc: Services, limit: int, exclude: set[str], reason: str) -> list[FeedItem]:
        out = []
        for i in svc.catalog.popularity_rank:
            cid = svc.catalog.ids[int(i)]
            if cid not in exclude:
                out.append(FeedItem(cid, 0.0, [svc.catalog.topic[int(i)]], {"reason": reason, "sources": ["popular"]}))
                if len(out) >= limit:
                    break
        return out

    def feed_json(
        response: Response, user_id: str, arm: str, items: list[FeedItem], cursor: str | None, fallback: str | None
    ) -> Response:
        """The ``FeedResponse`` body as JSON, written by orjson from the feed's own values: they are
        built here, so validating them again against the model (FastAPI's default for a returned
        model) would only cost time (~0.5 ms a page). The schema test checks the shape."""
        body = {
            "user_id": user_id,
            "arm": arm,
            "items": [it.__dict__ for it in items],
            "cursor": cursor,
            "fallback": fallback,
        }
        out = Response(orjson.dumps(body), media_type="application/json")
        for name, value in response.headers.items():  # what the handler set (request id, fallback)
            if name not in ("content-length", "content-type"):
                out.headers[name] = value
        return out

    @app.get(f"/{API_VERSION}/users/{{user_id}}/feed", response_model=FeedResponse, dependencies=[Read])
    async def get_feed(
        user_id: UserId,
        svc: Svc,
        st: Store,
        response: Response,
        limit: Annotated[int, Query(ge=1, le=50)] = 20,
        cursor: Annotated[str | None, Query(max_length=64, pattern=r"^[A-Za-z0-9]+\.[0-9]{1,4}$")] = None,
        features: Annotated[
            bool, Query(description="Add each item's top feature contributions (LightGBM pred_contrib, ~1.5 ms).")
        ] = False,
    ) -> Response:
        """Ranked clips with explanations and the experiment arm; no clip repeats across the pages of one
        session (follow ``cursor``)."""
        arm = svc.arm(user_id)
        session, page = (cursor.split(".")[0], int(cursor.split(".")[1])) if cursor else (secrets.token_hex(8), 0)
        try:
            ctx = await load_context(svc, st, user_id)
            served = await st.get_served(user_id, session) if cursor else set()
        except StoreUnavailable:
            svc.metrics.fallbacks.labels("feed_store_down").inc()
            response.headers["X-Clipfeed-Fallback"] = "store-unavailable"
            reason = "store unavailable: popular clips"
            items = popular(svc, limit, set(), reason)
            if servelog is not None:
                log_feed(servelog, response, user_id, "fallback", session, page, UserContext(), Feed(items, reason))
            return feed_json(response, user_id, "fallback", items, None, reason)
        feed: Feed
        req = RequestContext()
        if arm == "popularity":
            feed = Feed(popular(svc, limit, served | set(ctx.seen), "experiment arm: popularity"))
        else:
            feed = svc.builder.build(
                ctx,
                limit * (3 if arm == "shuffle" else 1),
                req,
                exclude=served,
                user_key=user_id,
                contributions=features,
                served_rows=servelog is not None,
            )
            if arm == "shuffle":
                order = list(range(len(feed.items)))
                random.Random(f"{user_id}:{session}:{page}").shuffle(order)
                order = order[:limit]
                feed.items = [feed.items[n] for n in order]
                feed.features = feed.features[order] if feed.features is not None else None
        if feed.fallback:
            svc.metrics.fallbacks.labels("feed_no_context").inc()
        svc.metrics.arms.labels(arm).inc()
        if servelog is not None:
            log_feed(servelog, response, user_id, arm, session, page, ctx, feed, req)
        ids = [it.clip_id for it in feed.items]
        try:
            await st.add_served(user_id, session, ids)
            next_cursor: str | None = f"{session}.{page + 1}" if ids and page < 9999 else None
        except StoreUnavailable:
            next_cursor = None
        return feed_json(response, user_id, arm, feed.items, next_cursor, feed.fallback)

    @app.get(f"/{API_VERSION}/users/{{user_id}}/context", dependencies=[Read])
    async def get_context(user_id: UserId, svc: Svc, st: Store) -> dict[str, Any]:
        """The user's current profile: tags, topics with per-signal affinities, creators, searches."""
        try:
            ctx = await load_context(svc, st, user_id)
        except StoreUnavailable as e:
            raise HTTPException(503, "store unavailable") from e
        tax = svc.catalog.taxonomy
        topics = sorted(ctx.topics.items(), key=lambda kv: -(kv[1].positive + kv[1].skip))
        return {
            "user_id": user_id,
            "clip_events": ctx.clip_events,
            "tags": [
                {"tag": t, "weight": round(a.weight, 4), "topic": a.topic, "query": a.query, "signal": a.signal}
                for t, a in sorted(ctx.tags.items(), key=lambda kv: -kv[1].weight)
            ],
            "topics": [
                {"id": t, "name": tax.name(t) if t in tax else t, **{k: round(v, 4) for k, v in asdict(a).items()}}
                for t, a in topics
            ],
            "creators": [{"id": c, **{k: round(v, 4) for k, v in asdict(a).items()}} for c, a in ctx.creators.items()],
            "searches": [s.__dict__ for s in ctx.searches],
            "seen": len(ctx.seen),
        }

    @app.post(f"/{API_VERSION}/tags", response_model=TagsResponse, dependencies=[Write])
    async def post_tags(req: TagsRequest, svc: Svc) -> TagsResponse:
        """Tag a query (and clicked titles) with the live tagger and topic filter (debugging, ops)."""
        found = svc.tagging.lookup(req.query, req.docs)
        if found is None:
            job = worker.submit(req.query, req.docs)
            if job is None:
                svc.metrics.fallbacks.labels("tagger_overloaded").inc()
                raise HTTPException(503, "tagger overloaded; retry later", headers={"Retry-After": "1"})
            try:
                found = await asyncio.wait_for(asyncio.shield(job.future), timeout=30)
            except TimeoutError as e:
                raise HTTPException(503, "tagger did not answer in 30 s; retry later") from e
        search, doc = found
        tax = svc.catalog.taxonomy
        out = []
        for signal, tags in (("search", search), ("doc_click", doc)):
            for t in tags:
                topics = [{"id": s.id, "name": tax.name(s.id) if s.id in tax else s.id, "p": s.p} for s in t.topics]
                out.append(
                    TagOut(
                        tag=t.tag,
                        score=t.score,
                        signal=signal,  # type: ignore[arg-type]
                        topics=topics,
                        keep=t.keep,
                        reason=t.reason,
                    )
                )
        return TagsResponse(query=req.query, tagger=getattr(svc.tagging.tagger, "name", "tagger"), tags=out)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(svc: Svc, st: Store) -> JSONResponse:
        store_ok = await st.ping()
        body = {"store": "ok" if store_ok else "unavailable", "models": "loaded", "clips": len(svc.catalog.ids)}
        return JSONResponse(body, status_code=200 if store_ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse)
    async def metrics(svc: Svc) -> PlainTextResponse:
        return PlainTextResponse(generate_latest(svc.metrics.registry).decode(), media_type="text/plain; version=0.0.4")

    return app

"""The bounded background tagging worker: a search is tagged off the request path.

A model tagger costs 0.1-0.4 s a call on two CPU cores, so an events request never tags inline. Its
searches are looked up in the in-process cache, then in the store's shared tag cache; misses go to
one worker that tags them in batches in a thread. The request waits a short, bounded time for the
answer (a fast tagger answers within it, so the search counts at once); past that the worker folds
the search into the user's context when the tags arrive, so it shows in the user's next feed
after that. When the queue is full the search is folded in at once with the raw-keyword fallback
(the query text as its tag, through the topic filter) and marked as such. Feed requests never wait
for the tagger.

>>> import asyncio
>>> from recommender import PassThroughFilter, QueryAsTagTagger, SearchTagging
>>> async def demo() -> str:
...     worker = TaggingWorker(SearchTagging(QueryAsTagTagger(), PassThroughFilter()), max_queue=4)
...     job = worker.submit("이과수 폭포", [])
...     search, _ = await job.future
...     await worker.stop()
...     return search[0].tag
>>> asyncio.run(demo())
'이과수 폭포'
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

from starlette.concurrency import run_in_threadpool

from recommender import SearchTagging, SearchTags

log = logging.getLogger("clipfeed.api.tagging")

# Where a search's tags came from: the cache, the tagger within the request, the tagger after the
# request stopped waiting, or the raw-keyword fallback (tagger overloaded or failed).
Via = Literal["cache", "tagger", "pending", "raw_keywords"]

# Folds a tagged search into its user's context (tags, via): registered by a request that stopped
# waiting, called by the worker when the tags arrive.
Deferred = Callable[[SearchTags, Via], Awaitable[None]]


@dataclass
class TagJob:
    query: str
    docs: list[str]
    future: asyncio.Future[SearchTags]
    via: Via = "tagger"  # "raw_keywords" when the tagger failed and the worker fell back
    deferred: list[Deferred] = field(default_factory=list)


class TaggingWorker:
    """One worker task, a bounded queue of distinct searches, batches of up to ``batch_size``."""

    def __init__(
        self,
        tagging: SearchTagging,
        max_queue: int = 256,
        batch_size: int = 32,
        on_depth: Callable[[int], None] | None = None,
        on_tagged: Callable[[list[TagJob]], Awaitable[None]] | None = None,
    ) -> None:
        self.tagging = tagging
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.on_depth = on_depth or (lambda n: None)
        self.on_tagged = on_tagged  # e.g. writes the tags to the shared cache
        self.pending: dict[tuple[str, tuple[str, ...]], TagJob] = {}
        self.queue: asyncio.Queue[TagJob] | None = None
        self.task: asyncio.Task[None] | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    @property
    def depth(self) -> int:
        return len(self.pending)

    def _ensure_started(self) -> asyncio.Queue[TagJob]:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            # A new event loop (a test client without a lifespan runs each request in its own): jobs
            # and the task of the old loop can never run again here, so start afresh in this one.
            if self.task is not None:
                with contextlib.suppress(RuntimeError):  # the old loop may be closed already
                    self.task.cancel()
            self.pending.clear()
            self.loop, self.queue, self.task = loop, None, None
        if self.queue is None or self.task is None or self.task.done():
            self.queue = asyncio.Queue()
            self.task = loop.create_task(self._run(self.queue))
        return self.queue

    def submit(self, query: str, docs: list[str]) -> TagJob | None:
        """Queues a search (or joins the same search already queued); None when the queue is full."""
        if self.closed:
            return None
        queue = self._ensure_started()
        key = SearchTagging.key(query, docs)
        job = self.pending.get(key)
        if job is not None:
            return job
        if len(self.pending) >= self.max_queue:
            return None
        job = TagJob(query, list(docs), asyncio.get_running_loop().create_future())
        self.pending[key] = job
        queue.put_nowait(job)
        self.on_depth(self.depth)
        return job

    async def _run(self, queue: asyncio.Queue[TagJob]) -> None:
        while True:
            batch = [await queue.get()]
            while len(batch) < self.batch_size and not queue.empty():
                batch.append(queue.get_nowait())
            await self._tag(batch)

    async def _tag(self, batch: list[TagJob]) -> None:
        searches = [(j.query, j.docs) for j in batch]
        try:
            await run_in_threadpool(self.tagging.prefetch, searches, len(batch))
            failed = False
        except Exception:  # a broken tagger must not stop the worker or lose the searches
            log.exception("tagger failed on a batch of %d searches; raw-keyword fallback", len(batch))
            failed = True
        for job in batch:
            tags = None if failed else self.tagging.cache.get(SearchTagging.key(job.query, job.docs))
            if tags is None:
                tags, job.via = self.tagging.raw_keywords(job.query, job.docs), "raw_keywords"
            await self._resolve(job, tags)
            self.pending.pop(SearchTagging.key(job.query, job.docs), None)
        self.on_depth(self.depth)
        if self.on_tagged is not None:
            try:
                await self.on_tagged([j for j in batch if j.via == "tagger"])
            except Exception:
                log.warning("could not write tags to the shared cache", exc_info=True)

    async def stop(self, drain_s: float = 10.0) -> None:
        """Stops taking searches and tags what is queued (up to ``drain_s``); whatever is left is
        folded in with the raw-keyword fallback, so no accepted search is dropped on a clean stop."""
        self.closed = True
        if self.task is None or self.loop is not asyncio.get_running_loop():
            self.pending.clear()  # nothing queued in this loop (see _ensure_started)
            return
        deadline = asyncio.get_running_loop().time() + drain_s
        while self.pending and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        for job in list(self.pending.values()):
            if not job.future.done():
                job.via = "raw_keywords"
                await self._resolve(job, self.tagging.raw_keywords(job.query, job.docs))
        self.pending.clear()

    @staticmethod
    async def _resolve(job: TagJob, tags: SearchTags) -> None:
        """Answers a job and folds its search into the context of every request that stopped waiting."""
        # Set the result and take the deferred list in one step (no await between): a request that
        # registers after this sees the future done and folds the search in itself.
        job.future.set_result(tags)
        deferred, job.deferred = job.deferred, []
        for fold in deferred:
            try:
                await fold(tags, job.via)
            except Exception:
                log.exception("could not fold a tagged search into its user's context")

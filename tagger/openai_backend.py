"""A teacher backend for any OpenAI-compatible chat-completions endpoint (vLLM, Ollama, llama.cpp, OpenAI).

Why a hand-rolled client instead of the ``openai`` package: the labeling job needs exactly one call shape,
bounded concurrency, per-prompt failure (one bad prompt never loses a batch), retry counters for the
labeling report and graceful degradation on small servers that reject ``logprobs`` — all of which are a
few lines over ``httpx`` and none of which the SDK gives for free across servers.

The API is synchronous (the labeling job is a plain loop) but runs an ``asyncio`` gather inside, so a
batch of prompts is in flight at once. It works from any thread, including one whose event loop is
already running (the batch then runs on a short-lived worker thread, and that loop waits for it: async
callers should ``await backend.agenerate(...)`` instead).

>>> backend = OpenAIBackend(base_url="http://127.0.0.1:8080/v1", model="qwen2.5-7b")
>>> backend.name
'openai:qwen2.5-7b@127.0.0.1:8080'
>>> backend.generate([], max_new_tokens=8, temperature=0.0, seed=0)
[]
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ConfigDict, Field

from tagger.types import ChatPrompt, Generation

log = logging.getLogger(__name__)

_BODY_SNIPPET = 200  # characters of an error body kept in Generation.error


class OpenAIConfig(BaseModel):
    """Settings of an :class:`OpenAIBackend`; unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str = Field(min_length=1)  # e.g. "http://127.0.0.1:8080/v1"
    model: str = Field(min_length=1)
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this variable; absent = no auth header
    connect_timeout_s: float = Field(default=5.0, gt=0)
    read_timeout_s: float = Field(default=60.0, gt=0)
    max_concurrency: int = Field(default=8, ge=1)
    max_retries: int = Field(default=4, ge=0)
    backoff_s: float = Field(default=0.5, ge=0)  # first retry delay; doubles each retry, with jitter
    max_backoff_s: float = Field(default=30.0, ge=0)  # cap on any single delay, Retry-After included
    price_per_1k: tuple[float, float] = (0.0, 0.0)  # USD per 1,000 prompt / completion tokens
    request_logprobs: bool = True


@dataclass(frozen=True)
class _Failure:
    """Why one HTTP attempt did not yield a generation."""

    reason: str
    retryable: bool
    retry_after: float | None = None
    logprobs_rejected: bool = False


def chat_messages(prompt: ChatPrompt) -> list[dict[str, str]]:
    """The chat messages for a prompt: system, then a user/assistant pair per shot, then the user turn.

    >>> [m["role"] for m in chat_messages(ChatPrompt("sys", (("q", "a"),), "q2"))]
    ['system', 'user', 'assistant', 'user']
    """
    messages = [{"role": "system", "content": prompt.system}] if prompt.system else []
    for user, assistant in prompt.shots:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    messages.append({"role": "user", "content": prompt.user})
    return messages


class OpenAIBackend:
    """:class:`~tagger.types.TeacherBackend` over an OpenAI-compatible ``/chat/completions`` endpoint.

    ``requests``, ``retries`` and ``failures`` count HTTP requests sent, retries made and prompts that
    failed for good, across all calls (for the labeling report).
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key_env: str = "OPENAI_API_KEY",
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        max_concurrency: int = 8,
        max_retries: int = 4,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        price_per_1k: tuple[float, float] = (0.0, 0.0),
        request_logprobs: bool = True,
    ) -> None:
        self.config = OpenAIConfig(
            base_url=base_url,
            model=model,
            api_key_env=api_key_env,
            connect_timeout_s=connect_timeout_s,
            read_timeout_s=read_timeout_s,
            max_concurrency=max_concurrency,
            max_retries=max_retries,
            backoff_s=backoff_s,
            max_backoff_s=max_backoff_s,
            price_per_1k=price_per_1k,
            request_logprobs=request_logprobs,
        )
        self.price_per_1k = self.config.price_per_1k
        self.name = f"openai:{model}@{urlsplit(base_url).netloc or base_url}"
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key = os.environ.get(api_key_env) or None
        self._use_logprobs = request_logprobs  # turned off for good once the server rejects logprobs
        self._lock = threading.Lock()
        self._rng = random.Random()
        self.requests = 0
        self.retries = 0
        self.failures = 0

    @classmethod
    def from_config(cls, config: OpenAIConfig) -> OpenAIBackend:
        return cls(**config.model_dump())

    def __repr__(self) -> str:
        return f"OpenAIBackend(name={self.name!r})"

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        """One generation per prompt, in order; a prompt that failed has ``text=""`` and ``error`` set."""
        if not prompts:
            return []

        def run() -> list[Generation]:
            return asyncio.run(
                self.agenerate(prompts, max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
            )

        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return run()
        # this thread's loop is busy running us: asyncio.run would refuse, so use a fresh thread
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="openai-backend") as pool:
            return pool.submit(run).result()

    async def agenerate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        """The async form of :meth:`generate`, for callers that already run an event loop."""
        cfg = self.config
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        timeout = httpx.Timeout(cfg.read_timeout_s, connect=cfg.connect_timeout_s)
        limits = httpx.Limits(max_connections=cfg.max_concurrency, max_keepalive_connections=cfg.max_concurrency)
        semaphore = asyncio.Semaphore(cfg.max_concurrency)
        async with httpx.AsyncClient(headers=headers, timeout=timeout, limits=limits) as client:
            tasks = [self._complete(client, semaphore, prompt, max_new_tokens, temperature, seed) for prompt in prompts]
            return list(await asyncio.gather(*tasks))

    async def _complete(
        self,
        client: httpx.AsyncClient,
        semaphore: asyncio.Semaphore,
        prompt: ChatPrompt,
        max_new_tokens: int,
        temperature: float,
        seed: int,
    ) -> Generation:
        """One prompt, with retries; never raises for HTTP or server trouble."""
        messages = chat_messages(prompt)
        attempt = 0
        while True:
            sent_logprobs = self._use_logprobs
            body: dict[str, Any] = {
                "model": self.config.model,
                "messages": messages,
                "max_tokens": max_new_tokens,
                "temperature": temperature,
                "seed": seed,
            }
            if sent_logprobs:
                body["logprobs"] = True
            async with semaphore:  # held per attempt only, never across a backoff sleep
                with self._lock:
                    self.requests += 1
                outcome = await self._attempt(client, body)
            if isinstance(outcome, Generation):
                return outcome
            if outcome.logprobs_rejected and sent_logprobs:
                log.info("%s rejects logprobs; asking without them from now on", self.name)
                self._use_logprobs = False
                continue
            if not outcome.retryable or attempt >= self.config.max_retries:
                with self._lock:
                    self.failures += 1
                tries = f"{attempt + 1} attempt" + ("s" if attempt else "")
                log.warning("%s: prompt failed after %s: %s", self.name, tries, outcome.reason)
                return Generation(text="", error=f"{outcome.reason} (after {tries})")
            with self._lock:
                self.retries += 1
            await asyncio.sleep(self._delay(attempt, outcome.retry_after))
            attempt += 1

    async def _attempt(self, client: httpx.AsyncClient, body: dict[str, Any]) -> Generation | _Failure:
        try:
            response = await client.post(self._url, json=body)
        except httpx.TimeoutException as exc:
            return _Failure(f"timeout ({type(exc).__name__})", retryable=True)
        except httpx.HTTPError as exc:
            return _Failure(f"connection error ({type(exc).__name__}: {exc})", retryable=True)
        status = response.status_code
        if 200 <= status < 300:
            return _parse_completion(response)
        reason = f"HTTP {status}: {_error_message(response)}"
        if status == 429 or status >= 500:
            return _Failure(reason, retryable=True, retry_after=_retry_after(response))
        if status == 400 and "logprobs" in response.text.lower():
            return _Failure(reason, retryable=False, logprobs_rejected=True)
        return _Failure(reason, retryable=False)

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        """Seconds to wait before retry ``attempt + 1``: the server's Retry-After, else jittered backoff."""
        cap = self.config.max_backoff_s
        if retry_after is not None:
            return min(cap, retry_after)
        base = min(cap, self.config.backoff_s * 2.0**attempt)
        return base * (0.5 + 0.5 * self._rng.random())


def _parse_completion(response: httpx.Response) -> Generation | _Failure:
    """A Generation from a 200 body, or a retryable failure when the body is not a chat completion."""
    try:
        data = response.json()
    except ValueError:
        return _Failure(f"malformed response: not JSON ({response.text[:60]!r})", retryable=True)
    try:
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (KeyError, IndexError, TypeError):
        return _Failure("malformed response: no choices[0].message.content", retryable=True)
    if not isinstance(content, str):
        return _Failure("malformed response: choices[0].message.content is not a string", retryable=True)
    usage = data.get("usage") if isinstance(data, dict) else None
    usage = usage if isinstance(usage, dict) else {}
    logprobs, tokens = _parse_logprobs(choice)
    return Generation(
        text=content,
        prompt_tokens=_int(usage.get("prompt_tokens")),
        completion_tokens=_int(usage.get("completion_tokens")),
        logprobs=logprobs,
        tokens=tokens,
    )


def _parse_logprobs(choice: Any) -> tuple[list[float] | None, list[str] | None]:
    """``choices[0].logprobs.content[*]`` as (logprobs, tokens), or (None, None) when absent or odd."""
    try:
        items = choice["logprobs"]["content"]
        logprobs = [float(item["logprob"]) for item in items]
        tokens = [str(item.get("token", "")) for item in items]
    except (KeyError, TypeError, ValueError, AttributeError):
        return None, None
    return logprobs, tokens


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _error_message(response: httpx.Response) -> str:
    """The server's ``error.message`` (OpenAI shape) or ``detail``, else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text[:_BODY_SNIPPET].strip() or response.reason_phrase
    if isinstance(data, dict):
        error = data.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:_BODY_SNIPPET]
        if isinstance(error, str):
            return error[:_BODY_SNIPPET]
        if "detail" in data:
            return str(data["detail"])[:_BODY_SNIPPET]
    return response.text[:_BODY_SNIPPET]


def _retry_after(response: httpx.Response) -> float | None:
    """A numeric Retry-After header in seconds (HTTP-date forms fall back to backoff)."""
    value = response.headers.get("retry-after")
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None

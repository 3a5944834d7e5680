"""Serve any TeacherBackend over the OpenAI chat-completions protocol.

Why: the labeling job talks to every teacher through one client (:class:`~tagger.openai_backend.OpenAIBackend`),
so the project's local transformers model, served by this app, is interchangeable with vLLM, Ollama or
OpenAI — and the client is tested end to end over real HTTP against a tiny in-process model.

Only what the labeling job uses is implemented: one non-streamed choice per request, optional
per-token logprobs, and ``GET /v1/models``. Errors are ``{"error": {"message", "type"}}`` as OpenAI sends
them, never a traceback.

>>> from tagger.types import Generation
>>> class Echo:
...     name, price_per_1k = "echo", (0.0, 0.0)
...     def generate(self, prompts, *, max_new_tokens, temperature, seed):
...         return [Generation(text=p.user) for p in prompts]
>>> base_url, stop = serve_in_thread(create_openai_app(Echo(), "echo"))
>>> import httpx
>>> body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
>>> httpx.post(base_url + "/chat/completions", json=body).json()["choices"][0]["message"]["content"]
'hi'
>>> stop()
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from tagger.types import ChatPrompt, Generation, TeacherBackend, TeacherError

log = logging.getLogger(__name__)

MAX_CONTENT_CHARS = 8000
MAX_MESSAGES = 64


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # clients send e.g. "name"; harmless to drop

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=MAX_CONTENT_CHARS)


class ChatRequest(BaseModel):
    """The subset of the OpenAI request that is honoured; other fields (top_p, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_tokens: int = Field(default=128, ge=1, le=512)
    temperature: float = Field(default=0.0, ge=0.0, le=2.0)
    seed: int | None = None
    logprobs: bool | None = None
    n: int = 1
    stream: bool = False


class APIError(Exception):
    """An error answered as ``{"error": {"message", "type"}}`` with ``status``."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.kind = status, message, kind


def _error(status: int, message: str, kind: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind}}, status_code=status)


def to_chat_prompt(messages: list[ChatMessage]) -> ChatPrompt:
    """System (first message, optional), user/assistant pairs as shots, then the final user turn.

    >>> to_chat_prompt([ChatMessage(role="user", content="q"), ChatMessage(role="assistant", content="a"),
    ...                 ChatMessage(role="user", content="q2")])
    ChatPrompt(system='', shots=(('q', 'a'),), user='q2')
    """
    system = ""
    rest = messages
    if rest and rest[0].role == "system":
        system, rest = rest[0].content, rest[1:]
    if not rest or rest[-1].role != "user":
        raise APIError(400, "the last message must have role 'user'")
    history = rest[:-1]
    if len(history) % 2 or any(
        (m.role, h.role) != ("user", "assistant") for m, h in zip(history[::2], history[1::2], strict=True)
    ):
        raise APIError(400, "messages before the last must alternate user/assistant after an optional system message")
    shots = tuple((u.content, a.content) for u, a in zip(history[::2], history[1::2], strict=True))
    return ChatPrompt(system=system, shots=shots, user=rest[-1].content)


def _completion(req: ChatRequest, gen: Generation, model_name: str) -> dict[str, Any]:
    logprobs: dict[str, Any] | None = None
    if req.logprobs and gen.logprobs is not None:
        tokens = gen.tokens if gen.tokens is not None and len(gen.tokens) == len(gen.logprobs) else None
        logprobs = {
            "content": [{"token": tokens[i] if tokens else "", "logprob": lp} for i, lp in enumerate(gen.logprobs)]
        }
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": gen.text},
                "finish_reason": "stop",
                "logprobs": logprobs,
            }
        ],
        "usage": {
            "prompt_tokens": gen.prompt_tokens,
            "completion_tokens": gen.completion_tokens,
            "total_tokens": gen.prompt_tokens + gen.completion_tokens,
        },
    }


def _validation_message(exc: RequestValidationError) -> str:
    """Where and what, without echoing the (possibly huge) input back."""
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc}: {err.get('msg', 'invalid')}" if loc else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


def create_openai_app(backend: TeacherBackend, model_name: str, *, max_parallel: int = 1) -> FastAPI:
    """An app answering ``POST /v1/chat/completions`` and ``GET /v1/models`` with ``backend``.

    ``max_parallel`` bounds concurrent ``backend.generate`` calls (1 by default: a local model seeds
    torch globally and is not safe to call from several threads at once).
    """
    app = FastAPI(title=f"clipfeed teacher ({model_name})", docs_url=None, redoc_url=None, openapi_url=None)
    slots = asyncio.Semaphore(max_parallel)

    @app.exception_handler(APIError)
    async def api_error(_: Request, exc: APIError) -> JSONResponse:
        return _error(exc.status, exc.message, exc.kind)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _error(422, _validation_message(exc), "invalid_request_error")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail), "invalid_request_error")

    @app.exception_handler(Exception)
    async def crashed(_: Request, exc: Exception) -> JSONResponse:
        log.error("teacher server error: %s: %s", type(exc).__name__, exc)
        return _error(500, "internal server error", "server_error")

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": model_name, "object": "model", "created": 0, "owned_by": "clipfeed"}],
        }

    @app.post("/v1/chat/completions")
    async def chat_completions(req: ChatRequest) -> dict[str, Any]:
        if req.n != 1:
            raise APIError(400, "only n=1 is supported")
        if req.stream:
            raise APIError(400, "streaming is not supported")
        prompt = to_chat_prompt(req.messages)
        seed = req.seed if req.seed is not None else 0
        async with slots:
            try:
                gens = await run_in_threadpool(
                    backend.generate, [prompt], max_new_tokens=req.max_tokens, temperature=req.temperature, seed=seed
                )
            except TeacherError as exc:
                raise APIError(502, f"backend failed: {exc}", "backend_error") from exc
            except Exception as exc:  # a bug in the backend: log it here, answer without the details
                log.exception("teacher backend %s crashed", backend.name)
                raise APIError(500, "internal server error", "server_error") from exc
        if len(gens) != 1:
            raise APIError(500, f"backend returned {len(gens)} generations for 1 prompt", "server_error")
        if gens[0].error:
            raise APIError(502, f"backend failed: {gens[0].error}", "backend_error")
        return _completion(req, gens[0], model_name)

    return app


def serve_in_thread(
    app: FastAPI, host: str = "127.0.0.1", port: int = 0, *, start_timeout_s: float = 10.0
) -> tuple[str, Callable[[], None]]:
    """Run ``app`` with uvicorn on a daemon thread; returns ``(base_url ending in /v1, stop)``.

    ``port=0`` takes a free port. ``stop()`` asks the server to exit and waits for its thread.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_config=None, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="openai-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"uvicorn did not start on {host}:{bound_port}")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=start_timeout_s)
        sock.close()

    netloc = f"[{host}]" if family == socket.AF_INET6 else host
    return f"http://{netloc}:{bound_port}/v1", stop

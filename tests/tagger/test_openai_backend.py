"""OpenAIBackend against real HTTP over loopback: our own server app, and a fault-injecting one."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any, TypedDict

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import ValidationError

from tagger.openai_backend import OpenAIBackend, OpenAIConfig, chat_messages
from tagger.openai_server import create_openai_app, serve_in_thread
from tagger.types import ChatPrompt, Generation, TeacherBackend, TeacherError


class GenArgs(TypedDict):
    max_new_tokens: int
    temperature: float
    seed: int


GEN = GenArgs(max_new_tokens=16, temperature=0.0, seed=7)


class EchoBackend:
    """Deterministic teacher: tags are the query words, comma-joined ("a b" -> "a, b")."""

    name = "echo"
    price_per_1k = (0.0, 0.0)

    def __init__(self) -> None:
        self.seen: list[ChatPrompt] = []

    def generate(
        self, prompts: Sequence[ChatPrompt], *, max_new_tokens: int, temperature: float, seed: int
    ) -> list[Generation]:
        out = []
        for p in prompts:
            self.seen.append(p)
            if p.user == "boom":
                raise RuntimeError("secret internal detail")
            if p.user == "teacher-error":
                raise TeacherError("model not loaded")
            words = p.user.split()
            n_prompt = len(p.system.split()) + sum(len(u.split()) + len(a.split()) for u, a in p.shots) + len(words)
            out.append(
                Generation(
                    text=", ".join(words),
                    prompt_tokens=n_prompt,
                    completion_tokens=len(words),
                    logprobs=[-0.5] * len(words),
                    tokens=words,
                )
            )
        return out


def prompt(user: str, *, system: str = "tag the query", shots: tuple[tuple[str, str], ...] = ()) -> ChatPrompt:
    return ChatPrompt(system=system, shots=shots, user=user)


def completion(content: str) -> dict[str, Any]:
    return {
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }


class Faults:
    """What the fault app saw, per prompt key (the last user message)."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.auth: dict[str, str | None] = {}
        self.bodies: dict[str, list[dict[str, Any]]] = {}


def fault_app(faults: Faults) -> FastAPI:
    """The behaviour is chosen by the prompt: "<mode>:<id>"."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Response:
        body = await request.json()
        key = body["messages"][-1]["content"]
        faults.hits[key] += 1
        faults.auth[key] = request.headers.get("authorization")
        faults.bodies.setdefault(key, []).append(body)
        mode = key.split(":")[0]
        if mode == "429" and faults.hits[key] <= 2:
            return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "0"})
        if mode == "500":
            return JSONResponse({"error": {"message": "engine died"}}, status_code=500)
        if mode == "garbage":
            return PlainTextResponse("<html>bad gateway</html>")
        if mode == "nochoices":
            return JSONResponse({"choices": []})
        if mode == "slow":
            await asyncio.sleep(0.6)
        if mode == "401":
            return JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        if mode == "nolp" and body.get("logprobs"):
            return JSONResponse({"error": {"message": "logprobs is not supported"}}, status_code=400)
        return JSONResponse(completion(f"ok {key}"))

    return app


@pytest.fixture(scope="module")
def echo() -> Iterator[tuple[str, EchoBackend]]:
    backend = EchoBackend()
    base_url, stop = serve_in_thread(create_openai_app(backend, "echo-1"))
    yield base_url, backend
    stop()


@pytest.fixture(scope="module")
def faulty() -> Iterator[tuple[str, Faults]]:
    faults = Faults()
    base_url, stop = serve_in_thread(fault_app(faults))
    yield base_url, faults
    stop()


def client(base_url: str, **kw: Any) -> OpenAIBackend:
    kw = {"max_retries": 3, "backoff_s": 0.01, "api_key_env": "CLIPFEED_TEST_NO_SUCH_KEY", **kw}
    return OpenAIBackend(base_url=base_url, model="m", **kw)


# --- against our own server ----------------------------------------------------------------------------------


def test_batch_round_trip_in_order(echo: tuple[str, EchoBackend]) -> None:
    base_url, teacher = echo
    backend = client(base_url, max_concurrency=4)
    assert isinstance(backend, TeacherBackend)
    shots = (("볼리비아 비자", "볼리비아, 비자"), ("iguazu tour", "iguazu, tour"))
    prompts = [prompt(f"q{i} w{i} x", shots=shots) for i in range(20)]
    gens = backend.generate(prompts, **GEN)
    assert [g.text for g in gens] == [f"q{i}, w{i}, x" for i in range(20)]
    assert all(g.error is None for g in gens)
    assert all(g.prompt_tokens == 3 + 8 + 3 and g.completion_tokens == 3 for g in gens)
    assert gens[0].logprobs == [-0.5] * 3 and gens[0].tokens == ["q0", "w0", "x"]
    assert (backend.requests, backend.retries, backend.failures) == (20, 0, 0)
    assert set(prompts) <= set(teacher.seen)  # system, shots and user survive the trip unchanged


def test_works_inside_a_running_loop_and_from_threads(echo: tuple[str, EchoBackend]) -> None:
    backend = client(echo[0])

    async def main() -> tuple[list[Generation], list[Generation]]:
        direct = backend.generate([prompt("a b")], **GEN)  # this thread's loop is running
        threaded = await asyncio.to_thread(backend.generate, [prompt("c d")], **GEN)
        return direct, threaded

    direct, threaded = asyncio.run(main())
    assert direct[0].text == "a, b" and threaded[0].text == "c, d"

    results: list[str] = []
    workers = [
        threading.Thread(target=lambda i=i: results.append(backend.generate([prompt(f"t{i}")], **GEN)[0].text))
        for i in range(4)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert sorted(results) == ["t0", "t1", "t2", "t3"]


def test_server_validates_with_json_errors(echo: tuple[str, EchoBackend]) -> None:
    url = echo[0] + "/chat/completions"
    user = {"role": "user", "content": "q"}
    cases = [
        ({"messages": [user], "n": 2}, 400),
        ({"messages": [user, {"role": "assistant", "content": "a"}]}, 400),
        ({"messages": [{"role": "user", "content": "x" * 8001}]}, 422),
        ({"messages": [user] * 65}, 422),
        ({"messages": [user], "max_tokens": 0}, 422),
        ({"messages": [user], "temperature": 3}, 422),
        ({"messages": [{"role": "tool", "content": "q"}]}, 422),
        ({"messages": [user, user]}, 400),  # history must be user/assistant pairs
        ({"messages": [{"role": "user", "content": "boom"}]}, 500),
        ({"messages": [{"role": "user", "content": "teacher-error"}]}, 502),
    ]
    for body, status in cases:
        r = httpx.post(url, json=body)
        assert r.status_code == status, (body, r.text)
        error = r.json()["error"]
        assert error["message"] and error["type"]
        assert "Traceback" not in r.text and "secret internal detail" not in r.text and "xxxx" not in r.text
    r = httpx.post(url, content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "error" in r.json()
    assert httpx.get(echo[0] + "/nope").json()["error"]["type"]


def test_server_response_shape_and_models(echo: tuple[str, EchoBackend]) -> None:
    body = {"model": "whatever", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 8, "logprobs": True}
    data = httpx.post(echo[0] + "/chat/completions", json=body).json()
    assert data["object"] == "chat.completion" and data["model"] == "echo-1" and data["id"].startswith("chatcmpl-")
    choice = data["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": "a, b"} and choice["finish_reason"] == "stop"
    assert choice["logprobs"]["content"] == [{"token": "a", "logprob": -0.5}, {"token": "b", "logprob": -0.5}]
    assert data["usage"] == {"prompt_tokens": 2, "completion_tokens": 2, "total_tokens": 4}
    body["logprobs"] = False
    assert httpx.post(echo[0] + "/chat/completions", json=body).json()["choices"][0]["logprobs"] is None
    models = httpx.get(echo[0] + "/models").json()
    assert [m["id"] for m in models["data"]] == ["echo-1"]


# --- against the fault app -----------------------------------------------------------------------------------


def test_429_with_retry_after_then_success(faulty: tuple[str, Faults]) -> None:
    base_url, faults = faulty
    backend = client(base_url, backoff_s=2.0)  # Retry-After: 0 must win over the (slow) backoff
    start = time.monotonic()
    [gen] = backend.generate([prompt("429:a")], **GEN)
    assert time.monotonic() - start < 1.5
    assert gen.error is None and gen.text == "ok 429:a" and gen.prompt_tokens == 3 and gen.completion_tokens == 1
    assert gen.logprobs is None
    assert (backend.requests, backend.retries, backend.failures) == (3, 2, 0)
    assert faults.hits["429:a"] == 3


def test_500_fails_one_prompt_not_the_batch(faulty: tuple[str, Faults]) -> None:
    base_url, faults = faulty
    backend = client(base_url, max_retries=2)
    gens = backend.generate([prompt("ok:1"), prompt("500:x"), prompt("ok:2")], **GEN)
    assert [g.text for g in gens] == ["ok ok:1", "", "ok ok:2"]
    assert gens[0].error is None and gens[2].error is None
    assert gens[1].error is not None and "HTTP 500" in gens[1].error and "engine died" in gens[1].error
    assert faults.hits["500:x"] == 3
    assert (backend.requests, backend.retries, backend.failures) == (5, 2, 1)


@pytest.mark.parametrize("mode", ["garbage", "nochoices"])
def test_malformed_200_is_retried_then_error(faulty: tuple[str, Faults], mode: str) -> None:
    base_url, faults = faulty
    backend = client(base_url, max_retries=2)
    [gen] = backend.generate([prompt(f"{mode}:1")], **GEN)
    assert gen.text == "" and gen.error is not None and "malformed" in gen.error
    assert faults.hits[f"{mode}:1"] == 3 and backend.failures == 1


def test_read_timeout_is_an_error(faulty: tuple[str, Faults]) -> None:
    base_url, faults = faulty
    backend = client(base_url, read_timeout_s=0.2, max_retries=1)
    [gen] = backend.generate([prompt("slow:1")], **GEN)
    assert gen.error is not None and "timeout" in gen.error.lower()
    assert (backend.requests, backend.retries, backend.failures) == (2, 1, 1)
    assert faults.hits["slow:1"] == 2


def test_401_is_not_retried(faulty: tuple[str, Faults]) -> None:
    base_url, faults = faulty
    backend = client(base_url)
    [gen] = backend.generate([prompt("401:1")], **GEN)
    assert gen.error is not None and "401" in gen.error and "invalid api key" in gen.error
    assert (backend.requests, backend.retries, backend.failures) == (1, 0, 1)
    assert faults.hits["401:1"] == 1


def test_connection_refused_is_an_error() -> None:
    backend = client("http://127.0.0.1:9/v1", max_retries=1, connect_timeout_s=0.5)
    [gen] = backend.generate([prompt("x")], **GEN)
    assert gen.error is not None and "connect" in gen.error.lower() and backend.requests == 2


def test_logprobs_rejected_falls_back_and_remembers(faulty: tuple[str, Faults]) -> None:
    base_url, faults = faulty
    backend = client(base_url)
    [gen] = backend.generate([prompt("nolp:1")], **GEN)
    assert gen.error is None and gen.text == "ok nolp:1"
    assert [b.get("logprobs") for b in faults.bodies["nolp:1"]] == [True, None]
    backend.generate([prompt("nolp:2")], **GEN)
    assert [b.get("logprobs") for b in faults.bodies["nolp:2"]] == [None]
    assert (backend.retries, backend.failures) == (0, 0)
    plain = client(base_url, request_logprobs=False)
    plain.generate([prompt("ok:nolp")], **GEN)
    assert "logprobs" not in faults.bodies["ok:nolp"][0]


def test_request_body_and_api_key(faulty: tuple[str, Faults], monkeypatch: pytest.MonkeyPatch) -> None:
    base_url, faults = faulty
    monkeypatch.setenv("CLIPFEED_TEST_KEY", "sk-test-123")
    backend = client(base_url, api_key_env="CLIPFEED_TEST_KEY")
    shots = (("q1", "a1"),)
    backend.generate([prompt("ok:auth", shots=shots)], max_new_tokens=12, temperature=0.3, seed=42)
    assert faults.auth["ok:auth"] == "Bearer sk-test-123"
    body = faults.bodies["ok:auth"][0]
    assert body["messages"] == chat_messages(prompt("ok:auth", shots=shots))
    assert [m["role"] for m in body["messages"]] == ["system", "user", "assistant", "user"]
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"], body["logprobs"]) == (
        "m",
        12,
        0.3,
        42,
        True,
    )
    monkeypatch.delenv("CLIPFEED_TEST_KEY")
    client(base_url, api_key_env="CLIPFEED_TEST_KEY").generate([prompt("ok:noauth")], **GEN)
    assert faults.auth["ok:noauth"] is None


def test_config_and_name() -> None:
    backend = OpenAIBackend(base_url="http://127.0.0.1:8080/v1/", model="qwen", price_per_1k=(0.1, 0.2))
    assert backend.name == "openai:qwen@127.0.0.1:8080" and backend.price_per_1k == (0.1, 0.2)
    assert OpenAIBackend.from_config(backend.config).config == backend.config
    with pytest.raises(ValidationError):
        OpenAIConfig(base_url="http://x/v1", model="m", retries=3)  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        OpenAIBackend(base_url="http://x/v1", model="m", max_concurrency=0)
    assert backend.generate([], **GEN) == []

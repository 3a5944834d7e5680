"""Property-based fuzzing of every operation in the API's own OpenAPI schema (schemathesis), over
real HTTP against a uvicorn server on loopback with the embedded Redis: valid and invalid
requests, with and without a key, never get a 5xx, never show a traceback, and every 2xx body
conforms to the documented response schema."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api import RedisStore, create_app
from api.embedded import EmbeddedRedis
from api.services import RateLimiter, Services

EXAMPLES = 100  # per operation and generation mode


@pytest.fixture(scope="module")
def base_url(services: Services, embedded_redis: EmbeddedRedis) -> Iterator[str]:
    services.limiter = RateLimiter(1e9, 10**9)  # fuzzing is a flood by design; 429s are tested elsewhere
    app = create_app(services, RedisStore(embedded_redis.url, pool_size=8, timeout_s=1.0))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield url
    server.should_exit = True
    thread.join(timeout=30)


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_no_operation_gives_a_server_error(base_url: str, mode: schemathesis.GenerationMode) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    operations = [op.ok() for op in schema.get_all_operations()]
    assert {o.path for o in operations} >= {"/v1/events", "/v1/users/{user_id}/feed", "/v1/tags", "/readyz"}
    statuses: dict[str, set[int]] = {}
    unsatisfiable: set[str] = set()

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def fuzz(case: schemathesis.Case) -> None:
            for headers in ({"X-API-Key": "test-key"}, {}):
                response = case.call(headers=headers)
                statuses.setdefault(case.operation.label, set()).add(response.status_code)
                case.validate_response(response, checks=[not_a_server_error])
                if response.status_code < 300:
                    case.validate_response(response, checks=[response_schema_conformance])
                assert "Traceback" not in response.text and 'File "' not in response.text

        try:
            fuzz()
        except Unsatisfiable:  # nothing to make invalid in an operation that takes no input
            assert mode is schemathesis.GenerationMode.NEGATIVE
            unsatisfiable.add(operation.path)
    assert unsatisfiable <= {"/healthz", "/readyz", "/metrics"}
    if mode is schemathesis.GenerationMode.NEGATIVE:  # invalid input was generated and refused with 4xx
        assert any(400 <= s < 500 for codes in statuses.values() for s in codes)
    else:
        assert any(s == 200 for s in statuses["POST /v1/events"])

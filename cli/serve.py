"""``clipfeed serve``: the feed API on the embedded Redis (or ``CLIPFEED_REDIS_URL``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.output import stdout
from clipfeed.settings import load_settings
from clipfeed.world import WorldConfig, build_world

if TYPE_CHECKING:
    from fastapi import FastAPI


def default_world(cache_dir: Path, seed: int) -> Path:
    world = cache_dir / f"world-{seed}"
    if not (world / "world.json").exists():
        stdout.print(f"building the sample world (seed {seed}) into {world} ...", highlight=False)
        build_world(world, WorldConfig(seed=seed))
    return world


_DEMO_EVENT = json.dumps(
    {
        "events": [
            {
                "event_id": "demo-1",
                "user_id": "newbie",
                "ts": 1772700000,
                "type": "search",
                "query": "볼리비아 비자",
                "clicked_docs": [{"title": "이과수 폭포 투어 후기"}],
            }
        ]
    },
    ensure_ascii=False,
)


def example_requests(base: str, user: str, key: str | None) -> list[str]:
    auth = f" -H 'X-API-Key: {key}'" if key else ""
    return [
        f"curl -s '{base}/v1/users/{user}/feed?limit=5'",
        f"curl -s -X POST '{base}/v1/events'{auth} -H 'Content-Type: application/json' -d '{_DEMO_EVENT}'",
        f"curl -s '{base}/v1/users/newbie/feed?limit=5'",
        f"curl -s '{base}/v1/users/newbie/context'",
        f"curl -s -X POST '{base}/v1/tags'{auth} -H 'Content-Type: application/json' -d '{{\"query\": \"손흥민 골\"}}'",
        f"curl -s '{base}/readyz'; curl -s '{base}/metrics' | head",
        f"open {base}/docs  (OpenAPI)",
        f"open {base}/console/?user={user}  (feed console: steer a user's feed in the browser)",
    ]


_WORKER_ENV = "CLIPFEED_SERVE_WORKER"  # how `serve --workers N` tells its workers what to serve


def worker_app() -> FastAPI:
    """One worker of ``clipfeed serve --workers N`` (uvicorn calls it in each process): the same world,
    models and Redis as the parent, which started the embedded Redis if there is one."""
    from api.app import create_app
    from api.store import RedisStore
    from cli.wiring import build_services

    spec = json.loads(os.environ[_WORKER_ENV])
    settings = load_settings()
    services = build_services(settings, Path(spec["world"]), Path(spec["model"]) if spec["model"] else None)
    store = RedisStore(
        spec["url"], settings.redis_pool_size, settings.redis_timeout_s, settings.context_ttl_days * 86400
    )
    app = create_app(services, store)
    settle_heap()
    return app


def settle_heap() -> None:
    """Moves everything loaded so far (world, catalog, models: ~900k objects for the sample world)
    out of the garbage collector's view. Otherwise each full collection walks all of it while
    requests wait: 400 ms measured for the sample world, 0.003 ms once frozen."""
    import gc

    gc.collect()
    gc.freeze()


def serve_cmd(
    world: Annotated[
        Path | None,
        typer.Option("--world", help="World to serve (default: the seed-42 sample world, built on first use)."),
    ] = None,
    host: Annotated[str | None, typer.Option("--host")] = None,
    port: Annotated[int | None, typer.Option("--port", min=1, max=65535)] = None,
    model: Annotated[Path | None, typer.Option("--model", help="Ranker directory (default: shipped).")] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Server processes sharing one Redis (the API keeps no state of its own; 1 = this process).",
        ),
    ] = 1,
) -> None:
    """Start the feed API (embedded Redis with append-only persistence unless CLIPFEED_REDIS_URL is set)."""
    import uvicorn

    from api.app import create_app
    from api.embedded import EmbeddedRedis
    from api.store import RedisStore
    from cli.wiring import build_services

    settings = load_settings()
    host = host or settings.host
    port = port or settings.port
    world_dir = world or settings.world_dir or default_world(settings.cache_dir, settings.world_seed)
    services = build_services(settings, world_dir, model)
    embedded = None
    url = settings.redis_url
    if url is None:
        embedded = EmbeddedRedis(settings.data_dir / "redis").start()
        url = embedded.url
    store = RedisStore(url, settings.redis_pool_size, settings.redis_timeout_s, settings.context_ttl_days * 86400)
    app = create_app(services, store, on_shutdown=embedded.stop if embedded else None)
    base = f"http://{host}:{port}"
    cold = next((u for u, log in sorted(services.world.users.items()) if not log.events), "u00000")
    stdout.print(
        f"\n[bold]clipfeed API[/] on {base} — redis: {'embedded ' + url if embedded else url}; "
        f"world: {world_dir} ({len(services.catalog.ids)} clips)",
        highlight=False,
    )
    if settings.servelog_dir is not None:
        stdout.print(f"served-impression log: {settings.servelog_dir} (see docs/loop.md)", highlight=False)
    keys = settings.api_key_list
    stdout.print(
        "Example requests:" + ("" if keys else " (no CLIPFEED_API_KEYS set: writes are open)"), highlight=False
    )
    for line in example_requests(base, cold, keys[0] if keys else None):
        stdout.print(f"  {line}", highlight=False, markup=False)
    try:
        if workers == 1:
            settle_heap()
            uvicorn.run(app, host=host, port=port, log_level=settings.log_level)
        else:
            # Each worker process builds its own services from the same world and models and talks to
            # the one Redis started (or named) here; uvicorn's supervisor restarts a worker that dies.
            os.environ.update(
                {_WORKER_ENV: json.dumps({"world": str(world_dir), "model": str(model) if model else None, "url": url})}
            )
            stdout.print(f"{workers} worker processes", highlight=False)
            uvicorn.run(
                "cli.serve:worker_app",
                factory=True,
                workers=workers,
                host=host,
                port=port,
                log_level=settings.log_level,
            )
    finally:
        if embedded is not None:
            embedded.stop()

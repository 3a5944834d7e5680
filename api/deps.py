"""FastAPI dependency aliases shared by every router: one place says where the services and the
store come from, and what a user id in a path may be."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Path, Request

from api.services import Services
from api.store import FeedStore

ID_PATTERN = r"^[A-Za-z0-9_.:\-]+$"


# async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread hop per
# request for a dict lookup (measured: most of the serving overhead of a feed under load).
async def get_services(request: Request) -> Services:
    return request.app.state.services  # type: ignore[no-any-return]


async def get_store(request: Request) -> FeedStore:
    return request.app.state.store  # type: ignore[no-any-return]


Svc = Annotated[Services, Depends(get_services)]
Store = Annotated[FeedStore, Depends(get_store)]
ApiKey = Annotated[str | None, Header(alias="X-API-Key", max_length=256)]
UserId = Annotated[str, Path(min_length=1, max_length=128, pattern=ID_PATTERN)]

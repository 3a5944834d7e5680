"""The feed console: static HTML/CSS/vanilla JS served by the API at ``/console/``.

It talks to the public API only (``/v1/*``, ``/metrics``) with the same ``X-API-Key`` as any client,
so it can show nothing a client could not see. No build step and no runtime dependency: the files in
``static/`` ship in the package. Every page gets a strict Content-Security-Policy (scripts and styles
from the console's own files only; the scripts never write API text as HTML).

>>> from fastapi import FastAPI
>>> app = FastAPI()
>>> mount_console(app)
>>> sorted(r.path for r in app.routes if r.path.startswith("/console"))
['/console', '/console']
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def static_dir() -> Path:
    return Path(str(resources.files("api.console") / "static"))


class ConsoleFiles(StaticFiles):
    """Static files with the console's security headers; revalidated on every load (no stale JS)."""

    def file_response(
        self, full_path: str | os.PathLike[str], stat_result: os.stat_result, scope: Scope, status_code: int = 200
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["Cache-Control"] = "no-cache"
        return response


def mount_console(app: FastAPI, path: str = "/console") -> None:
    """Serves the console at ``path + "/"`` (``path`` itself redirects there)."""

    @app.get(path, include_in_schema=False)
    async def console_root() -> RedirectResponse:
        return RedirectResponse(f"{path}/", status_code=307)

    app.mount(path, ConsoleFiles(directory=static_dir(), html=True), name="console")

"""A Starlette application with its own route, serving the Files API beside it.

    python examples/starlette_app.py         # http://127.0.0.1:8000/health and /v1/files

The files app is mounted at `/` after the host's own routes, so `/health` is the host's and
everything else is the Files API's. Starlette does not run the lifespan of a mounted app, so
the host runs the service's lifecycle in its own: `service.running()` sweeps expired files
every minute while the host runs, then closes the service.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn

# --8<-- [start:app]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from openai_files import api_key_auth, create_app, open_embedded


def build_app(data_dir: Path) -> Starlette:
    service = open_embedded(data_dir)  # files under data_dir/files, records in SQLite
    files_app = create_app(service, auth=api_key_auth({"sk-team-a": "team-a"}))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with service.running(sweep_interval=60):  # sweeper on, then closed at shutdown
            yield

    routes = [Route("/health", health), Mount("/", app=files_app)]  # the files app last
    return Starlette(routes=routes, lifespan=lifespan)


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})
    # --8<-- [end:app]


if __name__ == "__main__":
    data_dir = Path(os.environ.get("OPENAI_FILES_DATA_DIR", "./data"))
    port = int(os.environ.get("OPENAI_FILES_PORT", "8000"))
    uvicorn.run(build_app(data_dir), host="127.0.0.1", port=port)

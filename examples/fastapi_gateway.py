"""A FastAPI gateway with its own routes and authentication, serving the Files API beside them.

    uvicorn examples.fastapi_gateway:app --port 8000

The gateway checks API keys in its own middleware and tells the files app who the caller is
by putting the owner into the ASGI scope; `scope_owner_auth` reads it from there. Its own
`/v1/chat/completions` route and the mounted `/v1/files` routes work side by side. FastAPI
does not run a mounted app's lifespan, so the gateway's own runs the files service's: the
sweeper while it serves, and the service closed when it stops.

Operations: the files app counts its metrics in Prometheus' default registry, which the
gateway serves at its own `/metrics` beside its other metrics; `/healthz` and `/readyz` (the
files backends' readiness) are the gateway's routes, open without a key so that a load
balancer can probe them.
"""

from __future__ import annotations

import os

# --8<-- [start:gateway]
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files import FilesService, LocalStorage, SQLMetadataStore, create_app
from openai_files.http import SCOPE_OWNER_KEY, Probes, scope_owner_auth

# The gateway's own key -> tenant table (a database in a real gateway).
TENANTS = {"sk-team-a": "team-a", "sk-team-b": "team-b"}
# What a load balancer and Prometheus call without a key.
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


class GatewayAuth:
    """Authenticates every request and records the tenant in the scope, as gateways do."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            headers = dict(scope["headers"])
            token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ").strip()
            tenant = TENANTS.get(token)
            if tenant is None:
                response = JSONResponse(
                    {
                        "error": {
                            "message": "Invalid API key.",
                            "type": "authentication_error",
                            "param": None,
                            "code": "invalid_api_key",
                        }
                    },
                    status_code=401,
                )
                await response(scope, receive, send)
                return
            scope[SCOPE_OWNER_KEY] = tenant
        await self.app(scope, receive, send)


def build_gateway(service: FilesService) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service.running(sweep_interval=60):  # sweeper on, then closed at shutdown
            yield

    gateway = FastAPI(title="Example gateway", lifespan=lifespan)

    @gateway.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> dict[str, Any]:
        body = await request.json()
        return {
            "object": "chat.completion",
            "model": body.get("model", "stub"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "pong"}}],
            "tenant": request.scope[SCOPE_OWNER_KEY],
        }

    # --8<-- [start:operations]
    # Liveness and the readiness of the files backends, and every metric of the process,
    # the files app's included (it counts them in the default registry: metrics=True).
    probes = Probes(service)
    gateway.add_route("/healthz", probes.liveness)
    gateway.add_route("/readyz", probes.readiness)

    @gateway.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    # Mounted last, so the gateway's own routes match first.
    gateway.mount("/", create_app(service, auth=scope_owner_auth(), metrics=True))
    # --8<-- [end:operations]
    gateway.add_middleware(GatewayAuth)
    return gateway
    # --8<-- [end:gateway]


DATA = Path(os.environ.get("OPENAI_FILES_DATA_DIR", "./data"))
DATA.mkdir(parents=True, exist_ok=True)
app = build_gateway(
    FilesService(
        LocalStorage(DATA / "files"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{DATA / 'files.db'}"),
    )
)

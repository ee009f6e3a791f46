"""The admin view of usage: ``GET /admin/usage``, for billing and support, behind its own key.

``GET /admin/usage`` answers ``{"object": "list", "data": [{"owner", "files", "bytes",
"open_uploads"}, ...], "has_more"}``, the owners who store something, by owner, paged with
``after=<last owner>`` and ``limit`` (1 to 1000, default 100); ``?owner=NAME`` answers that
one owner (zeros for an owner who stores nothing). Only the admin key opens it: any other
key, or none, is answered 401 in OpenAI's error shape. Without an admin key there is no route.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..errors import InvalidRequest, shown
from ..inputs import MAX_OWNER_LENGTH
from ..models import UsageList
from ..service import USAGE_PAGE_MAX, FilesService
from .auth import api_key_auth

__all__ = ["DEFAULT_USAGE_LIMIT", "admin_routes"]

DEFAULT_USAGE_LIMIT = 100
"""Owners in a page of ``GET /admin/usage`` unless ``limit`` says otherwise."""


def admin_routes(
    service: FilesService, *, admin_key: str, prefix: str = "/admin"
) -> list[BaseRoute]:
    """``GET {prefix}/usage``, open to ``Authorization: Bearer {admin_key}`` only."""
    authenticate = api_key_auth({admin_key: "admin"})

    async def usage(request: Request) -> Response:
        authenticate(request)
        query = request.query_params
        owner = query.get("owner")
        if owner is not None:
            if not owner or len(owner) > MAX_OWNER_LENGTH:
                raise InvalidRequest(f"owner is 1 to {MAX_OWNER_LENGTH} characters.", param="owner")
            one = await service.usage(owner)
            page = UsageList(data=[one], has_more=False)
        else:
            page = await service.list_usage(
                after=query.get("after") or None, limit=_limit(query.get("limit"))
            )
        return JSONResponse(page.model_dump(mode="json"))

    return [Route(f"{prefix.rstrip('/')}/usage", usage, methods=["GET"])]


def _limit(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_USAGE_LIMIT
    if not value.isdecimal() or not 1 <= int(value) <= USAGE_PAGE_MAX:
        raise InvalidRequest(
            f"limit must be an integer from 1 to {USAGE_PAGE_MAX}; got {shown(value)}.",
            param="limit",
        )
    return int(value)

"""The OpenAPI 3.1 document of the routes `create_app` serves, as a function of its configuration.

`openapi_document(policy, prefixes)` describes every route of `files_routes` under every prefix:
one path item per prefix, all built from the same operation definitions
(`openai_files.openapi_operations`). Response schemas come from the wire models, request schemas
and parameters from the `Policy` (`openai_files.openapi_components`), and every operation lists
the error statuses it can answer with, each carrying OpenAI's error envelope (`ErrorBody`).

``create_app(..., openapi=True)`` serves the document at ``GET /openapi.json``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..policy import Policy
from ._openapi_components import JSON, headers, model_schemas, parameters, request_schemas
from ._openapi_operations import operations as all_operations
from ._responses import too_large_status

__all__ = ["OPENAPI_PATH", "model_schemas", "openapi_document", "openapi_route"]

OPENAPI_PATH = "/openapi.json"


def _normal_prefixes(prefixes: Sequence[str]) -> list[str]:
    seen: list[str] = []
    for prefix in prefixes:
        normal = prefix.rstrip("/")
        if normal not in seen:
            seen.append(normal)
    return seen


def _suffix(prefix: str, used: set[str]) -> str:
    """What a prefix's operation ids end with: nothing for the root, ``_v1`` for ``/v1``."""
    base = "_".join(re.findall(r"[A-Za-z0-9]+", prefix))
    suffix, number = f"_{base}" if base else "", 1
    while suffix in used:
        number += 1
        suffix = f"_{base}_{number}" if base else f"_{number}"
    used.add(suffix)
    return suffix


def _package_version() -> str:
    try:
        return version("openai-files")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0.0.0"


def openapi_document(
    policy: Policy,
    prefixes: Sequence[str],
    *,
    download_redirects: bool = False,
    uploads_api: bool = True,
    file_too_large_status: int | None = None,
) -> JSON:
    """The OpenAPI 3.1 document of the routes served under ``prefixes`` with ``policy``.

    Each prefix gets its own path items (operation ids after the first prefix carry a suffix
    such as ``_v1``). ``download_redirects``: downloads may answer 307 to a presigned URL (an
    app with ``presigned_downloads`` over storage that signs URLs). Without ``uploads_api``
    the Uploads API's paths are left out. ``file_too_large_status``: as `create_app`'s.
    """
    too_large = too_large_status(file_too_large_status, policy)
    operations = all_operations(policy, download_redirects, too_large)
    if not uploads_api:
        operations = {path: ops for path, ops in operations.items() if "/uploads" not in path}
    paths: JSON = {}
    used: set[str] = set()
    for prefix in _normal_prefixes(prefixes):
        suffix = _suffix(prefix, used)
        for path, methods in operations.items():
            item = copy.deepcopy(methods)
            for operation in item.values():
                operation["operationId"] += suffix
            paths[prefix + path] = item
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "openai-files",
            "version": _package_version(),
            "summary": "An OpenAI-compatible Files API, with OpenAI's Uploads API.",
            "description": "Errors are always OpenAI's envelope: "
            '`{"error": {"message", "type", "param", "code"}}`.',
        },
        "tags": [
            {"name": "Files", "description": "Upload, list, retrieve, download, delete."},
            *([{"name": "Uploads", "description": "Large files, sent in parts."}] * uploads_api),
        ],
        "security": [{"bearer": []}],
        "paths": paths,
        "components": {
            "schemas": {**_wire_schemas(policy), **request_schemas(policy)},
            "parameters": parameters(policy),
            "headers": headers(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The API key, as `Authorization: Bearer <key>`.",
                }
            },
        },
    }


def _wire_schemas(policy: Policy) -> dict[str, JSON]:
    """The wire models' schemas, without the ``total`` of a list where it is never sent."""
    schemas = model_schemas()
    if not policy.list_offset:
        schemas["FileList"]["properties"].pop("total")
    return schemas


def openapi_route(document: JSON, path: str = OPENAPI_PATH) -> Route:
    """``GET path``: ``document``, with the mount point as its server when the app is mounted
    under a path (so the document's paths resolve to where the routes really are)."""

    async def serve(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        answer = {**document, "servers": [{"url": root}]} if root else document
        return JSONResponse(answer)

    return Route(path, serve, methods=["GET"])

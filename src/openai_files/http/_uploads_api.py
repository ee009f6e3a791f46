"""The Uploads API endpoints: create, add a part, complete, cancel (each also under /v1)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import SHOWN_LENGTH, InvalidRequest, MalformedUpload, RequestTooLarge, shown
from ..ids import OBJECT_ID_LENGTH
from ..inputs import has_lone_surrogate
from ..policy import Policy
from ..service import FilesService
from ..uploads import PART_ID_PREFIX
from ._files_api import FilesEndpoints, parse_expires_after, request_body
from ._multipart import FormLimits, MultipartReader, boundary_from_content_type
from ._observer import UPLOADED_BYTES_KEY

__all__ = ["UploadsEndpoints"]

MAX_JSON_BODY = 64 * 1024
"""The largest JSON body of ``POST /uploads`` (and of a completion, beside its part ids)."""
PART_OVERHEAD = 1024 * 1024
PART_ID_ALLOWANCE = len(PART_ID_PREFIX) + OBJECT_ID_LENGTH + 16
"""Bytes one part id may take in a completion body: the id, its quotes, a comma, and room
for whitespace (a line break and two levels of indentation when the client pretty-prints)."""


def completion_body_limit(policy: Policy) -> int:
    """The largest body ``POST /uploads/{id}/complete`` accepts: every part id of an upload
    holding ``Policy.max_upload_parts`` parts, and `MAX_JSON_BODY` for the rest."""
    return MAX_JSON_BODY + policy.max_upload_parts * PART_ID_ALLOWANCE


_CREATE_FIELDS = {"filename": str, "purpose": str, "bytes": int, "mime_type": str}


@dataclass(frozen=True)
class UploadsEndpoints:
    """Handlers for ``/uploads``; authentication and rate limits as for the files."""

    files: FilesEndpoints

    @property
    def service(self) -> FilesService:
        return self.files.service

    async def create(self, request: Request) -> Response:
        owner = await self.files.owner(request)
        body = await _json_object(request, self.files.form_limits)
        unknown = sorted(set(body) - {*_CREATE_FIELDS, "expires_after"})
        if unknown:
            raise InvalidRequest(
                f"Unknown parameter: {shown(unknown[0])}.", param=unknown[0][:SHOWN_LENGTH]
            )
        values: dict[str, Any] = {}
        for name, kind in _CREATE_FIELDS.items():
            value = body.get(name)
            if value is None:
                raise InvalidRequest(f"Missing required parameter: {name!r}.", param=name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise InvalidRequest(f"{name} must be a {kind.__name__}.", param=name)
            values[name] = value
        expires_after = None
        if body.get("expires_after") is not None:
            expires_after = parse_expires_after(
                {"expires_after": json.dumps(body["expires_after"])}
            )
        upload = await self.service.uploads.create(owner, expires_after=expires_after, **values)
        return JSONResponse(upload.model_dump(mode="json"))

    async def add_part(self, request: Request) -> Response:
        owner = await self.files.owner(request)
        upload_id = request.path_params["upload_id"]
        max_body = self.service.policy.max_part_size + PART_OVERHEAD
        reader = MultipartReader(
            request_body(request, self.files.form_limits),
            boundary_from_content_type(request.headers.get("content-type")),
            max_body=max_body,
            limits=self.files.form_limits,
        )
        part = None
        try:
            while (field := await reader.next_part()) is not None:
                if field.name != "data":
                    continue
                if part is not None:
                    raise InvalidRequest("Send exactly one 'data' part.", param="data")
                data = _Counted(reader.iter_data())
                part = await self.service.uploads.add_part(owner, upload_id, data)
                request.scope[UPLOADED_BYTES_KEY] = data.total
        except BaseException:
            if part is not None:
                with anyio.CancelScope(shield=True):
                    await self.service.uploads.discard_part(owner, upload_id, part.id)
            raise
        if part is None:
            raise InvalidRequest("Missing required parameter: 'data'.", param="data")
        return JSONResponse(part.model_dump(mode="json"))

    async def complete(self, request: Request) -> Response:
        owner = await self.files.owner(request)
        body = await _json_object(
            request, self.files.form_limits, limit=completion_body_limit(self.service.policy)
        )
        part_ids = body.get("part_ids")
        if not isinstance(part_ids, list):
            raise InvalidRequest("part_ids must be a list of part ids.", param="part_ids")
        md5 = body.get("md5")
        if md5 is not None and not isinstance(md5, str):
            raise InvalidRequest("md5 must be a hexadecimal string.", param="md5")
        upload = await self.service.uploads.complete(
            owner, request.path_params["upload_id"], part_ids=part_ids, md5=md5
        )
        return JSONResponse(upload.model_dump(mode="json"))

    async def cancel(self, request: Request) -> Response:
        owner = await self.files.owner(request)
        upload = await self.service.uploads.cancel(owner, request.path_params["upload_id"])
        return JSONResponse(upload.model_dump(mode="json"))


async def _json_object(
    request: Request, limits: FormLimits, *, limit: int = MAX_JSON_BODY
) -> dict[str, Any]:
    """The request's JSON object body, read up to ``limit`` bytes."""
    chunks: list[bytes] = []
    size = 0
    body: AsyncIterator[bytes] = request_body(request, limits)
    async for chunk in body:
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(limit)
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        value = json.loads(raw or b"{}")
    except (ValueError, RecursionError):
        raise MalformedUpload("The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise MalformedUpload("The request body must be a JSON object.")
    _refuse_lone_surrogates(value)
    return value


def _refuse_lone_surrogates(body: dict[str, Any]) -> None:
    """`InvalidRequest` if a key or string of ``body`` holds an unpaired surrogate escape
    (``"\\ud800"``): valid JSON syntax, but not text (RFC 7493), that no store can hold and no
    answer can repeat. ``param`` names the top-level field it is in."""
    for name, value in body.items():
        if has_lone_surrogate(name) or _holds_lone_surrogate(value):
            raise InvalidRequest(
                "The request body holds an unpaired surrogate escape (\\ud800 to \\udfff "
                "without its pair), which is not a character; send valid Unicode text.",
                param=None if has_lone_surrogate(name) else name,
            )


def _holds_lone_surrogate(value: object) -> bool:
    pending = [value]
    while pending:  # not recursive: the body may nest as deep as the JSON parser allows
        item = pending.pop()
        if isinstance(item, str):
            if has_lone_surrogate(item):
                return True
        elif isinstance(item, dict):
            pending.extend(item)
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


class _Counted:
    """An async iterator over ``chunks`` that adds up their sizes in ``total`` (for the
    metrics); a plain iterator, not a generator, so nothing is left to finalize."""

    def __init__(self, chunks: AsyncIterator[bytes]) -> None:
        self._chunks = chunks
        self.total = 0

    def __aiter__(self) -> _Counted:
        return self

    async def __anext__(self) -> bytes:
        chunk = await anext(self._chunks)
        self.total += len(chunk)
        return chunk

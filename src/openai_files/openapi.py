"""The OpenAPI 3.1 document of the routes `create_app` serves, as a function of its configuration.

`openapi_document(policy, prefixes)` describes every route of `files_routes` under every prefix:
one path item per prefix, all built from the same operation definitions below. Response
schemas come from the wire models (`openai_files.models`), request schemas and parameters from
the `Policy` (purposes, list limits, size limits), and every operation lists the error statuses
it can answer with, each carrying OpenAI's error envelope (`ErrorBody`).

``create_app(..., openapi=True)`` serves the document at ``GET /openapi.json``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .models import (
    ErrorBody,
    FileDeleted,
    FileList,
    FileObject,
    UploadObject,
    UploadPartObject,
)
from .policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, Policy

__all__ = ["OPENAPI_PATH", "model_schemas", "openapi_document", "openapi_route"]

JSON = dict[str, Any]

OPENAPI_PATH = "/openapi.json"
REF_TEMPLATE = "#/components/schemas/{model}"
WIRE_MODELS: tuple[type[BaseModel], ...] = (
    FileObject,
    FileList,
    FileDeleted,
    UploadObject,
    UploadPartObject,
    ErrorBody,
)


class _WireSchema(GenerateJsonSchema):
    """Wire objects are sent with every key, defaulted or not, so in serialization mode every
    field is required (``object`` included, as OpenAI's schemas require it)."""

    def field_is_required(
        self,
        field: core_schema.ModelField | core_schema.DataclassField | core_schema.TypedDictField,
        total: bool,
    ) -> bool:
        if self.mode == "serialization":
            return field.get("serialization_exclude_if") is None
        return super().field_is_required(field, total)


def _ref(kind: str, name: str) -> JSON:
    return {"$ref": f"#/components/{kind}/{name}"}


def _schema(name: str) -> JSON:
    return _ref("schemas", name)


def _json(name: str) -> JSON:
    return {"application/json": {"schema": _schema(name)}}


def model_schemas() -> dict[str, JSON]:
    """The JSON Schemas of the wire models, as responses carry them, keyed by model name."""
    schemas: dict[str, JSON] = {}
    for model in WIRE_MODELS:
        schema = model.model_json_schema(
            ref_template=REF_TEMPLATE, mode="serialization", schema_generator=_WireSchema
        )
        for name, definition in {**schema.pop("$defs", {}), model.__name__: schema}.items():
            if schemas.setdefault(name, definition) != definition:
                raise ValueError(f"two different schemas are named {name!r}")
    return schemas


def _request_schemas(policy: Policy) -> dict[str, JSON]:
    purposes = list(policy.upload_purposes)
    expiry_seconds: JSON = {
        "type": "integer",
        "minimum": EXPIRES_AFTER_MIN,
        "maximum": EXPIRES_AFTER_MAX,
        "description": f"Seconds after the anchor; between {EXPIRES_AFTER_MIN} (1 hour) and "
        f"{EXPIRES_AFTER_MAX} (30 days).",
    }
    anchor: JSON = {
        "type": "string",
        "enum": ["created_at"],
        "description": "What the expiry counts from; only `created_at` is supported.",
    }
    sized = ", ".join(
        f"`{purpose}` {size} bytes"
        for purpose, size in sorted(policy.max_file_size_by_purpose.items())
        if size < policy.max_file_size
    )
    return {
        "FileExpirationAfter": {
            "type": "object",
            "description": "When the file expires. Without it the policy's default applies "
            "(OpenAI's: `batch` files after 30 days, others never).",
            "properties": {"anchor": anchor, "seconds": expiry_seconds},
            "required": ["anchor", "seconds"],
        },
        "CreateFileRequest": {
            "type": "object",
            "description": "The form of `POST /files`. Fields may come in any order. The expiry "
            "is sent either as `expires_after[anchor]` and `expires_after[seconds]` (as the SDKs "
            "send it) or as one `expires_after` JSON object.",
            "properties": {
                "file": {
                    "type": "string",
                    "format": "binary",
                    "description": "The file part, with its filename. At most "
                    f"{policy.max_file_size} bytes" + (f" ({sized})" if sized else "") + ".",
                },
                "purpose": {
                    "type": "string",
                    "enum": purposes,
                    "description": "What the file is for.",
                },
                "expires_after[anchor]": anchor,
                "expires_after[seconds]": expiry_seconds,
                "expires_after": _schema("FileExpirationAfter"),
            },
            "required": ["file", "purpose"],
        },
        "CreateUploadRequest": {
            "type": "object",
            "description": "Starts an upload of a file sent in parts (the Uploads API).",
            "properties": {
                "filename": {"type": "string", "description": "The name of the file."},
                "purpose": {"type": "string", "enum": purposes},
                "bytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": policy.max_upload_size,
                    "description": "The size of the whole file, in bytes; the parts must add "
                    "up to it.",
                },
                "mime_type": {"type": "string", "description": "The file's media type."},
                "expires_after": {
                    "anyOf": [_schema("FileExpirationAfter"), {"type": "null"}],
                    "description": "When the file the upload produces expires.",
                },
            },
            "required": ["filename", "purpose", "bytes", "mime_type"],
            "additionalProperties": False,
        },
        "AddUploadPartRequest": {
            "type": "object",
            "description": "One part of an upload's file.",
            "properties": {
                "data": {
                    "type": "string",
                    "format": "binary",
                    "description": f"The part's bytes: at most {policy.max_part_size} bytes.",
                },
            },
            "required": ["data"],
        },
        "CompleteUploadRequest": {
            "type": "object",
            "description": "Assembles the parts, in the order given, into the upload's file.",
            "properties": {
                "part_ids": {
                    "type": "array",
                    "items": {"type": "string"},
                    "minItems": 1,
                    "uniqueItems": True,
                    "description": "The ids of the parts, in the order of the file.",
                },
                "md5": {
                    "type": ["string", "null"],
                    "description": "The MD5 of the whole file, in hexadecimal; checked when given.",
                },
            },
            "required": ["part_ids"],
        },
    }


def _headers() -> dict[str, JSON]:
    def header(description: str, schema: JSON | None = None) -> JSON:
        return {"description": description, "schema": schema or {"type": "string"}}

    return {
        "AcceptRanges": header("Always `bytes`.", {"type": "string", "enum": ["bytes"]}),
        "ETag": header("The entity tag of the file's content."),
        "LastModified": header("When the file's content was last written, as an HTTP date."),
        "ContentLength": header("The length of the body, in bytes.", {"type": "integer"}),
        "ContentRange": header("The bytes sent and the file's size: `bytes START-END/SIZE`."),
        "UnsatisfiedRange": header("The file's size: `bytes */SIZE`."),
        "ContentDisposition": header("`attachment`, with the file's name."),
        "Location": header("A short-lived presigned URL of the file's bytes."),
        "RetryAfter": header("Seconds to wait before retrying (1 to 60).", {"type": "integer"}),
        "WWWAuthenticate": header("Always `Bearer`."),
        "XShouldRetry": header(
            "Always `false`: retrying the same request will not succeed.",
            {"type": "string", "enum": ["false"]},
        ),
    }


def _parameters(policy: Policy) -> dict[str, JSON]:
    def param(where: str, name: str, schema: JSON, description: str, **extra: Any) -> JSON:
        return {"name": name, "in": where, "schema": schema, "description": description, **extra}

    return {
        "FileId": param("path", "file_id", {"type": "string"}, "The file's id.", required=True),
        "UploadId": param(
            "path", "upload_id", {"type": "string"}, "The upload's id.", required=True
        ),
        "ListPurpose": param(
            "query",
            "purpose",
            {"type": "string"},
            "Only files with this purpose (any purpose, including those only the service "
            "creates, such as `batch_output`).",
        ),
        "ListLimit": param(
            "query",
            "limit",
            {
                "type": "integer",
                "minimum": 1,
                "maximum": policy.list_limit_max,
                "default": policy.list_limit_default,
            },
            f"How many files a page holds, 1 to {policy.list_limit_max}.",
        ),
        "ListOrder": param(
            "query",
            "order",
            {"type": "string", "enum": ["asc", "desc"], "default": "desc"},
            "The order of the files by creation time.",
        ),
        "ListAfter": param(
            "query",
            "after",
            {"type": "string"},
            "A file id, usually the last of the previous page: the page starts right after it.",
        ),
        "Range": param(
            "header",
            "Range",
            {"type": "string"},
            "One byte range, `bytes=START-END`, `bytes=START-` or `bytes=-LENGTH`: answered "
            "with 206. A malformed header, another unit or several ranges get the whole file.",
        ),
        "IfRange": param(
            "header",
            "If-Range",
            {"type": "string"},
            "An entity tag or HTTP date: the range applies only if the file still matches it.",
        ),
        "IfNoneMatch": param(
            "header",
            "If-None-Match",
            {"type": "string"},
            "Entity tags of copies the client holds: 304 when one matches.",
        ),
        "IfModifiedSince": param(
            "header",
            "If-Modified-Since",
            {"type": "string"},
            "An HTTP date: 304 when the file has not changed since (ignored with If-None-Match).",
        ),
        "IdempotencyKey": param(
            "header",
            "Idempotency-Key",
            {"type": "string", "minLength": 1, "maxLength": 255},
            "A retry with the key of an upload that succeeded within 24 hours gets that file "
            "back, without a second file being created (the body is not read).",
        ),
    }


# The headers each error status carries, and its general meaning.
_ERROR_HEADERS: dict[int, dict[str, JSON]] = {
    401: {"WWW-Authenticate": _ref("headers", "WWWAuthenticate")},
    409: {"x-should-retry": _ref("headers", "XShouldRetry")},
    416: {"Content-Range": _ref("headers", "UnsatisfiedRange")},
    429: {"Retry-After": _ref("headers", "RetryAfter")},
}
_ERROR_MEANING = {
    400: "Bad request",
    401: "No API key, or an unknown one",
    404: "Not found",
    408: "Request timeout",
    409: "Conflict",
    413: "Too large",
    416: "Range not satisfiable",
    429: "Rate limited",
    503: "Storage or the metadata store is unavailable; retrying may succeed",
}


_STALLED = "the request body paused for longer than the idle timeout; send it again."


def _errors(**details: str) -> dict[str, JSON]:
    """Error responses by status, with OpenAI's error envelope: ``e400="..."``, ``e404=...``;
    401, 429 and 503 are added to every operation (408 to those that read a body)."""
    described = {
        401: "",
        429: "the rate limiter refused the request.",
        503: "",
        **{int(key.removeprefix("e")): text for key, text in details.items()},
    }
    responses: dict[str, JSON] = {}
    for status in sorted(described):
        text = described[status]
        response: JSON = {
            "description": _ERROR_MEANING[status] + (f": {text}" if text else "."),
            "content": _json("ErrorBody"),
        }
        if status in _ERROR_HEADERS:
            response["headers"] = dict(_ERROR_HEADERS[status])
        responses[str(status)] = response
    return responses


def _ok(name: str, description: str) -> dict[str, JSON]:
    return {"200": {"description": description, "content": _json(name)}}


def _json_body(name: str) -> JSON:
    return {"required": True, "content": _json(name)}


def _operations(policy: Policy, download_redirects: bool) -> dict[str, dict[str, JSON]]:
    """Every operation, by path relative to the prefix and by method."""
    files, uploads = ["Files"], ["Uploads"]
    file_id, upload_id = [_ref("parameters", "FileId")], [_ref("parameters", "UploadId")]
    content_types = {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
    if policy.keep_media_type:
        content_types["*/*"] = content_types["application/octet-stream"]
    body_headers = {
        "Accept-Ranges": _ref("headers", "AcceptRanges"),
        "ETag": _ref("headers", "ETag"),
        "Last-Modified": _ref("headers", "LastModified"),
        "Content-Length": _ref("headers", "ContentLength"),
        "Content-Disposition": _ref("headers", "ContentDisposition"),
    }
    validators = {key: body_headers[key] for key in ("Accept-Ranges", "ETag", "Last-Modified")}
    download: dict[str, JSON] = {
        "200": {
            "description": "The file's bytes.",
            "headers": body_headers,
            "content": content_types,
        },
        "206": {
            "description": "The requested range of the file's bytes.",
            "headers": {**body_headers, "Content-Range": _ref("headers", "ContentRange")},
            "content": content_types,
        },
        "304": {
            "description": "The client's copy is current (If-None-Match or If-Modified-Since).",
            "headers": validators,
        },
    }
    if download_redirects:
        download["307"] = {
            "description": "The bytes are to be fetched from the object store directly.",
            "headers": {"Location": _ref("headers", "Location")},
        }
    list_params = [
        _ref("parameters", name) for name in ("ListPurpose", "ListLimit", "ListOrder", "ListAfter")
    ]
    content_params = [
        _ref("parameters", name) for name in ("Range", "IfRange", "IfNoneMatch", "IfModifiedSince")
    ]
    return {
        "/files": {
            "get": {
                "operationId": "listFiles",
                "tags": files,
                "summary": "List files",
                "description": "The caller's files, newest first by default, a page at a time.",
                "parameters": list_params,
                "responses": {
                    **_ok("FileList", "A page of files."),
                    **_errors(e400="a bad `limit`, `order` or `after`."),
                },
            },
            "post": {
                "operationId": "createFile",
                "tags": files,
                "summary": "Upload a file",
                "description": "Streams the file to storage; the file object is returned once "
                "the whole file is stored.",
                "parameters": [_ref("parameters", "IdempotencyKey")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": _schema("CreateFileRequest"),
                            "encoding": {"expires_after": {"contentType": "application/json"}},
                        }
                    },
                },
                "responses": {
                    **_ok("FileObject", "The file, stored."),
                    **_errors(
                        e400="a missing or bad field, a malformed form, a file type or content "
                        "the purpose does not accept, or the owner's quota would be passed.",
                        e408=_STALLED,
                        e409="the upload was abandoned before it completed (its record was "
                        "reclaimed as stale); upload it again.",
                        e413="the file, or the form around it, passed its maximum size.",
                    ),
                },
            },
        },
        "/files/{file_id}": {
            "get": {
                "operationId": "retrieveFile",
                "tags": files,
                "summary": "Retrieve a file",
                "parameters": file_id,
                "responses": {
                    **_ok("FileObject", "The file."),
                    **_errors(e404="no such file for the caller (or it expired)."),
                },
            },
            "delete": {
                "operationId": "deleteFile",
                "tags": files,
                "summary": "Delete a file",
                "parameters": file_id,
                "responses": {
                    **_ok("FileDeleted", "The file is deleted."),
                    **_errors(
                        e404="no such file for the caller (or it expired).",
                        e409="the file is in use (held by a batch) and cannot be deleted now.",
                    ),
                },
            },
        },
        "/files/{file_id}/content": {
            "get": {
                "operationId": "downloadFile",
                "tags": files,
                "summary": "Download a file's content",
                "description": "The raw bytes, whole or one range, never JSON.",
                "parameters": [*file_id, *content_params],
                "responses": {
                    **download,
                    **_errors(
                        e404="no such file for the caller (or it expired).",
                        e416="the range starts past the end of the file.",
                    ),
                },
            },
        },
        "/uploads": {
            "post": {
                "operationId": "createUpload",
                "tags": uploads,
                "summary": "Start an upload in parts",
                "description": f"The upload expires {policy.upload_ttl} seconds after it is "
                "created unless completed.",
                "requestBody": _json_body("CreateUploadRequest"),
                "responses": {
                    **_ok("UploadObject", "The upload, pending."),
                    **_errors(
                        e400="a missing, unknown or bad field, a body that is not a JSON "
                        "object, or the owner's quota would be passed.",
                        e408=_STALLED,
                        e413="the JSON body is too large.",
                    ),
                },
            },
        },
        "/uploads/{upload_id}/parts": {
            "post": {
                "operationId": "addUploadPart",
                "tags": uploads,
                "summary": "Add a part to an upload",
                "parameters": upload_id,
                "requestBody": {
                    "required": True,
                    "content": {"multipart/form-data": {"schema": _schema("AddUploadPartRequest")}},
                },
                "responses": {
                    **_ok("UploadPartObject", "The part, stored."),
                    **_errors(
                        e400="no `data` part, a malformed form, or the upload is no longer "
                        "pending.",
                        e404="no such upload for the caller.",
                        e408=_STALLED,
                        e413="the part passed its maximum size, or the upload's size.",
                    ),
                },
            },
        },
        "/uploads/{upload_id}/complete": {
            "post": {
                "operationId": "completeUpload",
                "tags": uploads,
                "summary": "Complete an upload",
                "parameters": upload_id,
                "requestBody": _json_body("CompleteUploadRequest"),
                "responses": {
                    **_ok("UploadObject", "The upload, completed, with the file it produced."),
                    **_errors(
                        e400="bad `part_ids`, parts that do not add up to the upload's size, "
                        "an `md5` that does not match, content the purpose does not accept, "
                        "or the upload is no longer pending.",
                        e404="no such upload for the caller.",
                        e408=_STALLED,
                        e409="the file being assembled was reclaimed as stale; complete the "
                        "upload again.",
                        e413="the JSON body is too large.",
                    ),
                },
            },
        },
        "/uploads/{upload_id}/cancel": {
            "post": {
                "operationId": "cancelUpload",
                "tags": uploads,
                "summary": "Cancel an upload",
                "parameters": upload_id,
                "responses": {
                    **_ok("UploadObject", "The upload, cancelled."),
                    **_errors(
                        e400="the upload is no longer pending.",
                        e404="no such upload for the caller.",
                    ),
                },
            },
        },
    }


def _head_of(get: JSON) -> JSON:
    """The HEAD operation of a GET one: the same answers, headers only; a HEAD request to the
    content is never redirected."""
    head = copy.deepcopy(get)
    head["operationId"] = get["operationId"] + "Head"
    head["summary"] = get["summary"] + " (headers only)"
    head["responses"].pop("307", None)
    for response in head["responses"].values():
        response.pop("content", None)
    return head


def _with_heads(operations: dict[str, dict[str, JSON]]) -> dict[str, dict[str, JSON]]:
    """Every GET also answers HEAD (Starlette adds it to every GET route)."""
    return {
        path: {**methods, "head": _head_of(methods["get"])} if "get" in methods else methods
        for path, methods in operations.items()
    }


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
) -> JSON:
    """The OpenAPI 3.1 document of the routes served under ``prefixes`` with ``policy``.

    Each prefix gets its own path items (operation ids after the first prefix carry a suffix
    such as ``_v1``). ``download_redirects``: downloads may answer 307 to a presigned URL (an
    app with ``presigned_downloads`` over storage that signs URLs). Without ``uploads_api``
    the Uploads API's paths are left out.
    """
    operations = _with_heads(_operations(policy, download_redirects))
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
            "schemas": {**model_schemas(), **_request_schemas(policy)},
            "parameters": _parameters(policy),
            "headers": _headers(),
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The API key, as `Authorization: Bearer <key>`.",
                }
            },
        },
    }


def openapi_route(document: JSON, path: str = OPENAPI_PATH) -> Route:
    """``GET path``: ``document``, with the mount point as its server when the app is mounted
    under a path (so the document's paths resolve to where the routes really are)."""

    async def serve(request: Request) -> Response:
        root = request.scope.get("root_path", "")
        answer = {**document, "servers": [{"url": root}]} if root else document
        return JSONResponse(answer)

    return Route(path, serve, methods=["GET"])

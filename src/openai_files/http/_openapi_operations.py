"""The operations of the OpenAPI document (`openai_files.openapi`): every route of
`files_routes`, relative to its prefix, with its parameters, request body, answers and the
error statuses it can answer with, each carrying OpenAI's error envelope (`ErrorBody`)."""

from __future__ import annotations

import copy

from ..policy import Policy
from ._openapi_components import JSON, json_content, ref, schema

__all__ = ["operations"]

# The headers each error status carries.
_ERROR_HEADERS: dict[int, dict[str, JSON]] = {
    401: {"WWW-Authenticate": ref("headers", "WWWAuthenticate")},
    409: {"x-should-retry": ref("headers", "XShouldRetry")},
    416: {"Content-Range": ref("headers", "UnsatisfiedRange")},
    429: {"Retry-After": ref("headers", "RetryAfter")},
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
            "content": json_content("ErrorBody"),
        }
        if status in _ERROR_HEADERS:
            response["headers"] = dict(_ERROR_HEADERS[status])
        responses[str(status)] = response
    return responses


def _ok(name: str, description: str) -> dict[str, JSON]:
    return {"200": {"description": description, "content": json_content(name)}}


def _json_body(name: str) -> JSON:
    return {"required": True, "content": json_content(name)}


def _defined(policy: Policy, download_redirects: bool) -> dict[str, dict[str, JSON]]:
    """Every operation, by path relative to the prefix and by method."""
    files, uploads = ["Files"], ["Uploads"]
    file_id, upload_id = [ref("parameters", "FileId")], [ref("parameters", "UploadId")]
    binary = {"schema": {"type": "string", "format": "binary"}}
    content_types = {"application/octet-stream": binary}
    content_types |= {media_type: binary for media_type in policy.download_media_types.values()}
    if policy.keep_media_type:
        content_types["*/*"] = binary
    body_headers = {
        "Accept-Ranges": ref("headers", "AcceptRanges"),
        "ETag": ref("headers", "ETag"),
        "Last-Modified": ref("headers", "LastModified"),
        "Content-Length": ref("headers", "ContentLength"),
        "Content-Disposition": ref("headers", "ContentDisposition"),
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
            "headers": {**body_headers, "Content-Range": ref("headers", "ContentRange")},
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
            "headers": {"Location": ref("headers", "Location")},
        }
    list_params = [
        ref("parameters", name) for name in ("ListPurpose", "ListLimit", "ListOrder", "ListAfter")
    ] + [ref("parameters", "ListOffset")] * policy.list_offset
    content_params = [
        ref("parameters", name) for name in ("Range", "IfRange", "IfNoneMatch", "IfModifiedSince")
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
                "parameters": [ref("parameters", "IdempotencyKey")],
                "requestBody": {
                    "required": True,
                    "content": {
                        "multipart/form-data": {
                            "schema": schema("CreateFileRequest"),
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
                    "content": {"multipart/form-data": {"schema": schema("AddUploadPartRequest")}},
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


def operations(
    policy: Policy, download_redirects: bool, file_too_large_status: int = 413
) -> dict[str, dict[str, JSON]]:
    """Every operation, by path relative to the prefix and by method; every GET also HEAD;
    ``file_too_large`` documented under ``file_too_large_status``."""
    defined = _defined(policy, download_redirects)
    if file_too_large_status != 413:
        for methods in defined.values():
            for operation in methods.values():
                _too_large_as(operation["responses"], str(file_too_large_status))
    return _with_heads(defined)


def _too_large_as(responses: JSON, status: str) -> None:
    """Document the 413 answer of ``responses`` under ``status``, as the app answers it."""
    too_large = responses.pop("413", None)
    if too_large is None:
        return
    if status in responses:
        meaning = too_large["description"].split(": ", 1)[-1]
        responses[status]["description"] = responses[status]["description"].rstrip(".") + (
            f"; or {meaning}"
        )
    else:
        responses[status] = too_large

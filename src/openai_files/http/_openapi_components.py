"""The components of the OpenAPI document (`openai_files.openapi`): the response schemas of
the wire models (`openai_files.models`), and the request schemas, parameters and headers the
`Policy` shapes (purposes, list limits, size limits)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema
from pydantic_core import core_schema

from ..models import (
    FileDeleted,
    FileList,
    FileObject,
    UploadObject,
    UploadPartObject,
)
from ..policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, PURPOSE_PATTERN, Policy
from ._responses import ErrorBody

__all__ = [
    "JSON",
    "headers",
    "json_content",
    "model_schemas",
    "parameters",
    "ref",
    "request_schemas",
    "schema",
]

JSON = dict[str, Any]

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


def ref(kind: str, name: str) -> JSON:
    return {"$ref": f"#/components/{kind}/{name}"}


def schema(name: str) -> JSON:
    return ref("schemas", name)


def json_content(name: str) -> JSON:
    return {"application/json": {"schema": schema(name)}}


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


def request_schemas(policy: Policy) -> dict[str, JSON]:
    purpose: JSON = (
        {"type": "string", "pattern": PURPOSE_PATTERN}
        if policy.upload_purposes is None
        else {"type": "string", "enum": list(policy.upload_purposes)}
    )
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
                "purpose": {**purpose, "description": "What the file is for."},
                "expires_after[anchor]": anchor,
                "expires_after[seconds]": expiry_seconds,
                "expires_after": schema("FileExpirationAfter"),
            },
            "required": ["file", "purpose"],
        },
        "CreateUploadRequest": {
            "type": "object",
            "description": "Starts an upload of a file sent in parts (the Uploads API).",
            "properties": {
                "filename": {"type": "string", "description": "The name of the file."},
                "purpose": purpose,
                "bytes": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": policy.upload_limit,
                    "description": "The size of the whole file, in bytes; the parts must add "
                    "up to it.",
                },
                "mime_type": {"type": "string", "description": "The file's media type."},
                "expires_after": {
                    "anyOf": [schema("FileExpirationAfter"), {"type": "null"}],
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


def headers() -> dict[str, JSON]:
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


def parameters(policy: Policy) -> dict[str, JSON]:
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
        "ListOffset": param(
            "query",
            "offset",
            {"type": "integer", "minimum": 0, "default": 0}
            | ({} if policy.list_offset_max is None else {"maximum": policy.list_offset_max}),
            "How many files of the list to skip, instead of `after` (not with it)"
            + ("." if policy.list_offset_max is None else "; past the maximum, page with `after`."),
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

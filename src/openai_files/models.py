"""The wire objects, exactly as OpenAI's clients expect them: every key is always present."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from ._deprecated import moved_attribute

__all__ = [
    "FileDeleted",
    "FileList",
    "FileObject",
    "FileStatus",
    "OwnerUsage",
    "UploadObject",
    "UploadPartObject",
    "UploadStatus",
    "UsageList",
]

FileStatus = Literal["uploaded", "processed", "error", "deleted"]
UploadStatus = Literal["pending", "completed", "cancelled", "expired"]


class _Wire(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class FileObject(_Wire):
    """A file as `POST /v1/files`, `GET /v1/files/{id}` and lists return it."""

    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: FileStatus
    status_details: str | None
    expires_at: int | None


class FileList(_Wire):
    """A page of files; `first_id`/`last_id` are null on an empty page. ``total``, the number
    of files the list has in all, is sent only under `Policy.list_offset`."""

    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
    total: int | None = Field(default=None, exclude_if=lambda total: total is None)


class FileDeleted(_Wire):
    """The answer to `DELETE /v1/files/{id}`."""

    id: str
    object: Literal["file"] = "file"
    deleted: bool


class OwnerUsage(_Wire):
    """What one owner stores now, as the admin view of usage shows it: ``files`` and
    ``bytes`` that count against a quota (files being uploaded included), and ``open_uploads``
    of the Uploads API."""

    owner: str
    files: int
    bytes: int
    open_uploads: int = 0


class UsageList(_Wire):
    """A page of owners' usage, in ascending order of owner: ``GET /admin/usage``."""

    object: Literal["list"] = "list"
    data: list[OwnerUsage]
    has_more: bool


class UploadObject(_Wire):
    """An upload of the Uploads API; ``file`` is the file it produced once completed."""

    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: UploadStatus
    expires_at: int
    file: FileObject | None


class UploadPartObject(_Wire):
    """One part added to an upload."""

    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: int
    upload_id: str


def __getattr__(name: str) -> object:
    # ErrorBody and ErrorDetail, OpenAI's error envelope, moved to the HTTP edge.
    return moved_attribute(__name__, name)

"""Records, uploads and parts for the metadata conformance suite, with sensible defaults."""

from __future__ import annotations

import secrets

from ..ids import new_file_id, new_object_id
from ..metadata.base import FileRecord, MetadataStore, PartRecord, RecordState, UploadRecord

__all__ = ["NOW", "T0", "make_part", "make_record", "make_upload", "page_through"]

NOW = 1_800_000_000
"""The suite's "now" (Unix seconds)."""
T0 = NOW * 1_000_000
"""`NOW` in microseconds, the ``created_us`` of the suite's first record."""


def make_record(
    owner: str = "alice",
    *,
    created_us: int = T0,
    purpose: str = "batch",
    state: RecordState = "active",
    expires_at: int | None = None,
    filename: str = "data.jsonl",
) -> FileRecord:
    """A record with sensible defaults and a fresh id for ``created_us``."""
    return FileRecord(
        id=new_file_id(created_us),
        owner=owner,
        purpose=purpose,
        filename=filename,
        bytes=12,
        created_us=created_us,
        expires_at=expires_at,
        status="processed",
        status_details=None,
        storage_key=secrets.token_hex(16),
        sha256="0" * 64,
        media_type="application/jsonl",
        state=state,
    )


def make_upload(
    owner: str = "alice", *, size: int = 100, expires_at: int = NOW + 3600
) -> UploadRecord:
    """A pending upload of ``size`` declared bytes with a fresh id."""
    return UploadRecord(
        id=new_object_id("upload_"),
        owner=owner,
        filename="data.bin",
        purpose="assistants",
        bytes=size,
        mime_type="application/octet-stream",
        expires_after=None,
        created_at=NOW,
        expires_at=expires_at,
        state="pending",
    )


def make_part(upload: UploadRecord, size: int) -> PartRecord:
    """A part of ``size`` bytes for ``upload``, with a fresh id."""
    part_id = new_object_id("part_")
    return PartRecord(
        id=part_id,
        upload_id=upload.id,
        owner=upload.owner,
        bytes=size,
        sha256="0" * 64,
        storage_key=f"uploads/{upload.id}/{part_id}",
        created_at=NOW,
    )


async def page_through(
    store: MetadataStore, owner: str, *, limit: int, order: str, purpose: str | None = None
) -> list[str]:
    seen: list[str] = []
    after = None
    while True:
        page = await store.list(
            owner,
            now=NOW,
            purpose=purpose,
            after=after,
            limit=limit,
            order="asc" if order == "asc" else "desc",
        )
        seen += [record.id for record in page]
        if len(page) < limit:
            return seen
        after = page[-1].cursor

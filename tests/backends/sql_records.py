"""File records for the SQL store's own tests: one pending at `NOW`, and one made active the
way an upload past the one-step size makes it (a pending `insert`, then `commit`)."""

from __future__ import annotations

import uuid

from openai_files import SQLMetadataStore
from openai_files.metadata.base import FileRecord, Quota

OWNER = "alice"
NOW = 1_700_000_000
QUOTA = Quota(max_files=1_000, max_bytes=10**9)


def pending(index: int = 0) -> FileRecord:
    """A pending record of `OWNER`, created ``index`` microseconds after `NOW`."""
    return FileRecord(
        id=f"file-{uuid.uuid4().hex}",
        owner=OWNER,
        purpose="batch",
        filename="data.jsonl",
        bytes=0,
        created_us=NOW * 1_000_000 + index,
        expires_at=None,
        status="uploaded",
        status_details=None,
        storage_key=uuid.uuid4().hex,
        sha256=None,
        media_type=None,
        state="pending",
        changed_at=NOW,
    )


async def created(
    store: SQLMetadataStore,
    index: int = 0,
    *,
    key: str | None = None,
    quota: Quota | None = QUOTA,
) -> FileRecord:
    """`pending` ``index`` inserted under ``quota`` and committed (remembering ``key``), as the
    store then holds it."""
    record = pending(index)
    await store.insert(record, quota=quota)
    done = record.replace(status="processed")
    assert await store.commit(done, idempotency_key=key) == record.id
    return done.replace(state="active")

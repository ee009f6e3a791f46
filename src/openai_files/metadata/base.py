"""The metadata-store protocol and the record it stores."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

__all__ = ["DEFAULT_TABLE_PREFIX", "Cursor", "FileRecord", "MetadataStore", "Order", "RecordState"]

DEFAULT_TABLE_PREFIX = "openai_files_"
"""The prefix of the SQL store's table names unless another is configured."""

Order = Literal["asc", "desc"]
RecordState = Literal["pending", "active", "deleting"]
"""``pending``: bytes are being uploaded, invisible to clients; ``active``: visible until it
expires; ``deleting``: removed for clients, its bytes still to be deleted."""

Cursor = tuple[int, str]
"""A position in the listing order: ``(created_us, file_id)``."""


@dataclass(frozen=True)
class FileRecord:
    """Everything stored about one file."""

    id: str
    owner: str
    purpose: str
    filename: str
    bytes: int
    created_us: int
    expires_at: int | None
    status: str
    status_details: str | None
    storage_key: str
    sha256: str | None
    media_type: str | None
    state: RecordState

    @property
    def created_at(self) -> int:
        return self.created_us // 1_000_000

    @property
    def cursor(self) -> Cursor:
        return (self.created_us, self.id)

    def visible_at(self, now: int) -> bool:
        """Active and not expired at ``now`` (Unix seconds): an expired file is gone at once."""
        return self.state == "active" and (self.expires_at is None or now < self.expires_at)

    def replace(self, **changes: object) -> FileRecord:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@runtime_checkable
class MetadataStore(Protocol):
    """File records by owner and id.

    Every read and write takes the owner; a record of another owner behaves exactly like a
    missing one. "Visible" means state ``active`` and not expired at ``now`` (Unix seconds).
    Listing order is ``(created_us, id)``, ascending or descending, which is total, so keyset
    pagination neither skips nor repeats a record. Every operation is atomic, also across
    processes sharing one database. Errors are the library's: `Conflict` for a duplicate id,
    `BackendUnavailable` when the store cannot be reached.
    """

    async def insert(self, record: FileRecord) -> None:
        """Add a new record; `Conflict` if its id exists already."""
        ...

    async def commit(self, record: FileRecord) -> bool:
        """Replace the ``pending`` record with this id and owner by ``record`` (now ``active``).

        Returns False, changing nothing, when no such pending record exists any more.
        """
        ...

    async def get(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """The visible record, or None."""
        ...

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> list[FileRecord]:
        """Up to ``limit`` visible records in ``order``, starting strictly after ``after``."""
        ...

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        """Atomically make the visible record ``deleting`` and return it so; None if not visible.

        Of several concurrent callers for one file, exactly one gets the record.
        """
        ...

    async def remove(self, owner: str, file_id: str) -> None:
        """Delete the record in whatever state; a missing record is a no-op."""
        ...

    async def aclose(self) -> None:
        """Release connections. The store is not used afterwards."""
        ...

"""The records a metadata store keeps (files, uploads, parts), the quota and usage it counts,
and their states: plain values, re-exported by `openai_files.metadata.base`."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

Order = Literal["asc", "desc"]
RecordState = Literal["pending", "active", "deleting", "deleted"]
"""``pending``: bytes are being uploaded, invisible to clients; ``active``: visible until it
expires (or, while held, until it is released); ``deleting``: gone for clients, its bytes still
to be removed; ``deleted``: a soft-deleted file's record, kept without its bytes."""

Cursor = tuple[int, str]
"""A position in the listing order: ``(created_us, file_id)``."""


@dataclass(frozen=True)
class Quota:
    """The most an owner may store: files and bytes of ``pending`` and ``active`` records.
    None means no limit."""

    max_files: int | None = None
    max_bytes: int | None = None

    def allows(self, files: int, size: int) -> bool:
        return (self.max_files is None or files <= self.max_files) and (
            self.max_bytes is None or size <= self.max_bytes
        )


@dataclass(frozen=True)
class Usage:
    """What an owner stores now: the files and bytes that count against a `Quota`, and how
    many uploads of the Uploads API are open (``pending`` or ``completing``).

    ``bytes`` counts the ``pending`` and ``active`` files and, for each upload, its
    `UploadRecord.reserved` bytes (its parts, and the parts on their way).
    """

    files: int
    bytes: int
    open_uploads: int = 0


@dataclass(frozen=True)
class FileRecord:
    """Everything stored about one file.

    While ``pending``, ``bytes`` is what the upload has reserved against the owner's quota so
    far; once ``active``, it is the file's size. ``changed_at`` is when the state last changed
    (Unix seconds), which tells the sweeper how long a record has been stuck.
    """

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
    changed_at: int = 0
    hold_count: int = 0
    etag: str | None = None

    @property
    def created_at(self) -> int:
        return self.created_us // 1_000_000

    @property
    def cursor(self) -> Cursor:
        return (self.created_us, self.id)

    def expired_at(self, now: int) -> bool:
        """Past its ``expires_at`` at ``now`` (Unix seconds), whether or not it is held."""
        return self.expires_at is not None and now >= self.expires_at

    def visible_at(self, now: int) -> bool:
        """Active and not expired at ``now``; a held file does not expire until released."""
        return self.state == "active" and (self.hold_count > 0 or not self.expired_at(now))

    @property
    def counts_against_quota(self) -> bool:
        return self.state in ("pending", "active")

    def replace(self, **changes: object) -> FileRecord:
        """A copy with ``changes``, as `dataclasses.replace` makes it (no field is computed at
        construction), at a fifth of its cost: every create makes several."""
        if not changes.keys() <= _FILE_FIELDS:
            unknown = sorted(changes.keys() - _FILE_FIELDS)
            raise TypeError(f"FileRecord has no field {unknown[0]!r}")
        copy = object.__new__(FileRecord)
        fields = copy.__dict__
        fields.update(self.__dict__)
        fields.update(changes)
        return copy


_FILE_FIELDS = frozenset(field.name for field in dataclasses.fields(FileRecord))


UploadState = Literal["pending", "completing", "completed", "cancelled", "expired"]
"""``completing``: one request is assembling the file; the others see the upload as taken.
``pending`` and ``completing`` uploads are *open*: they count in `Usage.open_uploads`."""

OPEN_UPLOAD_STATES: tuple[UploadState, ...] = ("pending", "completing")

PartOutcome = Literal["added", "not_pending", "over_declared_bytes", "over_part_limit"]
"""What `MetadataStore.add_part` did: ``added`` the part, or refused it because the upload is
no longer ``pending``, because its parts would hold more than its declared ``bytes``, or
because it holds the most parts allowed already."""


@dataclass(frozen=True)
class UploadRecord:
    """An upload of the Uploads API: the file it will produce, declared up front.

    The store keeps three running totals: ``received``, the bytes of its parts, and
    ``part_count``, how many there are (both kept with each part added or removed, so that a
    part never re-reads the others), and ``reserved``, the bytes it counts in its owner's
    `Usage`: its parts, plus what parts on their way have reserved (`MetadataStore.
    reserve_upload`). Once the upload is no longer open, ``reserved`` equals ``received`` and
    both fall to zero as its parts are discarded.

    ``multipart`` is the storage's multipart upload that the upload's parts go into where the
    storage has them (`MultipartStorage`), as ``"<object key> <multipart upload id>"``, set by
    the first part that needs it; ``part_numbers`` is how many of its part numbers the parts
    have claimed (`MetadataStore.claim_part_numbers`).
    """

    id: str
    owner: str
    filename: str
    purpose: str
    bytes: int
    mime_type: str
    expires_after: int | None
    created_at: int
    expires_at: int
    state: UploadState
    file_id: str | None = None
    received: int = 0
    part_count: int = 0
    reserved: int = 0
    multipart: str | None = None
    part_numbers: int = 0

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_UPLOAD_STATES

    def replace(self, **changes: object) -> UploadRecord:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]


@dataclass(frozen=True)
class PartRecord:
    """One part of an upload, stored on its own until the upload completes."""

    id: str
    upload_id: str
    owner: str
    bytes: int
    sha256: str
    storage_key: str
    created_at: int


def check_keyed(record: FileRecord, idempotency_key: str | None) -> None:
    """`ValueError` unless ``record`` may be inserted under ``idempotency_key`` (see
    `MetadataStore.insert`): a key goes with an ``active`` record only."""
    if idempotency_key is not None and record.state != "active":
        raise ValueError(f"an idempotency key goes with an active record, not a {record.state} one")

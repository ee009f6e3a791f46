"""The soak's check after the load (`soak.py`): through the library, on the same S3 bucket and
tables and without faults, every file the clients were told of is listed once and reads back
with its SHA-256, nothing is leaked or stuck half-way, and each owner's usage is what it
stores. What it finds goes into `Findings`."""

from __future__ import annotations

import asyncio
import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from soak_clients import (
    LIST_LIMIT_MAX,
    MAX_EXAMPLES,
    MAX_PAGES,
    ORPHANS,
    Client,
    Expected,
)
from sqlalchemy import func, select

from openai_files import FilesService, SQLMetadataStore
from openai_files.errors import OpenAIFilesError
from openai_files.metadata.base import Quota

BUCKET = "openai-files-soak"
PREFIX = "soak"
"""Where the replicas keep their objects: the bucket, and the prefix of every key."""


# -- after the load: the library, without faults ------------------------------------------------


@dataclass
class Findings:
    """What the check after the load found."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    sweep: dict[str, int] = field(default_factory=dict)
    before_orphan_sweep: dict[str, int] = field(default_factory=dict)
    after_orphan_sweep: dict[str, int] = field(default_factory=dict)
    orphans_removed: int = 0

    @property
    def leaked(self) -> int:
        """What the service's own sweep left behind: objects no record knows, records that
        point to nothing, records and uploads stuck half-way, incomplete multipart uploads."""
        return sum(self.before_orphan_sweep.values())

    @property
    def recorded_objects_removed(self) -> int:
        """Objects that ``sweep_orphans`` removed although a record knew them."""
        return self.orphans_removed - self.before_orphan_sweep.get(ORPHANS, 0)

    def add(self, category: str, detail: str) -> None:
        self.counts[category] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{category}: {detail}")


async def verify(
    service: FilesService, clients: Sequence[Client], s3: Any, sent: dict[str, Expected]
) -> Findings:
    findings = Findings()
    metadata = service.metadata
    assert isinstance(metadata, SQLMetadataStore)
    for upload_id, owner in await _pending_uploads(metadata):
        await service.uploads.cancel(owner, upload_id)
        findings.counts["uploads left pending, cancelled"] += 1
    await asyncio.sleep(1.1)  # the sweep takes what changed before the current second
    findings.sweep = vars(await service.sweep(stale_after=0))
    findings.before_orphan_sweep = await _accounting(metadata, s3, findings, "before sweep_orphans")
    findings.orphans_removed = await service.sweep_orphans(grace=0)
    findings.after_orphan_sweep = await _accounting(metadata, s3, findings, "after sweep_orphans")
    by_owner: dict[str, list[Client]] = {}
    for client in clients:
        by_owner.setdefault(client.owner, []).append(client)
    for owner, owned in sorted(by_owner.items()):
        await _check_owner(service, owner, owned, sent, findings)
    await _check_usage(metadata, service.policy.quota, findings)
    return findings


async def _pending_uploads(metadata: SQLMetadataStore) -> list[tuple[str, str]]:
    uploads = metadata.tables.uploads
    query = select(uploads.c.id, uploads.c.owner).where(uploads.c.state == "pending")
    async with metadata.engine.connect() as connection:
        return [(row.id, row.owner) for row in (await connection.execute(query)).all()]


async def _listing(service: FilesService, owner: str, order: str, findings: Findings) -> list[Any]:
    files: list[Any] = []
    after = None
    for _ in range(MAX_PAGES):
        page = await service.list(owner, limit=LIST_LIMIT_MAX, order=order, after=after)
        files += page.data
        if not page.has_more:
            return files
        after = page.last_id
    findings.add("listing", f"{owner}: no end after {MAX_PAGES} pages")
    return files


async def _check_owner(
    service: FilesService,
    owner: str,
    clients: Sequence[Client],
    sent: dict[str, Expected],
    findings: Findings,
) -> None:
    """Every file of ``owner`` the clients know alive is listed once, and every listed file is
    one a client sent, may exist and reads back intact."""
    listed = await _listing(service, owner, "asc", findings)
    backwards = await _listing(service, owner, "desc", findings)
    ids = [file.id for file in listed]
    if len(set(ids)) != len(ids) or ids != [file.id for file in reversed(backwards)]:
        findings.add("listing", f"{owner}: pages repeat or disagree between asc and desc")
    alive = {i: e for client in clients for i, e in client.alive.items()}
    doubtful = {i for client in clients for i in client.doubtful}
    deleted = {i for client in clients for i in client.deleted}
    uncertain = {name for client in clients for name in client.uncertain}
    first_of: dict[str, str] = {}
    quota = service.policy.quota
    findings.counts["files listed at the end"] += len(listed)
    if quota is not None and not quota.allows(len(listed), sum(f.bytes for f in listed)):
        findings.add("quota exceeded at the end", f"{owner}: {len(listed)} files")
    for file in listed:
        expected = sent.get(file.filename)
        if expected is None or expected.owner != owner:
            findings.add("unexpected file", f"{file.id} {file.filename!r} listed for {owner}")
            continue
        if file.filename in first_of:
            detail = f"{file.id} and {first_of[file.filename]}, both {file.filename} of {owner}"
            findings.add("duplicate file", detail)
        first_of.setdefault(file.filename, file.id)
        if file.id in deleted:
            findings.add("deleted file back", f"{file.id} {file.filename} of {owner}")
        elif file.id in alive:
            findings.counts["files alive, found"] += 1
        elif file.id in doubtful or file.filename in uncertain:
            findings.counts["files of failed requests, found intact"] += 1
        else:
            findings.add("unexpected file", f"{file.id} {file.filename}: no client saw it made")
        await _check_content(service, owner, file.id, expected, findings)
    for file_id in sorted(set(alive) - set(ids)):
        findings.add("file lost", f"{file_id} {alive[file_id].filename} of {owner}")


async def _check_content(
    service: FilesService, owner: str, file_id: str, expected: Expected, findings: Findings
) -> None:
    try:
        content = await service.content(owner, file_id)
    except OpenAIFilesError as exc:
        findings.add("file lost", f"{file_id} {expected.filename}: {exc!r}")
        return
    digest, size = hashlib.sha256(), 0
    async for chunk in content.chunks:
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != expected.sha256 or size != expected.size:
        findings.add("file corrupted", f"{file_id} {expected.filename}: {size} bytes read")


async def _check_usage(metadata: SQLMetadataStore, quota: Quota | None, findings: Findings) -> None:
    """Each owner's usage row equals the files and bytes of its records that count, plus the
    bytes its uploads reserve (their parts)."""
    usage, files, uploads = metadata.tables.usage, metadata.tables.files, metadata.tables.uploads
    counted = (
        select(files.c.owner, func.count(), func.coalesce(func.sum(files.c.bytes), 0))
        .where(files.c.state.in_(("pending", "active")))
        .group_by(files.c.owner)
    )
    reserved = select(uploads.c.owner, func.coalesce(func.sum(uploads.c.reserved), 0)).group_by(
        uploads.c.owner
    )
    async with metadata.engine.connect() as connection:
        rows = {row[0]: (row[1], row[2]) for row in (await connection.execute(select(usage)))}
        records = {row[0]: (row[1], int(row[2])) for row in (await connection.execute(counted))}
        for owner, size in (await connection.execute(reserved)).all():
            files_of_owner, bytes_of_owner = records.get(owner, (0, 0))
            records[owner] = (files_of_owner, bytes_of_owner + int(size))
    for owner in sorted(set(rows) | set(records)):
        if rows.get(owner, (0, 0)) != records.get(owner, (0, 0)):
            detail = f"{owner}: usage {rows.get(owner)}, records {records.get(owner)}"
            findings.add("usage drift", detail)
        if quota is not None and not quota.allows(*rows.get(owner, (0, 0))):
            findings.add("quota exceeded at the end", f"{owner}: usage {rows.get(owner)}")


async def _accounting(
    metadata: SQLMetadataStore, s3: Any, findings: Findings, stage: str
) -> dict[str, int]:
    """Objects against records: what is stored with nothing to know it, and the reverse;
    records and uploads stuck half-way; incomplete multipart uploads. A few of each go to the
    examples, marked with ``stage``."""
    tables = metadata.tables
    async with metadata.engine.connect() as connection:
        files = (await connection.execute(select(tables.files))).all()
        parts = (await connection.execute(select(tables.parts))).all()
        uploads = (await connection.execute(select(tables.uploads))).all()
    objects = _objects(s3)
    known = {row.storage_key for row in files} | {row.storage_key for row in parts}
    upload_state = {row.id: row.state for row in uploads}
    multipart = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    found = {
        ORPHANS: sorted(objects - known),
        "file records without an object": [
            f"{row.id} ({row.state})" for row in files if row.storage_key not in objects
        ],
        "part records without an object": [
            f"{row.id} of {row.upload_id}" for row in parts if row.storage_key not in objects
        ],
        "file records stuck pending or deleting": [
            f"{row.id} ({row.state})" for row in files if row.state in {"pending", "deleting"}
        ],
        "uploads stuck completing": [row.id for row in uploads if row.state == "completing"],
        "parts of finished uploads left": [
            f"{row.id} of {row.upload_id} ({upload_state.get(row.upload_id)})"
            for row in parts
            if upload_state.get(row.upload_id) != "pending"
        ],
        "incomplete multipart uploads": [item["Key"] for item in multipart.get("Uploads", [])],
    }
    for name, items in found.items():
        findings.examples += [f"{name} ({stage}): {item}" for item in items[:10]]
    return {name: len(items) for name, items in found.items()}


def _objects(s3: Any) -> set[str]:
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/"):
        keys |= {item["Key"].removeprefix(f"{PREFIX}/") for item in page.get("Contents", [])}
    return keys

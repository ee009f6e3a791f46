"""The sweeper: removes expired files, and what crashed uploads and failed deletes left behind.

One sweep claims records in bounded batches (`MetadataStore.claim_for_sweep`, atomic, so
several replicas can sweep at once without claiming the same record twice), deletes their
bytes (up to `SWEEP_DELETES` storage deletes at once), then their records. A record whose
bytes could not be deleted stays claimed and is retried by a later sweep once ``stale_after``
has passed: no blob is ever forgotten.

The orphan pass removes bytes that no record knows (a crash between storing a small file and
recording it leaves some, since such a file is recorded once its bytes are stored; so can a
pending record swept while its upload still ran), once they are older than a grace period, and
the temporary files of interrupted writes, for storages that can list their keys.

Hosts run these through `FilesService.sweep`, `FilesService.sweep_orphans` and
`FilesService.run_sweeper`, which take the same options.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import anyio

from ._core import Core, file_object
from .errors import BackendUnavailable
from .ids import is_inline
from .metadata.base import FileRecord
from .policy import DAY
from .storage.base import ListableStorage
from .uploads import Uploads

__all__ = [
    "BATCH",
    "MAX_BATCHES",
    "ORPHANS_EVERY",
    "ORPHAN_GRACE",
    "STALE_AFTER",
    "SWEEP_DELETES",
    "SweepReport",
    "run_sweeper",
    "sweep",
    "sweep_orphans",
]

log = logging.getLogger("openai_files")

BATCH = 100
"""Records claimed (and upload parts discarded) at a time."""
MAX_BATCHES = 100
"""Batches one sweep claims at most, so that one sweep ends even while files keep expiring."""
STALE_AFTER = 3600
"""Seconds an upload or a delete may take before it counts as dead and is cleaned up."""
ORPHAN_GRACE = DAY
"""Seconds stored bytes that no record knows are kept before they are removed."""
ORPHANS_EVERY = 60
"""`run_sweeper` looks for orphaned bytes every this many sweeps (and on the first)."""
SWEEP_DELETES = 8
"""Storage deletes one sweep runs at once: an object store answers each in a round trip of its
own. (Bytes a metadata store keeps, `InlineFiles`, go one at a time: their deletes use its
connections, which requests need.)"""


@dataclass(frozen=True)
class SweepReport:
    """What one sweep did: records claimed as ``expired`` (visible files past their expiry)
    or ``stale`` (dead uploads and unfinished deletes), records ``removed`` with their bytes,
    removals that ``failed`` (retried later), ``orphans`` (unrecorded bytes) removed, and parts
    of finished or expired uploads (Uploads API) discarded."""

    expired: int = 0
    stale: int = 0
    removed: int = 0
    failed: int = 0
    orphans: int = 0
    upload_parts: int = 0


async def sweep(
    core: Core,
    uploads: Uploads,
    *,
    batch: int = BATCH,
    stale_after: int = STALE_AFTER,
    max_batches: int = MAX_BATCHES,
) -> SweepReport:
    """Sweep until nothing is left to claim, in batches of ``batch``, at most ``max_batches``."""
    expired = stale = removed = failed = 0
    for _ in range(max_batches):
        now = core.now()
        claimed = await core.metadata.claim_for_sweep(
            now=now, stale_before=now - stale_after, limit=batch
        )
        gone = await _remove_bytes(core, claimed)
        for record in claimed:
            was_visible = record.state == "active"
            expired += was_visible
            stale += not was_visible
            keep = core.policy.soft_delete and record.state == "deleting"
            if record.id in gone and await core.forget(record, keep_record=keep):
                removed += 1
            else:
                failed += 1  # the record stays claimed; a later sweep retries it
            if was_visible:  # gone for clients now, whether or not its bytes went at once
                await core.emit("expired", record.owner, file_object(record))
        if not claimed:  # fewer than a batch may mean another sweeper won some claims
            break
    parts = await uploads.sweep(batch=batch)
    return SweepReport(
        expired=expired, stale=stale, removed=removed, failed=failed, upload_parts=parts
    )


async def _remove_bytes(core: Core, records: list[FileRecord]) -> set[str]:
    """Remove the bytes of ``records``, up to `SWEEP_DELETES` storage deletes at once and the
    bytes a metadata store keeps one at a time; the ids of the records whose bytes went."""
    in_storage, in_metadata = anyio.CapacityLimiter(SWEEP_DELETES), anyio.CapacityLimiter(1)
    gone: set[str] = set()

    async def remove(record: FileRecord) -> None:
        async with in_metadata if is_inline(record.storage_key) else in_storage:
            if await core.remove_bytes(record):
                gone.add(record.id)

    async with anyio.create_task_group() as group:
        for record in records:
            group.start_soon(remove, record)
    return gone


async def sweep_orphans(core: Core, *, grace: int = ORPHAN_GRACE) -> int:
    """Remove bytes older than ``grace`` seconds that belong to no record; how many went.

    A no-op for storages that cannot list their keys (`ListableStorage`). On S3 it also
    aborts incomplete multipart uploads older than ``grace`` where the storage can list them
    (static credentials); give the bucket a lifecycle rule for them as well.
    """
    storage = core.storage
    if not isinstance(storage, ListableStorage):
        return 0
    cutoff = core.clock() - grace
    removed = await storage.remove_partials(modified_before=cutoff)
    batch: list[str] = []
    async for key in storage.iter_keys(modified_before=cutoff):
        batch.append(key)
        if len(batch) == 500:
            removed += await _remove_unknown(core, batch)
            batch = []
    if batch:
        removed += await _remove_unknown(core, batch)
    return removed


async def _remove_unknown(core: Core, keys: list[str]) -> int:
    known = await core.metadata.existing_keys(keys)
    orphans = [key for key in keys if key not in known]
    for key in orphans:
        await core.storage.delete(key)
    return len(orphans)


async def run_sweeper(
    core: Core,
    uploads: Uploads,
    *,
    interval: float,
    batch: int = BATCH,
    stale_after: int = STALE_AFTER,
    max_batches: int = MAX_BATCHES,
    orphan_grace: int = ORPHAN_GRACE,
    orphans_every: int = ORPHANS_EVERY,
    stop: anyio.Event | None = None,
    on_sweep: Callable[[SweepReport | None], None] | None = None,
) -> None:
    """Sweep every ``interval`` seconds until ``stop`` is set (or the task is cancelled), each
    sweep as `sweep` with ``batch``, ``stale_after`` and ``max_batches``; orphans older than
    ``orphan_grace`` every ``orphans_every`` sweeps. A failing sweep is logged and the next one runs
    as planned. Setting ``stop`` lets a sweep in progress finish: cancelling one in the middle
    of a database call can leave the driver's connection unable to close."""
    stop = stop or anyio.Event()
    rounds = 0
    while not stop.is_set():
        try:
            report = await sweep(
                core, uploads, batch=batch, stale_after=stale_after, max_batches=max_batches
            )
            if rounds % orphans_every == 0:
                report = SweepReport(
                    **{**vars(report), "orphans": await sweep_orphans(core, grace=orphan_grace)}
                )
            if report != SweepReport():
                log.info("sweep: %s", report)
        except BackendUnavailable as exc:  # an outage: its message says all there is to say
            report = None
            log.warning("a sweep failed: %s; the next one runs in %s s", exc, interval)
        except Exception:
            report = None
            log.exception("a sweep failed; the next one runs in %s s", interval)
        if on_sweep is not None:
            on_sweep(report)
        rounds += 1
        with anyio.move_on_after(interval):
            await stop.wait()

"""The service as a facade over its core: every entry point checks the owner, the service has
one Uploads API, and every option of the sweeper is reachable through `FilesService`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio
import pytest

from openai_files import FilesService, MemoryMetadataStore, MemoryStorage
from openai_files._pending_upload import RECORD_AFTER
from openai_files.testing import ManualClock

pytestmark = pytest.mark.anyio

OWNER = "org-core"
HOUR = 3600


class CountingStorage(MemoryStorage):
    """`MemoryStorage` that counts the orphan passes (each begins with `remove_partials`)."""

    def __init__(self, *, clock: ManualClock) -> None:
        super().__init__(clock=clock)
        self.orphan_passes = 0

    async def remove_partials(self, *, modified_before: float) -> int:
        self.orphan_passes += 1
        return await super().remove_partials(modified_before=modified_before)


class RoundLimitedMetadata(MemoryMetadataStore):
    """`MemoryMetadataStore` that counts sweeps (each expires uploads once) and sets ``stop``
    during the last one `stop_after` allows, so that a sweeper stops after exactly that many."""

    def __init__(self) -> None:
        super().__init__()
        self.sweeps = 0
        self.stop_after(1)

    def stop_after(self, rounds: int) -> None:
        self.stop = anyio.Event()
        self._last = self.sweeps + rounds

    async def expire_uploads(self, *, now: int) -> int:
        self.sweeps += 1
        if self.sweeps >= self._last:
            self.stop.set()
        return await super().expire_uploads(now=now)


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


@dataclass
class Rig:
    service: FilesService
    storage: CountingStorage
    metadata: RoundLimitedMetadata
    clock: ManualClock

    async def expired_files(self, count: int) -> None:
        for index in range(count):
            await self.service.create(
                OWNER, file=b"x", filename=f"{index}.txt", purpose="assistants", expires_after=HOUR
            )
        self.clock.advance(HOUR)

    async def run_sweeper(self, rounds: int = 1, **options: Any) -> None:
        """Run the service's sweeper for ``rounds`` sweeps."""
        self.metadata.stop_after(rounds)
        with anyio.fail_after(10):
            await self.service.run_sweeper(interval=0, stop=self.metadata.stop, **options)


def rig() -> Rig:
    clock = ManualClock(1_800_000_000.0)
    storage, metadata = CountingStorage(clock=clock), RoundLimitedMetadata()
    return Rig(FilesService(storage, metadata, clock=clock), storage, metadata, clock)


# -- the owner check --------------------------------------------------------------------------


@pytest.mark.parametrize("owner", ["", "o" * 256])
async def test_an_upload_of_the_uploads_api_checks_its_owner_like_every_other_entry_point(
    owner: str,
) -> None:
    env = rig()
    with pytest.raises(ValueError, match="owner must be a non-empty string"):
        await env.service.create(owner, file=b"x", filename="a.txt", purpose="assistants")
    with pytest.raises(ValueError, match="owner must be a non-empty string"):
        await env.service.uploads.create(
            owner, filename="a.txt", purpose="assistants", bytes=1, mime_type="text/plain"
        )
    assert await env.metadata.expire_uploads(now=2_000_000_000) == 0  # nothing was recorded


# -- one Uploads API per service --------------------------------------------------------------


async def test_a_service_has_one_uploads_api() -> None:
    service = rig().service
    assert service.uploads is service.uploads


# -- every sweeper option through the facade --------------------------------------------------


@pytest.mark.parametrize(("batch", "max_batches", "removed"), [(1, 2, 2), (2, 1, 2), (1, 1, 1)])
async def test_sweep_claims_batch_records_at_a_time_at_most_max_batches_times(
    batch: int, max_batches: int, removed: int
) -> None:
    env = rig()
    await env.expired_files(3)
    report = await env.service.sweep(batch=batch, max_batches=max_batches)
    assert (report.expired, report.removed) == (removed, removed)
    assert (await env.service.sweep()).removed == 3 - removed


async def test_run_sweeper_sweeps_with_its_batch_and_max_batches() -> None:
    env = rig()
    await env.expired_files(3)
    await env.run_sweeper(batch=1, max_batches=2)
    assert len(env.storage.keys()) == 1
    assert (await env.service.sweep()).removed == 1


async def test_run_sweeper_sweeps_with_its_stale_after() -> None:
    env = rig()
    upload = await env.service.begin_upload(OWNER, filename="dead.txt", purpose="assistants")
    await upload.write(one_chunk(b"x" * (RECORD_AFTER + 1)))  # streams with a pending record
    env.clock.advance(60)
    await env.run_sweeper()
    assert (await env.metadata.usage(OWNER)).files == 1  # not an hour old: still running
    await env.run_sweeper(stale_after=30)
    assert (await env.metadata.usage(OWNER)).files == 0


async def test_run_sweeper_removes_orphans_older_than_its_orphan_grace() -> None:
    env = rig()
    await env.storage.put("orphan", one_chunk(b"no record knows me"))
    env.clock.advance(60)
    await env.run_sweeper()
    assert env.storage.keys() == ["orphan"]  # younger than a day
    await env.run_sweeper(orphan_grace=30)
    assert env.storage.keys() == []


@pytest.mark.parametrize(("orphans_every", "passes"), [(None, 1), (2, 2), (1, 3)])
async def test_run_sweeper_looks_for_orphans_every_orphans_every_sweeps(
    orphans_every: int | None, passes: int
) -> None:
    env = rig()
    options = {} if orphans_every is None else {"orphans_every": orphans_every}
    await env.run_sweeper(rounds=3, **options)
    assert env.metadata.sweeps == 3
    assert env.storage.orphan_passes == passes

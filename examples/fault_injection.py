"""Fault injection: the service's promises, kept while its backends fail on command.

    python examples/fault_injection.py

The backends are wrapped in `FaultyStorage` and `FaultyMetadataStore` from
`openai_files.testing`, which raise `BackendUnavailable` (HTTP 503) where they are told to:

1. every put fails as its third chunk arrives: the upload is refused and nothing is stored;
2. the next delete of bytes fails: the file is gone for clients at once, and its bytes stay,
   with their record as the reminder, until a sweep removes both;
3. the metadata store fails 2% of its calls at random (seeded, so a run replays the same way):
   some uploads are refused, and afterwards every listed file has all its bytes and a sweep
   leaves no bytes without a record.

The same checks, run after every failure point, are the suite's
`tests/http/test_backend_faults.py` and `tests/system/test_crash_consistency.py`.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from openai_files import (
    BackendUnavailable,
    FileNotFound,
    FilesService,
    LocalStorage,
    SQLMetadataStore,
)
from openai_files.testing import FaultyMetadataStore, FaultyStorage, RandomFaults

OWNER = "team-a"
CHUNK = 64 * 1024
HOUR = 3600


class Clock:
    """The time, moved forward by the example instead of waiting for the sweeper's hour."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


async def chunks(count: int) -> AsyncIterator[bytes]:
    for index in range(count):
        yield bytes([index]) * CHUNK


def objects(root: Path) -> list[Path]:
    """Every file the storage holds, temporary files included."""
    return [path for path in root.rglob("*") if path.is_file()]


def check(condition: bool, message: str) -> None:
    if not condition:
        raise SystemExit(f"broken promise: {message}")


async def refused_upload(files: FilesService, root: Path) -> None:
    try:
        await files.create(OWNER, file=chunks(5), filename="refused.bin", purpose="user_data")
    except BackendUnavailable as exc:
        print(f"1. upload refused: {exc}")
    else:
        check(False, "the upload succeeded")
    check(not (await files.list(OWNER)).data, "a refused upload is listed")
    check(not objects(root), "a refused upload left bytes behind")
    print("   nothing listed, nothing on disk")


async def delete_that_fails(files: FilesService, root: Path, clock: Clock) -> None:
    file = await files.create(OWNER, file=chunks(2), filename="kept.bin", purpose="user_data")
    await files.delete(OWNER, file.id)  # answers at once; removing the bytes fails
    try:
        await files.retrieve(OWNER, file.id)
        check(False, "a deleted file is still visible")
    except FileNotFound:
        pass
    left = len(objects(root))
    clock.offset += HOUR + 1  # a delete unfinished after an hour is the sweeper's
    report = await files.sweep()
    print(f"2. deleted {file.id}: gone for clients, {left} object left for the sweeper")
    print(f"   a sweep removed {report.removed}; {len(objects(root))} left on disk")
    check(left == 1 and not objects(root), "the sweep did not remove the bytes")


async def uploads_under_random_faults(files: FilesService) -> None:
    created = refused = 0
    for index in range(40):
        try:
            await files.create(
                OWNER, file=chunks(3), filename=f"file-{index}.bin", purpose="user_data"
            )
            created += 1
        except BackendUnavailable:
            refused += 1
    print(f"3. under random faults: {created} uploads created, {refused} refused")


async def check_consistency(files: FilesService, root: Path, clock: Clock) -> None:
    clock.offset += HOUR + 1
    await files.sweep()  # what failed uploads left behind
    listed = (await files.list(OWNER)).data
    for file in listed:
        content = await files.content(OWNER, file.id)
        size = sum([len(chunk) async for chunk in content.chunks])
        check(size == file.bytes == 3 * CHUNK, f"{file.id} lacks bytes")
    check(len(objects(root)) == len(listed), "bytes without a record")
    print(f"   {len(listed)} files listed, each with all its bytes; no bytes without a record")


async def main(root: Path) -> None:
    clock = Clock()
    # --8<-- [start:faults]
    storage = FaultyStorage(LocalStorage(root / "files"))
    metadata = FaultyMetadataStore(SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}"))
    async with FilesService(storage, metadata, clock=clock) as files:
        storage.fail_put_at_chunk = 3  # every put fails as its third chunk arrives
        await refused_upload(files, root / "files")
        storage.fail_put_at_chunk = None  # until switched off

        storage.fail_delete = 1  # the next delete fails, then deletes work again
        await delete_that_fails(files, root / "files", clock)

        metadata.random_faults = RandomFaults(0.02)  # 2% of calls fail, from a seeded rng
        await uploads_under_random_faults(files)
        print(f"   injected: {dict(metadata.injected)}")

        metadata.heal()  # every switch off
        await check_consistency(files, root / "files", clock)
    # --8<-- [end:faults]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))

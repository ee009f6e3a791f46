"""A streamed upload is refused at the byte that passes the limit, while it streams: the chunk
carrying byte ``limit + 1`` raises `FileTooLarge`, and no further chunk is asked for (the check
after the bytes are written is only a second line)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from openai_files import FilesService, FileTooLarge, MemoryMetadataStore, MemoryStorage, Policy

pytestmark = pytest.mark.anyio

LIMIT = 1000


class Chunks:
    """The chunks of a body, counting how many were asked for."""

    def __init__(self, *sizes: int) -> None:
        self.sizes = sizes
        self.pulled = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for size in self.sizes:
            self.pulled += 1
            yield b"x" * size


@pytest.fixture
async def service() -> AsyncIterator[FilesService]:
    policy = Policy(max_file_size=LIMIT)
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy) as files:
        yield files


@pytest.mark.parametrize("sizes", [(LIMIT + 1, 5), (LIMIT, 1, 5), (1, LIMIT, 5)])
async def test_the_chunk_that_passes_the_limit_is_refused_and_no_more_are_read(
    service: FilesService, sizes: tuple[int, ...]
) -> None:
    chunks = Chunks(*sizes)
    async with await service.begin_upload("alice", filename="f.bin", purpose="assistants") as up:
        with pytest.raises(FileTooLarge):
            await up.write(chunks)
    assert chunks.pulled == len(sizes) - 1
    assert (await service.list("alice")).data == []
    assert (await service.metadata.usage("alice")).bytes == 0


@pytest.mark.parametrize("sizes", [(LIMIT,), (LIMIT - 1, 1), (1, LIMIT - 1)])
async def test_exactly_the_limit_streams_through(
    service: FilesService, sizes: tuple[int, ...]
) -> None:
    async with await service.begin_upload("alice", filename="f.bin", purpose="assistants") as up:
        await up.write(Chunks(*sizes))
        created = await up.finish(purpose="assistants")
    assert created.bytes == LIMIT

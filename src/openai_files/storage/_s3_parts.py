"""The numbered parts of an S3 multipart upload that stays open across requests
(`MultipartStorage` on `S3Storage`): a stream cut into parts and sent as they fill, and the
completion of the upload from the parts a caller names.

A stream is cut into parts of ``piece`` bytes, except its last, which takes what remains
(between `MIN_PART_SIZE` and ``piece + MIN_PART_SIZE`` bytes): every part of a stream of at
least `MIN_PART_SIZE` bytes is at least that large, so any of them may be followed by others in
the completed object. A stream shorter than that becomes an ordinary object instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence

import anyio

from ..errors import BlobNotFound
from ._s3_multipart import MIN_PART_SIZE, S3Multipart, S3RequestError
from .base import BlobHasher, MultipartGone, NumberedPut, NumberedSource, StoredBlob

__all__ = ["complete_numbered", "numbers_for", "put_numbered"]


def numbers_for(size: int, piece: int) -> int:
    """The most part numbers `put_numbered` uses for a stream of at most ``size`` bytes."""
    return size // piece + 1


async def put_numbered(
    client: S3Multipart,
    name: str,
    upload_id: str,
    chunks: AsyncIterable[bytes],
    *,
    first: int,
    count: int,
    piece: int,
    in_flight: int,
    put_small: Callable[[AsyncIterable[bytes]], Awaitable[StoredBlob]],
) -> NumberedPut:
    """Send ``chunks`` as parts ``first, first + 1, ...`` (at most ``count`` of them) of the
    upload ``upload_id`` of the object ``name``, up to ``in_flight`` parts at once while the
    next one fills, hashing every byte on the way. A stream shorter than `MIN_PART_SIZE` goes
    to ``put_small`` instead. The first part is sent before any more bytes are taken: if S3
    no longer knows the upload, `MultipartGone` carries the bytes taken so far.

    On any error or cancellation the parts sent stay in the upload, unused: a completion
    names only the parts it wants, and an abort drops them all."""
    hasher = BlobHasher()
    held: list[bytes] = []
    held_size = 0
    number = first
    sent = 0
    slots = anyio.Semaphore(in_flight)  # taken before a part is cut, given back once sent

    async def send(data: bytes, at: int) -> None:
        try:
            await client.upload_part(name, upload_id, at, data)
        finally:
            slots.release()

    async def first_part(data: bytes) -> None:
        try:
            await client.upload_part(name, upload_id, first, data)
        except S3RequestError as exc:
            if exc.code == "NoSuchUpload" or exc.status == 404:
                raise MultipartGone(data) from exc
            raise

    try:
        async with anyio.create_task_group() as group:
            async for chunk in chunks:
                if not chunk:
                    continue
                hasher.update(chunk)
                held.append(chunk)
                held_size += len(chunk)
                if held_size < piece + MIN_PART_SIZE:
                    continue
                data = b"".join(held)
                held, held_size = [data[piece:]], held_size - piece
                body = data[:piece]
                del data
                if number - first >= count:
                    raise ValueError(f"a stream needs more than the {count} part numbers given")
                if number == first:
                    await first_part(body)
                else:
                    await slots.acquire()
                    group.start_soon(send, body, number)
                number += 1
                sent += 1
            rest = b"".join(held)
            held = []
            if sent == 0 and len(rest) < MIN_PART_SIZE:
                stored = await put_small(_once(rest))
                return NumberedPut(blob=stored, last=None)
            if number - first >= count:
                raise ValueError(f"a stream needs more than the {count} part numbers given")
            if number == first:
                await first_part(rest)
            else:
                await slots.acquire()
                group.start_soon(send, rest, number)
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    return NumberedPut(blob=hasher.result(), last=number)


async def complete_numbered(
    client: S3Multipart,
    name: str,
    upload_id: str,
    sources: Sequence[NumberedSource],
    *,
    read_small: Callable[[str], Awaitable[bytes]],
    size_of: Callable[[], Awaitable[int]],
) -> int:
    """Complete the upload ``upload_id`` into the object ``name`` from ``sources``, in
    order, and return its size. A source that names an object (`NumberedSource.key`) is read
    (``read_small``) and sent as its part first. If S3 no longer knows the upload (it was
    completed before), the object's size (``size_of``); `BlobNotFound` if it was aborted, or
    a source's parts are not all there with the size they should have."""
    try:
        for source in sources:
            if source.key is not None:
                body = await read_small(source.key)
                await client.upload_part(name, upload_id, source.first, body)
        listed = await client.list_parts(name, upload_id)
    except S3RequestError as exc:
        if exc.code != "NoSuchUpload" and exc.status != 404:
            raise
        return await size_of()  # BlobNotFound if there is no object either
    etags: dict[int, str] = {}
    for source in sources:
        numbers = range(source.first, source.last + 1)
        found = [listed[number] for number in numbers if number in listed]
        if len(found) != len(numbers) or sum(size for _, size in found) != source.size:
            raise BlobNotFound(name)
        etags |= {number: etag for number, (etag, _) in zip(numbers, found, strict=True)}
    # The commit point: once it has started, it completes or fails, never half-way.
    with anyio.CancelScope(shield=True):
        await client.complete(name, upload_id, etags)
    return sum(source.size for source in sources)


async def _once(data: bytes) -> AsyncIterator[bytes]:
    if data:
        yield data


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first

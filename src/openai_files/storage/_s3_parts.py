"""The numbered parts of an S3 multipart upload that stays open across requests
(`MultipartStorage` on `S3Storage`): a stream cut into parts and sent as they fill, and the
completion of the upload from the parts a caller names.

A stream is cut into parts of ``piece`` bytes, except its last, which takes what remains
(between `MIN_PART_SIZE` and ``piece + MIN_PART_SIZE`` bytes): every part of a stream of at
least `MIN_PART_SIZE` bytes is at least that large, so any of them may be followed by others in
the completed object. A stream shorter than that becomes an ordinary object instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Awaitable, Callable, Sequence

import anyio
import anyio.abc

from ..errors import BlobNotFound
from ._s3_multipart import MIN_PART_SIZE, S3Multipart, S3RequestError
from .base import BlobHasher, NumberedPut, NumberedSource, StoredBlob, chained

__all__ = ["complete_numbered", "gapless_parts", "numbers_for", "put_numbered"]


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
    to ``put_small`` instead.

    On any error or cancellation the parts sent stay in the upload, unused: a completion
    names only the parts it wants, and an abort drops them all."""
    hasher = BlobHasher()
    held: list[bytes] = []
    held_size = 0
    number = first
    slots = anyio.Semaphore(in_flight)  # taken before a part is sent, given back once sent

    async def send(body: list[bytes], at: int) -> None:
        try:
            await client.upload_part(name, upload_id, at, body)
        finally:
            slots.release()

    async def start(body: list[bytes], group: anyio.abc.TaskGroup) -> None:
        nonlocal number
        if number - first >= count:
            raise ValueError(f"a stream needs more than the {count} part numbers given")
        await slots.acquire()
        group.start_soon(send, body, number)
        number += 1

    try:
        async with anyio.create_task_group() as group:
            async for chunk in chunks:
                if not chunk:
                    continue
                hasher.update(chunk)
                held.append(chunk)
                held_size += len(chunk)
                if held_size >= piece + MIN_PART_SIZE:
                    body, held = _cut(held, piece)
                    held_size -= piece
                    await start(body, group)
            if number == first and held_size < MIN_PART_SIZE:
                stored = await put_small(chained(held))
                return NumberedPut(blob=stored, last=None)
            body, held = held, []
            await start(body, group)
    except BaseExceptionGroup as failures:
        raise _first(failures) from None
    return NumberedPut(blob=hasher.result(), last=number - 1)


async def gapless_parts(client: S3Multipart, name: str) -> bool:
    """Whether the server completes only uploads whose parts are numbered 1, 2, 3... with no
    gap (``rclone serve s3`` answers ``InvalidPart`` otherwise; S3 and moto take any
    ascending numbers). Found with a multipart upload of the object ``name`` of two parts of
    one byte, numbered 1 and 3, completed (S3 may refuse parts that small instead) and
    aborted, or the object removed if it was made."""
    upload_id = await client.create(name)
    try:
        etags = {
            number: await client.upload_part(name, upload_id, number, b"-") for number in (1, 3)
        }
        try:
            await client.complete(name, upload_id, etags)
        except S3RequestError as exc:
            return exc.code == "InvalidPart"
        await client.delete(name)
        return False
    finally:
        with anyio.CancelScope(shield=True):
            await client.abort(name, upload_id)


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
        listed = await client.list_parts(name, upload_id)
    except S3RequestError as exc:
        if exc.code != "NoSuchUpload" and exc.status != 404:
            raise
        return await size_of()  # BlobNotFound if there is no object either
    for source in sources:
        if source.key is not None:
            body = await read_small(source.key)
            etag = await client.upload_part(name, upload_id, source.first, body)
            listed[source.first] = (etag, len(body))
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


def _cut(chunks: list[bytes], size: int) -> tuple[list[bytes], list[bytes]]:
    """``chunks`` split after their first ``size`` bytes (a chunk across the cut is split)."""
    taken = 0
    for index, chunk in enumerate(chunks):
        if taken + len(chunk) >= size:
            keep = size - taken
            head, tail = chunks[:index], chunks[index + 1 :]
            if keep:
                head.append(chunk[:keep])
            if keep < len(chunk):
                tail.insert(0, chunk[keep:])
            return head, tail
        taken += len(chunk)
    return chunks, []


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first

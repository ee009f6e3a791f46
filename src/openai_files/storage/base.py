"""The storage protocol and the value it returns."""

from __future__ import annotations

import hashlib
import re
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar, runtime_checkable

__all__ = [
    "AppendableStorage",
    "BlobHasher",
    "ByteCounter",
    "ComposableStorage",
    "CountedPuts",
    "ListableStorage",
    "MappedReads",
    "MultipartStorage",
    "NumberedPut",
    "NumberedSource",
    "ObjectRange",
    "PresignedURLs",
    "Storage",
    "StoredBlob",
    "UnfinishedRange",
    "UnhashedPuts",
    "chained",
    "check_key",
    "encrypts",
    "join_blocks",
    "store_unhashed",
]

_T = TypeVar("_T")
_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)*")


def encrypts(storage: object) -> bool:
    """Whether ``storage`` encrypts what it stores, itself or in one of its tiers (its
    ``encrypts_at_rest``): the service then keeps no file's bytes anywhere else."""
    return bool(getattr(storage, "encrypts_at_rest", False))


def check_key(key: str) -> str:
    """``key`` if it is a plain relative, slash-separated path with no dot segments; else
    `ValueError`. Every backend accepts exactly this shape, so no key can escape a root."""
    if not _KEY.fullmatch(key) or any(part in {".", ".."} for part in key.split("/")):
        raise ValueError(f"invalid storage key: {key!r}")
    return key


async def chained(
    first: Iterable[bytes], rest: AsyncIterable[bytes] | None = None
) -> AsyncIterator[bytes]:
    """The chunks of ``first``, then those of ``rest`` (if any): bytes already in hand, and
    the stream they were taken from, as the one stream a `Storage` takes or gives."""
    for chunk in first:
        yield chunk
    if rest is not None:
        async for chunk in rest:
            yield chunk


async def join_blocks(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """``chunks`` joined into blocks of at least ``size`` bytes (the last may be smaller).

    Backends hand their driver or worker thread one block per call: each call costs more than
    the copy of the join (a thread hop, a crossing into a native runtime, the GIL taken back).
    """
    pending: list[bytes] = []
    pending_size = 0
    async for chunk in chunks:
        if not chunk:
            continue
        pending.append(chunk)
        pending_size += len(chunk)
        if pending_size >= size:
            yield pending[0] if len(pending) == 1 else b"".join(pending)
            pending, pending_size = [], 0
    if pending:
        yield b"".join(pending)


@dataclass(frozen=True)
class UnfinishedRange:
    """The bytes ``[start, end)`` of the unfinished object ``key`` (`AppendableStorage`)."""

    key: str
    start: int
    end: int


@dataclass(frozen=True)
class ObjectRange:
    """The bytes ``[start, end)`` of the object ``key`` (a source of `ComposableStorage`)."""

    key: str
    start: int
    end: int


@dataclass(frozen=True)
class StoredBlob:
    """What `Storage.put` wrote: the size in bytes and the SHA-256 of the content (hex)."""

    size: int
    sha256: str


class ByteCounter:
    """Counts bytes as they pass: what a put that is not hashed (`UnhashedPuts`) reports."""

    __slots__ = ("size",)

    def __init__(self) -> None:
        self.size = 0

    def update(self, data: bytes) -> None:
        self.size += len(data)


class BlobHasher(ByteCounter):
    """Counts and hashes bytes as they pass, so every backend reports a `StoredBlob` alike."""

    __slots__ = ("_hash",)

    def __init__(self) -> None:
        super().__init__()
        self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)
        self.size += len(data)

    def result(self) -> StoredBlob:
        return StoredBlob(size=self.size, sha256=self._hash.hexdigest())


@runtime_checkable
class Storage(Protocol):
    """Bytes by key.

    Keys are relative, slash-separated strings made by the service; a backend may refuse any
    other shape with `ValueError`. Every error a backend raises is one of the library's
    (`BlobNotFound`, `BackendUnavailable`); a driver's exception never escapes.
    """

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Store the bytes of ``chunks`` under ``key`` and return their size and SHA-256.

        Streams: memory use does not grow with the size of the data. Atomic: either all of the
        data is written and visible under ``key``, or, on any error (including one raised by
        ``chunks`` itself, a full disk or cancellation), nothing is visible under ``key`` and
        nothing is left behind. Overwrites an existing key. A cancellation that arrives while
        the backend is committing the object may let the put complete. (A backend that cannot
        clean up after the death of its own process, such as S3's multipart uploads, says so
        in its docstring and how to bound it.)
        """
        ...

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the bytes under ``key`` from ``start`` up to ``end`` (exclusive; None: the end).

        Raises `BlobNotFound` here, before any byte is produced, when the key does not exist.
        The returned iterator streams the range in chunks; ``start`` past the end yields nothing.
        """
        ...

    async def head(self, key: str) -> int:
        """The size in bytes of the object under ``key``; `BlobNotFound` when it is missing."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``. Deleting a missing key is a no-op."""
        ...

    async def aclose(self) -> None:
        """Release connections and handles. The storage is not used afterwards; closing it
        again is harmless."""
        ...


@runtime_checkable
class UnhashedPuts(Protocol):
    """Optional capability: a put that does not hash what it stores, for a wrapper that reports
    another hash (`EncryptedStorage` reports the plaintext's SHA-256: the SHA-256 of the
    ciphertext it stores would be computed and dropped, and SHA-256 costs several times what
    AES-GCM does per byte).

    Memory, local disk and S3 offer it. `EncryptedStorage`, `TieredStorage` and `FaultyStorage`
    offer it whatever they wrap, and pass it on: to the wrapped storage's ``put_unhashed`` where
    it has one, else to its `Storage.put`, whose hash is dropped; `instrumented` offers it when
    the backend it wraps does. Call it through `store_unhashed`, which falls back the same way
    for any `Storage`.
    """

    async def put_unhashed(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """Store the bytes of ``chunks`` under ``key`` as `Storage.put` does (streaming,
        atomic, overwriting) and return their size; their SHA-256 is not computed."""
        ...


async def store_unhashed(storage: Storage, key: str, chunks: AsyncIterable[bytes]) -> int:
    """Store ``chunks`` under ``key`` with ``storage``'s `UnhashedPuts.put_unhashed` where it
    offers one, else with its `Storage.put`; the size stored."""
    if isinstance(storage, UnhashedPuts):
        return await storage.put_unhashed(key, chunks)
    return (await storage.put(key, chunks)).size


@runtime_checkable
class MappedReads(Protocol):
    """Optional capability: a read that hands each block it reads to a function in the worker
    thread that read it, for a wrapper whose work per byte is heavy (`EncryptedStorage` opens
    its segments there: one hand-off per block reads and decrypts it, and the event loop only
    sends).

    Memory and local disk offer it; `EncryptedStorage` reads any other storage through
    `Storage.get` and does its own work in threads of its own.
    """

    async def get_mapped(
        self,
        key: str,
        function: Callable[[int, memoryview], _T],
        *,
        start: int,
        end: int,
        block_size: int,
    ) -> AsyncIterator[_T]:
        """``function(offset, block)`` for each block of the bytes ``[start, end)`` of ``key``,
        in order: the blocks start at ``start``, ``start + block_size``, ... and hold
        ``block_size`` bytes, the last one fewer; none past the end of the object (a block
        shorter than asked is the last). ``block`` is valid only during the call; the calls
        run in worker threads, possibly at once for different blocks (a few blocks are read
        ahead of the consumer: memory stays flat), and what one raises is raised by the
        iterator at its place. `BlobNotFound` here, before any call, when the key does not
        exist. Closing the iterator early waits for the calls under way."""
        ...


class CountedPuts:
    """`Storage.put` and `UnhashedPuts.put_unhashed` of a backend that stores through one method,
    ``_put(key, chunks, counter)``, which passes every byte it stores to ``counter``: a
    `BlobHasher` for `put`, a `ByteCounter` for `put_unhashed`. What a put guarantees
    (atomicity, streaming) is the backend's ``_put``'s to keep."""

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        raise NotImplementedError

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        """Store ``chunks`` under ``key``; their size and SHA-256."""
        hasher = BlobHasher()
        await self._put(key, chunks, hasher)
        return hasher.result()

    async def put_unhashed(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """As `put`, without hashing (`UnhashedPuts`); the size."""
        counter = ByteCounter()
        await self._put(key, chunks, counter)
        return counter.size


@runtime_checkable
class PresignedURLs(Protocol):
    """Optional capability: a URL from which a client may download the object directly."""

    async def presigned_url(self, key: str, *, expires_in: int) -> str:
        """A URL valid for ``expires_in`` seconds that serves the bytes under ``key``."""
        ...


@runtime_checkable
class ListableStorage(Protocol):
    """Optional capability: list what is stored, so the sweeper can find orphaned bytes."""

    def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """Every key whose object was last written before ``modified_before`` (Unix time)."""
        ...

    async def remove_partials(self, *, modified_before: float) -> int:
        """Remove what interrupted puts left behind (temporary files) before that time;
        return how many were removed. A backend with nothing of the kind returns 0."""
        ...


@runtime_checkable
class ComposableStorage(Protocol):
    """Optional capability: assemble an object from others inside the storage, so the bytes
    do not pass through the event loop (the Uploads API assembles files from parts)."""

    async def compose(
        self, key: str, sources: Sequence[str | ObjectRange | UnfinishedRange]
    ) -> int:
        """Store under ``key`` the concatenation of the objects under ``sources``, in order,
        atomically as `Storage.put` does; return its size. A source is a key, a range of an
        object, or, for a storage that is also `AppendableStorage`, a range of an unfinished
        object.
        `BlobNotFound` if a source is missing. The sources are left in place."""
        ...


@runtime_checkable
class AppendableStorage(Protocol):
    """Optional capability: unfinished objects that grow by appends and become ordinary
    objects without their bytes being copied (the Uploads API writes the parts of an upload
    that arrive in order into one, so completing the upload moves no bytes).

    An unfinished object lives beside the ordinary ones but is not one: `Storage.get`,
    ``head``, ``delete`` and key listings do not see it; it is read, sealed and discarded with
    the methods here. It only ever holds whole appends: an append that fails is cut back. Of
    the built-in backends, `LocalStorage` offers it (a hidden file, sealed by a hard link);
    S3 cannot append to an object and memory has nothing to gain.
    """

    async def append(
        self, key: str, chunks: AsyncIterable[bytes], *, offset: int
    ) -> StoredBlob | None:
        """Append the bytes of ``chunks`` to the unfinished object ``key``, which must hold
        exactly ``offset`` bytes (0: there is none yet, and it is created), and return the size
        and SHA-256 of the bytes appended.

        None, without taking a chunk from ``chunks`` or changing anything, when the object
        does not hold ``offset`` bytes or another append, cut or seal of it is under way: the
        caller stores the bytes another way. Atomic: on any error (including one raised by
        ``chunks``, a full disk or cancellation) the object is cut back to ``offset`` bytes
        (one that did not exist before is removed). Streams, as `Storage.put` does.
        """
        ...

    async def cut(self, key: str, *, start: int, end: int) -> None:
        """Undo an append of the bytes ``[start, end)``: if the unfinished object ends at
        ``end`` (nothing was appended after them, and it was not sealed), cut it back to
        ``start`` bytes (removed at 0); otherwise do nothing."""
        ...

    async def get_unfinished(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of the unfinished object ``key``, as `Storage.get`;
        `BlobNotFound` when there is none."""
        ...

    async def seal(self, key: str, target: str, *, size: int) -> None:
        """Make the first ``size`` bytes of the unfinished object ``key`` the object
        ``target``, atomically as `Storage.put` does and without copying them where the
        backend can; bytes past ``size`` (an append whose part was never recorded) are cut off.
        The unfinished object stays until `discard` (so a failure after the seal loses no
        part), and takes no appends or cuts any more. `BlobNotFound` when there is no
        unfinished object ``key`` of at least ``size`` bytes."""
        ...

    async def discard(self, key: str) -> None:
        """Remove the unfinished object ``key`` (a sealed object keeps its bytes). Discarding
        a missing one is a no-op."""
        ...


@dataclass(frozen=True)
class NumberedPut:
    """What `MultipartStorage.put_numbered` stored: the bytes' size and SHA-256, and the last
    part number used (from the first one given), or None when they were too few for a part
    and went into an ordinary object instead."""

    blob: StoredBlob
    last: int | None


@dataclass(frozen=True)
class NumberedSource:
    """Parts ``first`` to ``last`` of a multipart upload, ``size`` bytes in all; or, with
    ``key``, the ordinary object ``key`` (``size`` bytes, fewer than a part may hold unless it
    is the last), sent as part ``first`` (= ``last``) when the upload completes."""

    first: int
    last: int
    size: int
    key: str | None = None


@runtime_checkable
class MultipartStorage(Protocol):
    """Optional capability: an object built from numbered parts stored over time, which
    becomes the object in one step without its bytes being copied (S3's multipart uploads).

    The Uploads API sends the parts of an upload into one multipart upload as they arrive, so
    completing the upload in the order its parts arrived moves no bytes. Every part but the
    last of a completed object must hold at least ``min_part_size`` bytes.
    """

    min_part_size: int

    def numbers_for(self, size: int) -> int:
        """The most part numbers `put_numbered` uses for a stream of at most ``size`` bytes."""
        ...

    async def start_multipart(self, key: str) -> str | None:
        """Start a multipart upload of the object ``key``: its id, or None where this storage
        cannot (then it has none)."""
        ...

    async def put_numbered(
        self,
        key: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        *,
        first: int,
        count: int,
        small_key: str,
    ) -> NumberedPut:
        """Send the bytes of ``chunks`` as the parts numbered ``first`` on (at most ``count``
        of them, each at least ``min_part_size`` bytes) of the multipart upload; or, fewer
        than ``min_part_size`` bytes in all, store them under ``small_key`` as `Storage.put`
        does. Streams, as `Storage.put`. On an error (the upload no longer exists, say), parts
        sent stay in the upload unused."""
        ...

    async def complete_multipart(
        self, key: str, upload_id: str, sources: Sequence[NumberedSource]
    ) -> int:
        """Make the object ``key`` from ``sources``, in order (their numbers ascending), and
        return its size; parts of the upload not named are dropped. If the upload was
        completed already, the size of the object it made. `BlobNotFound` if neither the
        upload nor the object exists, or a source's parts are not there as it says."""
        ...

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        """Abort the multipart upload and drop its parts; a missing one is a no-op."""
        ...

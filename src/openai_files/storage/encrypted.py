"""`EncryptedStorage`: every object encrypted before it reaches the storage it wraps.

Needs the ``[encryption]`` extra (the ``cryptography`` package). Each object gets a fresh
random 256-bit data key; its content is sealed in segments with AES-256-GCM, and the data key
is wrapped under the keyring's current master key (the format is in
``openai_files.storage._segments``). Two objects are stored per key in the wrapped storage:

- ``KEY``: the sealed content, ``size + 16`` bytes per segment;
- ``KEY.key``: the header (about 110 bytes), which names the master key and holds the wrapped
  data key. Re-wrapping under a new master key (`rewrap`) replaces only this small object,
  atomically, whatever the backend: one small PUT per object on S3, one small file on disk;
  the content is neither re-encrypted nor copied.

How the `Storage` contract is kept: `put` streams (about two batches of 1 MiB are held at
once, hashed and sealed in worker threads; the wrapped storage does not hash the ciphertext
where it offers `UnhashedPuts`) and writes the content, then the header: an object is
visible only once both are stored, and a failure of either leaves neither. (A put over an
existing key, which the service never does, loses the old object if the header's write fails
after the new content is stored.) `get` reads and checks only the segments a range needs,
and raises `BlobUnreadable`, never returns bytes, for a segment that fails its check; a
stream that ends early ends with that error after the bytes checked before it. From a
storage that offers `MappedReads` (memory, local disk) each block of whole segments is read
and opened in one job on the storage's worker threads, a few blocks ahead of the reader
(`BlockOpener`); from any other, a batch is opened in a worker thread while the one before is
sent (`open_segments`). `head` and `put` report the plaintext's size (and
SHA-256). Listing (`iter_keys`) shows keys, not headers.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator

import anyio

from ..errors import BlobNotFound, BlobUnreadable
from ._keyring import Keyring, MasterKey
from ._segments import (
    NONCE_PREFIX_BYTES,
    TAG_BYTES,
    BlockOpener,
    Header,
    checked_length,
    open_segments,
    seal_segments,
    unwrap,
    wrap,
)
from .base import (
    ByteCounter,
    CountedPuts,
    ListableStorage,
    MappedReads,
    Storage,
    check_key,
    store_unhashed,
)

__all__ = ["HEADER_SUFFIX", "EncryptedStorage", "Keyring", "MasterKey"]

log = logging.getLogger("openai_files")

HEADER_SUFFIX = ".key"
"""The header of the object ``KEY`` is the object ``KEY.key`` of the wrapped storage."""
DEFAULT_SEGMENT_SIZE = 1024 * 1024 - TAG_BYTES
"""Sealed, a segment is exactly 1 MiB: the block `LocalStorage` reads, so that each block read
is one segment to open, with no bytes copied to join pieces of segments."""
_MAX_HEADER = 4096


class EncryptedStorage(CountedPuts):
    """Encrypts what it stores in ``inner`` with keys from ``keyring`` (see the module).

    ``segment_size`` is the plaintext sealed under one tag: a range read decrypts whole
    segments, and each costs 16 bytes. Keys ending in ``.key`` are refused (`ValueError`):
    they name headers.
    """

    encrypts_at_rest = True
    """What `encrypts` reads: no file's bytes are to be kept outside this storage."""

    def __init__(
        self, inner: Storage, keyring: Keyring, *, segment_size: int = DEFAULT_SEGMENT_SIZE
    ) -> None:
        if not 1024 <= segment_size <= 16 * 1024 * 1024:
            raise ValueError(f"segment_size must be 1 KiB to 16 MiB, not {segment_size}")
        self.inner = inner
        self.keyring = keyring
        self.segment_size = segment_size

    def __repr__(self) -> str:
        return f"EncryptedStorage({self.inner!r}, {self.keyring!r})"

    async def _put(self, key: str, chunks: AsyncIterable[bytes], counter: ByteCounter) -> None:
        """Seal the chunks into ``key`` and then write its header; the plaintext's size and
        SHA-256. The wrapped storage does not hash the ciphertext where it offers
        `UnhashedPuts`."""
        header_key = _header_key(key)
        data_key = os.urandom(32)
        nonce_prefix = os.urandom(NONCE_PREFIX_BYTES)
        sealed = seal_segments(
            chunks,
            counter,
            data_key=data_key,
            nonce_prefix=nonce_prefix,
            segment_size=self.segment_size,
        )
        await store_unhashed(self.inner, key, sealed)
        header = wrap(
            self.keyring.current,
            data_key,
            key,
            segment_size=self.segment_size,
            size=counter.size,
            nonce_prefix=nonce_prefix,
        )
        try:
            await store_unhashed(self.inner, header_key, _one(header.encode()))
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self.inner.delete(key)
                await self.inner.delete(header_key)
            raise

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        """Open the segments that hold ``[start, end)``, checking each (read and opened in one
        job per block where the wrapped storage offers `MappedReads`); `BlobNotFound` and
        `BlobUnreadable` (a master key not in the keyring, an altered header; from local
        disk, also a first block that fails its check) before any byte."""
        try:
            return await self._get(key, start, end)
        except BlobUnreadable as exc:
            log.error("openai-files: %s", exc)
            raise

    async def _get(self, key: str, start: int, end: int | None) -> AsyncIterator[bytes]:
        header, data_key = await self._open_header(key)
        stop = header.size if end is None else min(end, header.size)
        start = max(start, 0)
        if start >= stop:
            return _nothing()
        opener = BlockOpener(header, data_key, key, start=start, stop=stop)
        inner_start, inner_end = opener.inner_range
        if isinstance(self.inner, MappedReads):
            pieces = await self.inner.get_mapped(
                key, opener, start=inner_start, end=inner_end, block_size=opener.block_size
            )
            return _logged(checked_length(pieces, key, stop - start))
        stream = await self.inner.get(key, start=inner_start, end=inner_end)
        return _logged(open_segments(stream, header, data_key, key, start=start, stop=stop))

    async def head(self, key: str) -> int:
        """The plaintext's size, from the header; `BlobNotFound` when it is missing."""
        return (await self._header(key)).size

    async def delete(self, key: str) -> None:
        """Remove the header (the object is gone from then on), then the content."""
        await self.inner.delete(_header_key(key))
        await self.inner.delete(key)

    async def aclose(self) -> None:
        """Close the wrapped storage."""
        await self.inner.aclose()

    async def rewrap(self, key: str) -> bool:
        """Wrap the data key of ``key`` under the keyring's current master key, replacing
        only its header; False, with nothing written, if it already is. `BlobNotFound`, or
        `BlobUnreadable` when its master key is not in the keyring."""
        header, data_key = await self._open_header(key)
        current = self.keyring.current
        if header.key_id == current.key_id:
            return False
        rewrapped = wrap(
            current,
            data_key,
            key,
            segment_size=header.segment_size,
            size=header.size,
            nonce_prefix=header.nonce_prefix,
        )
        await store_unhashed(self.inner, _header_key(key), _one(rewrapped.encode()))
        return True

    async def key_id(self, key: str) -> str:
        """The id of the master key that wraps the data key of ``key``."""
        return (await self._header(key)).key_id

    async def iter_keys(self, *, modified_before: float) -> AsyncIterator[str]:
        """The keys of the wrapped storage written before that time, headers left out;
        nothing when it cannot list (`ListableStorage`)."""
        if isinstance(self.inner, ListableStorage):
            async for key in self.inner.iter_keys(modified_before=modified_before):
                if not key.endswith(HEADER_SUFFIX):
                    yield key

    async def remove_partials(self, *, modified_before: float) -> int:
        """The wrapped storage's own clean-up (0 when it cannot list)."""
        if isinstance(self.inner, ListableStorage):
            return await self.inner.remove_partials(modified_before=modified_before)
        return 0

    async def _header(self, key: str) -> Header:
        stream = await self.inner.get(_header_key(key))
        data = bytearray()
        async for chunk in stream:
            data += chunk
            if len(data) > _MAX_HEADER:
                raise BlobUnreadable(key, "its header is malformed")
        return Header.decode(bytes(data), key)

    async def _open_header(self, key: str) -> tuple[Header, bytes]:
        """The header of ``key`` and its data key. A header cached under a master key since
        removed is dropped from a cache that can (``evict``, `TieredStorage`) and read again:
        another replica may have re-wrapped it."""
        try:
            header = await self._header(key)
        except BlobNotFound:
            raise BlobNotFound(key) from None
        master = self.keyring.get(header.key_id)
        evict = getattr(self.inner, "evict", None)
        if master is None and evict is not None:
            await evict(_header_key(key))
            header = await self._header(key)
            master = self.keyring.get(header.key_id)
        if master is None:
            raise BlobUnreadable(
                key,
                f"its data key is wrapped under master key {header.key_id!r}, which is not in "
                "the keyring (removed before this object was re-wrapped?)",
            )
        return header, unwrap(header, master, key)


def _header_key(key: str) -> str:
    if check_key(key).endswith(HEADER_SUFFIX):
        raise ValueError(
            f"invalid storage key: {key!r} (keys ending in {HEADER_SUFFIX} name headers)"
        )
    return key + HEADER_SUFFIX


async def _logged(stream: AsyncGenerator[bytes]) -> AsyncIterator[bytes]:
    """``stream``, its `BlobUnreadable` logged for the operator (a client sees less)."""
    try:
        async for chunk in stream:
            yield chunk
    except BlobUnreadable as exc:
        log.error("openai-files: %s", exc)
        raise
    finally:
        await stream.aclose()


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def _nothing() -> AsyncIterator[bytes]:
    return
    yield  # pragma: no cover

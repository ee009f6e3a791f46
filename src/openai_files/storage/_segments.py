"""The format of `EncryptedStorage`: a header that wraps the object's data key, and the
content sealed in fixed-size segments with AES-256-GCM.

The header (kept in a small object beside the content, so re-wrapping rewrites only it)::

    b"OAFE" | version (1 byte) | key id length (1) | key id | segment size (4, big-endian)
    | plaintext size (8) | nonce prefix (7) | wrap nonce (12) | wrapped data key (32 + 16)

The data key is fresh and random for each object, sealed with AES-256-GCM under the master
key ``key id`` (`Keyring`); every header field before the wrap nonce, and the object's storage
key, are its associated data: a header edited, or moved to another key, does not unwrap.

The content is ``ceil(size / segment size)`` segments (one, empty, for an empty object), each
its plaintext sealed with the data key and the nonce ``nonce prefix | index (4) | last (1)``
(the STREAM construction): a segment altered, moved, swapped with another or taken from
another object fails its tag, and a truncated object lacks its last segment.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import struct
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from dataclasses import dataclass

import anyio.to_thread

from ..errors import BlobUnreadable
from ._keyring import KEY_BYTES, MasterKey
from .base import ByteCounter

try:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
except ImportError:  # pragma: no cover - the message is the point
    raise ImportError(
        "encrypted storage needs the 'cryptography' package: pip install 'openai-files[encryption]'"
    ) from None

__all__ = [
    "TAG_BYTES",
    "BlockOpener",
    "Header",
    "checked_length",
    "open_segments",
    "seal_segments",
    "unwrap",
    "wrap",
]

MAGIC = b"OAFE"
VERSION = 1
TAG_BYTES = 16
NONCE_PREFIX_BYTES = 7
_WRAP_NONCE_BYTES = 12
_FIXED = struct.Struct(">IQ")  # segment size, plaintext size
_BATCH = 1024 * 1024
"""About how many bytes are sealed or opened per trip to a worker thread."""


@dataclass(frozen=True)
class Header:
    """What is stored beside an object's content: how to find and check its segments."""

    key_id: str
    segment_size: int
    size: int
    nonce_prefix: bytes
    wrap_nonce: bytes
    wrapped_key: bytes

    @property
    def segments(self) -> int:
        """How many segments the content holds (an empty object has one, empty)."""
        return max(1, -(-self.size // self.segment_size))

    @property
    def sealed_size(self) -> int:
        """The size of the stored content: the plaintext and a tag per segment."""
        return self.size + TAG_BYTES * self.segments

    def fields(self) -> bytes:
        """The header's bytes before the wrap nonce."""
        key_id = self.key_id.encode()
        fixed = _FIXED.pack(self.segment_size, self.size)
        return MAGIC + bytes((VERSION, len(key_id))) + key_id + fixed + self.nonce_prefix

    def authenticated(self, storage_key: str) -> bytes:
        """The associated data of the wrapped data key: the fields and the storage key."""
        return self.fields() + storage_key.encode()

    def encode(self) -> bytes:
        return self.fields() + self.wrap_nonce + self.wrapped_key

    @classmethod
    def decode(cls, data: bytes, storage_key: str) -> Header:
        """The header in ``data``; `BlobUnreadable` if it is not one."""
        try:
            if data[:4] != MAGIC:
                raise ValueError("it has no header")
            if data[4] != VERSION:
                raise ValueError(f"its format version {data[4]} is not known")
            end = 6 + data[5]
            key_id = data[6:end].decode()
            segment_size, size = _FIXED.unpack_from(data, end)
            end += _FIXED.size
            nonce_prefix = data[end : end + NONCE_PREFIX_BYTES]
            end += NONCE_PREFIX_BYTES
            wrap_nonce = data[end : end + _WRAP_NONCE_BYTES]
            wrapped_key = data[end + _WRAP_NONCE_BYTES :]
            if len(wrapped_key) != KEY_BYTES + TAG_BYTES or segment_size < 1:
                raise ValueError("its header is malformed")
        except (IndexError, UnicodeDecodeError, struct.error):
            raise BlobUnreadable(storage_key, "its header is malformed") from None
        except ValueError as exc:
            raise BlobUnreadable(storage_key, str(exc)) from None
        return cls(key_id, segment_size, size, nonce_prefix, wrap_nonce, wrapped_key)


def wrap(
    master: MasterKey,
    data_key: bytes,
    storage_key: str,
    *,
    segment_size: int,
    size: int,
    nonce_prefix: bytes,
) -> Header:
    """The header of an object whose data key ``data_key`` is wrapped under ``master``."""
    header = Header(master.key_id, segment_size, size, nonce_prefix, os.urandom(12), b"")
    wrapped = AESGCM(master.secret).encrypt(
        header.wrap_nonce, data_key, header.authenticated(storage_key)
    )
    return Header(master.key_id, segment_size, size, nonce_prefix, header.wrap_nonce, wrapped)


def unwrap(header: Header, master: MasterKey, storage_key: str) -> bytes:
    """The data key of ``header``; `BlobUnreadable` if ``master`` does not unwrap it (another
    key with the same id, or a header altered or moved)."""
    try:
        return AESGCM(master.secret).decrypt(
            header.wrap_nonce, header.wrapped_key, header.authenticated(storage_key)
        )
    except InvalidTag:
        raise BlobUnreadable(
            storage_key,
            f"its data key does not unwrap under master key {header.key_id!r} "
            "(a different key with that id, or an altered header)",
        ) from None


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


class _Sealer:
    def __init__(self, data_key: bytes, nonce_prefix: bytes, segment_size: int) -> None:
        self.aead = AESGCM(data_key)
        self.prefix = nonce_prefix
        self.size = segment_size
        self.index = 0

    def seal(self, data: memoryview, counter: ByteCounter, final: bool) -> bytes:
        """Count (hash, with a `BlobHasher`) ``data`` and seal it as the next segments; with
        ``final`` its last segment (an empty one for no data) is the object's last."""
        counter.update(data)  # type: ignore[arg-type]  # hashlib takes any buffer
        sealed = []
        for offset in range(0, max(len(data), 1), self.size):
            last = final and offset + self.size >= len(data)
            piece = data[offset : offset + self.size]
            sealed.append(self.aead.encrypt(_nonce(self.prefix, self.index, last), piece, None))
            self.index += 1
        return sealed[0] if len(sealed) == 1 else b"".join(sealed)


async def seal_segments(
    chunks: AsyncIterable[bytes],
    counter: ByteCounter,
    *,
    data_key: bytes,
    nonce_prefix: bytes,
    segment_size: int,
) -> AsyncIterator[bytes]:
    """``chunks`` sealed in segments (counted by ``counter`` on the way), about 1 MiB of them
    at a time in a worker thread while the next MiB arrives: at most two batches and one
    chunk are held at once. (The thread runs on the asyncio loop's executor.)

    A batch is joined here, on the loop: joined in the worker threads, the batches came from
    each thread's own malloc arena, and a 256 MiB upload grew the server's memory by 13 to
    25 MiB instead of 6."""
    sealer = _Sealer(data_key, nonce_prefix, segment_size)
    batch = max(1, _BATCH // segment_size) * segment_size
    loop = asyncio.get_running_loop()
    sealing: asyncio.Future[bytes] | None = None
    parts: list[bytes] = []
    held = 0
    try:
        async for chunk in chunks:
            parts.append(chunk)
            held += len(chunk)
            if held > batch:
                data = parts[0] if len(parts) == 1 else b"".join(parts)
                # Keep at least one byte back: the last segment is sealed as such at the end.
                whole = (held - 1) // segment_size * segment_size
                parts, held = [data[whole:]], held - whole
                if sealing is not None:
                    yield await sealing  # in order: the hash takes the batches one by one
                view = memoryview(data)[:whole]
                sealing = loop.run_in_executor(None, sealer.seal, view, counter, False)
        if sealing is not None:
            yield await sealing
            sealing = None
        last = memoryview(b"".join(parts))
        yield await anyio.to_thread.run_sync(sealer.seal, last, counter, True)
    finally:
        if sealing is not None:
            sealing.cancel()


class _Opener:
    """Opens the segments of one range as they arrive in chunks of any size: whole segments
    straight from the chunk, only those that straddle two chunks copied."""

    def __init__(self, header: Header, data_key: bytes, storage_key: str, first: int) -> None:
        self.aead = AESGCM(data_key)
        self.header = header
        self.storage_key = storage_key
        self.sealed = header.segment_size + TAG_BYTES
        self.index = first
        self.partial = b""

    def open(self, chunk: bytes) -> list[bytes]:
        """The plaintext of every segment that ``chunk`` completes."""
        view, opened = memoryview(chunk), list[bytes]()
        if self.partial:
            take = self.sealed - len(self.partial)
            self.partial += view[:take]
            view = view[take:]
            if len(self.partial) < self.sealed:
                return opened
            opened.append(self._open(self.partial))
            self.partial = b""
        whole = len(view) // self.sealed * self.sealed
        for offset in range(0, whole, self.sealed):
            opened.append(self._open(view[offset : offset + self.sealed]))
        self.partial = bytes(view[whole:])
        return opened

    def finish(self) -> list[bytes]:
        """The last, shorter segment, if the stream ended with one."""
        partial, self.partial = self.partial, b""
        return [self._open(partial)] if partial else []

    def _open(self, sealed: bytes | memoryview) -> bytes:
        opened = _open_segment(self.aead, self.header, self.storage_key, self.index, sealed)
        self.index += 1
        return opened


def _open_segment(
    aead: AESGCM, header: Header, storage_key: str, index: int, sealed: bytes | memoryview
) -> bytes:
    """The plaintext of the segment ``index`` of the object; `BlobUnreadable` if ``sealed``
    fails its check."""
    nonce = _nonce(header.nonce_prefix, index, index == header.segments - 1)
    try:
        return aead.decrypt(nonce, sealed, None)
    except InvalidTag:
        raise BlobUnreadable(
            storage_key,
            f"segment {index} fails its integrity check (altered, reordered, "
            "truncated, or another object's bytes)",
        ) from None


class BlockOpener:
    """Opens the plaintext ``[start, stop)`` from blocks of whole sealed segments read at any
    offset that is a multiple of the sealed segment size, in any thread and in any order: a
    block's segments are known by its offset, not by the blocks before it. It is the function
    of a `MappedReads` read of `inner_range` in blocks of `block_size`."""

    def __init__(
        self, header: Header, data_key: bytes, storage_key: str, *, start: int, stop: int
    ) -> None:
        self.header = header
        self.data_key = data_key
        self.storage_key = storage_key
        self.start = start
        self.stop = stop
        self.sealed = header.segment_size + TAG_BYTES

    @property
    def inner_range(self) -> tuple[int, int]:
        """The stored bytes that hold ``[start, stop)``: its segments, and no others."""
        size = self.header.segment_size
        first, last = self.start // size, (self.stop - 1) // size
        return first * self.sealed, min((last + 1) * self.sealed, self.header.sealed_size)

    @property
    def block_size(self) -> int:
        """Whole sealed segments, about `_BATCH` bytes of them (one segment, by default)."""
        return max(1, _BATCH // self.sealed) * self.sealed

    def __call__(self, offset: int, block: memoryview) -> bytes:
        """The plaintext (within the range) of the segments of ``block``, which starts at
        ``offset`` of the stored bytes; `BlobUnreadable` if one fails its check (a block cut
        short fails on its last, partial segment)."""
        # An AESGCM per block: blocks may be opened in several threads at once.
        aead, size, sealed = AESGCM(self.data_key), self.header.segment_size, self.sealed
        pieces = []
        index = offset // sealed
        for at in range(0, len(block), sealed):
            plain = _open_segment(
                aead, self.header, self.storage_key, index, block[at : at + sealed]
            )
            base = index * size
            if base < self.start or base + len(plain) > self.stop:
                plain = plain[max(0, self.start - base) : max(0, self.stop - base)]
            pieces.append(plain)
            index += 1
        # One piece per block: each costs a pass through the HTTP stack.
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


async def checked_length(
    pieces: AsyncIterator[bytes], storage_key: str, length: int
) -> AsyncGenerator[bytes]:
    """The non-empty ``pieces`` (the plaintext of a range, from a `BlockOpener`), then
    `BlobUnreadable` if they hold fewer than ``length`` bytes: the stored object ended early
    (truncated at a segment's end). Closes ``pieces`` however it ends."""
    received = 0
    try:
        async for piece in pieces:
            if piece:
                received += len(piece)
                yield piece
        if received < length:
            raise BlobUnreadable(
                storage_key, "its content is shorter than its header says (truncated)"
            )
    finally:
        closer = getattr(pieces, "aclose", None)
        if closer is not None:
            await closer()


async def open_segments(
    stream: AsyncIterator[bytes],
    header: Header,
    data_key: bytes,
    storage_key: str,
    *,
    start: int,
    stop: int,
) -> AsyncGenerator[bytes]:
    """The plaintext ``[start, stop)`` of the sealed segments ``stream`` carries (those that
    hold the range, and no others), a piece per batch of about 1 MiB of ``stream``;
    `BlobUnreadable` as soon as one fails its check or the stream ends early. Closes
    ``stream`` however it ends.

    Reads a piece ahead: while the consumer sends a piece, the next batch is read and opened
    in a worker thread (on the asyncio loop's executor), so reading, opening and sending
    overlap and the loop stays free to send."""
    size = header.segment_size
    opener = _Opener(header, data_key, storage_key, start // size)
    last = (stop - 1) // size
    loop = asyncio.get_running_loop()

    def opened(chunks: list[bytes], ended: bool) -> bytes:
        first = opener.index
        plains = [plain for chunk in chunks for plain in opener.open(chunk)]
        if ended:
            plains += opener.finish()
        pieces = []
        for index, plain in enumerate(plains, first):
            base = index * size
            if base < start or base + len(plain) > stop:
                plain = plain[max(0, start - base) : max(0, stop - base)]
            pieces.append(plain)
        # One piece per batch: each costs a pass through the HTTP stack.
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)

    ended = False

    async def next_piece() -> bytes | None:
        """The plaintext of the next batch of chunks; None once the stream has ended."""
        nonlocal ended
        while not ended:
            chunks, held = [], 0
            while held < _BATCH:
                if (chunk := await anext(stream, None)) is None:
                    ended = True
                    break
                chunks.append(chunk)
                held += len(chunk)
            if piece := await loop.run_in_executor(None, opened, chunks, ended):
                return piece
        return None

    following: asyncio.Future[bytes | None] = asyncio.ensure_future(next_piece())
    try:
        while (piece := await following) is not None:
            following = asyncio.ensure_future(next_piece())
            yield piece
        if opener.index <= last:
            raise BlobUnreadable(
                storage_key, "its content is shorter than its header says (truncated)"
            )
    finally:
        if not following.done():
            following.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await following
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()

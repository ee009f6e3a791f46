"""Identifiers: file ids that sort by creation time and carry it, and storage keys.

A file id is ``file-`` followed by 24 base62 characters: 9 that encode the creation time in
microseconds since the epoch (fixed width, so the time can be read back) and 15 random ones.
Because the id carries its own position in the listing order, ``after=<id>`` stays a valid
cursor even when that file has been deleted between two pages.

Under ``Policy(file_id_format="uuid7")`` a file id is a UUID version 7 instead (RFC 9562): its
48-bit timestamp holds the milliseconds, and its 12-bit ``rand_a`` field the microseconds
within them (the RFC's "increased clock precision"), so it carries the creation time just as
exactly. Both forms are read back by `parse_file_id`, whichever the policy makes now.
"""

from __future__ import annotations

import re
import uuid
from typing import Literal

from ._random import random_below, random_hex

__all__ = [
    "FILE_ID_PREFIX",
    "INLINE_KEY_PREFIX",
    "OBJECT_ID_LENGTH",
    "FileIdFormat",
    "inline_key",
    "is_inline",
    "new_file_id",
    "new_object_id",
    "new_storage_key",
    "parse_file_id",
]

FileIdFormat = Literal["openai", "uuid7"]

FILE_ID_PREFIX = "file-"
_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_INDEX = {char: value for value, char in enumerate(_ALPHABET)}
_TIME_WIDTH = 9  # 62**9 microseconds reach beyond the year 2400
_RANDOM_WIDTH = 15  # about 89 bits of randomness
_ID_LENGTH = len(FILE_ID_PREFIX) + _TIME_WIDTH + _RANDOM_WIDTH
_UUID7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def _random_base62(width: int) -> str:
    """``width`` uniformly random base62 characters, from one draw of random bytes
    (`random_below`: the system's random source, read a page at a time)."""
    return _encode(random_below(62**width), width)


def _encode(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, digit = divmod(value, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def new_file_id(created_us: int, id_format: FileIdFormat = "openai") -> str:
    """A fresh file id for a file created at ``created_us`` (microseconds since the epoch)."""
    if id_format == "uuid7":
        return _uuid7(created_us)
    return FILE_ID_PREFIX + _encode(created_us, _TIME_WIDTH) + _random_base62(_RANDOM_WIDTH)


def _uuid7(created_us: int) -> str:
    milliseconds, microseconds = divmod(created_us, 1000)
    value = (milliseconds & (1 << 48) - 1) << 80  # unix_ts_ms
    value |= 0x7 << 76 | microseconds << 64  # version, rand_a: the microseconds
    value |= 0b10 << 62 | random_below(1 << 62)  # variant, rand_b
    return str(uuid.UUID(int=value))


def parse_file_id(file_id: str) -> int | None:
    """The creation time (microseconds) that ``file_id`` carries, or None if it is not our id."""
    if _UUID7.fullmatch(file_id):
        value = uuid.UUID(file_id).int
        microseconds = value >> 64 & 0xFFF
        return None if microseconds >= 1000 else (value >> 80) * 1000 + microseconds
    if len(file_id) != _ID_LENGTH or not file_id.startswith(FILE_ID_PREFIX):
        return None
    body = file_id[len(FILE_ID_PREFIX) :]
    if any(char not in _INDEX for char in body):
        return None
    value = 0
    for char in body[:_TIME_WIDTH]:
        value = value * 62 + _INDEX[char]
    return value


OBJECT_ID_LENGTH = 24
"""How many base62 characters follow the prefix of an id from `new_object_id`."""


def new_object_id(prefix: str) -> str:
    """A random id such as ``upload_`` or ``part_`` followed by 24 base62 characters."""
    return prefix + _random_base62(OBJECT_ID_LENGTH)


def new_storage_key() -> str:
    """A random storage key, sharded one level deep into 256 directories (``ab/abcd...``);
    never from user input.

    One level, not two (``ab/cd/``, the keys of earlier releases, which stay valid): on local
    disk a put that makes a directory flushes that directory's parent too, so with 65,536
    directories most puts of a store's first few hundred thousand files paid for a new one;
    with 256, only about the first 1,500 do. A directory of 40,000 files (10 million in all)
    is still one indexed lookup on ext4 and XFS."""
    token = random_hex(16)
    return f"{token[:2]}/{token}"


INLINE_KEY_PREFIX = "inline:"
"""Begins the storage key of a file whose bytes the metadata store keeps (`InlineFiles`):
never a key of the storage, whose keys `new_storage_key` makes of hex digits and a slash."""


def inline_key(storage_key: str) -> str:
    """The key of ``storage_key``'s bytes when the metadata store keeps them instead."""
    return INLINE_KEY_PREFIX + storage_key


def is_inline(storage_key: str) -> bool:
    """Whether a record's ``storage_key`` names bytes that its metadata store keeps."""
    return storage_key.startswith(INLINE_KEY_PREFIX)

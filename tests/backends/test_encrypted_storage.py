"""`EncryptedStorage`: what is stored is ciphertext, ranges at segment boundaries, tampering
detected, and master keys rotated by re-wrapping."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from openai_files import BlobNotFound, BlobUnreadable, LocalStorage, MemoryStorage
from openai_files.storage.encrypted import HEADER_SUFFIX, EncryptedStorage, Keyring, MasterKey
from openai_files.storage.tiered import TieredStorage

from ..s3_servers import S3Server

pytestmark = pytest.mark.anyio

SEGMENT = 4096
MARKER = b"PLAINTEXT-MARKER-7f3a9c"
KEY1 = MasterKey("key-1", os.urandom(32))
KEY2 = MasterKey("key-2", os.urandom(32))


async def chunked(data: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    for offset in range(0, len(data), size):
        yield data[offset : offset + size]


async def drain(stream: AsyncIterator[bytes], into: bytearray) -> None:
    async for chunk in stream:
        into += chunk


async def read(
    storage: EncryptedStorage, key: str, start: int = 0, end: int | None = None
) -> bytes:
    return b"".join([chunk async for chunk in await storage.get(key, start=start, end=end)])


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def marked(size: int) -> bytes:
    """``size`` bytes made of the marker over and over: any plaintext left shows."""
    return (MARKER * (size // len(MARKER) + 1))[:size]


@pytest.fixture
def memory() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def encrypted(memory: MemoryStorage) -> EncryptedStorage:
    return EncryptedStorage(memory, Keyring([KEY1]), segment_size=SEGMENT)


# -- what is stored ----------------------------------------------------------------------------


async def test_the_bytes_on_disk_never_hold_the_plaintext(tmp_path: Path) -> None:
    storage = EncryptedStorage(LocalStorage(tmp_path), Keyring([KEY1]), segment_size=SEGMENT)
    data = marked(10 * SEGMENT + 5)
    blob = await storage.put("aa/bb/secret", chunked(data))
    assert (blob.size, blob.sha256) == (len(data), hashlib.sha256(data).hexdigest())
    files = files_under(tmp_path)
    assert sorted(files) == ["aa/bb/secret", "aa/bb/secret" + HEADER_SUFFIX]
    assert not any(MARKER[:8] in content for content in files.values())
    assert len(files["aa/bb/secret"]) == len(data) + 16 * 11
    assert await read(storage, "aa/bb/secret") == data


async def test_the_objects_in_the_bucket_never_hold_the_plaintext(moto: S3Server) -> None:
    bucket = moto.create_bucket()
    try:
        storage = EncryptedStorage(moto.storage(bucket), Keyring([KEY1]))
        data = marked(6 * 1024 * 1024)
        await storage.put("aa/bb/secret", chunked(data, 64 * 1024))

        def bodies() -> list[bytes]:
            names = moto.object_names(bucket, "")
            return [moto.client.get_object(Bucket=bucket, Key=n)["Body"].read() for n in names]

        stored = await anyio.to_thread.run_sync(bodies)
        assert len(stored) == 2
        assert not any(MARKER[:8] in body for body in stored)
        assert await read(storage, "aa/bb/secret") == data
        await storage.aclose()
    finally:
        moto.remove_bucket(bucket)


async def test_the_hot_tier_holds_ciphertext_only(tmp_path: Path) -> None:
    hot = LocalStorage(tmp_path / "hot", fsync=False)
    tiers = TieredStorage(hot, LocalStorage(tmp_path / "cold"), max_bytes=1 << 30)
    storage = EncryptedStorage(tiers, Keyring([KEY1]), segment_size=SEGMENT)
    data = marked(100_000)
    await storage.put("aa/bb/secret", chunked(data))
    assert await read(storage, "aa/bb/secret") == data
    cached = files_under(tmp_path / "hot")
    assert sorted(cached) == ["aa/bb/secret", "aa/bb/secret" + HEADER_SUFFIX]
    assert not any(MARKER[:8] in content for content in cached.values())
    assert tiers.stats.fills == 2


# -- ranges --------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 3 * SEGMENT, 300_001])
async def test_every_range_reads_back_exactly(encrypted: EncryptedStorage, size: int) -> None:
    data = os.urandom(size)
    await encrypted.put("aa/bb/ranged", chunked(data, 777))
    assert await encrypted.head("aa/bb/ranged") == size
    assert await read(encrypted, "aa/bb/ranged") == data
    edges = {0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 2 * SEGMENT, size - 1, size, size + 1}
    points = sorted(p for p in edges if 0 <= p <= size + 1)
    for start in points:
        for end in points:
            assert await read(encrypted, "aa/bb/ranged", start, end) == data[start:end]
    if size:
        assert await read(encrypted, "aa/bb/ranged", 0, 1) == data[:1]
        assert await read(encrypted, "aa/bb/ranged", size - 1) == data[-1:]


async def test_a_range_reads_only_the_segments_it_needs(encrypted: EncryptedStorage) -> None:
    data = os.urandom(20 * SEGMENT)
    await encrypted.put("aa/bb/big", chunked(data))
    asked: list[tuple[int, int | None]] = []
    inner = encrypted.inner
    original = inner.get

    async def spying(key: str, *, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        if not key.endswith(HEADER_SUFFIX):
            asked.append((start, end))
        return await original(key, start=start, end=end)

    inner.get = spying  # type: ignore[method-assign]
    assert isinstance(inner, MemoryStorage)
    original_mapped = inner.get_mapped

    async def spying_mapped(  # the read of a storage that offers `MappedReads`
        key: str,
        function: Callable[[int, memoryview], Any],
        *,
        start: int,
        end: int,
        block_size: int,
    ) -> AsyncIterator[Any]:
        asked.append((start, end))
        return await original_mapped(key, function, start=start, end=end, block_size=block_size)

    inner.get_mapped = spying_mapped  # type: ignore[method-assign]
    assert (
        await read(encrypted, "aa/bb/big", 5 * SEGMENT + 10, 6 * SEGMENT + 1)
        == (data[5 * SEGMENT + 10 : 6 * SEGMENT + 1])
    )
    sealed = SEGMENT + 16
    assert asked == [(5 * sealed, 7 * sealed)]


# -- tampering -----------------------------------------------------------------------------------


async def stored(memory: MemoryStorage, key: str) -> bytearray:
    return bytearray(b"".join([c async for c in await memory.get(key)]))


async def replace(memory: MemoryStorage, key: str, data: bytes | bytearray) -> None:
    await memory.put(key, chunked(bytes(data)))


async def assert_unreadable(storage: EncryptedStorage, key: str, start: int = 0) -> None:
    """Reading fails with `BlobUnreadable`; the bytes before the failure were all genuine."""
    received = bytearray()
    with pytest.raises(BlobUnreadable):
        await drain(await storage.get(key, start=start), received)
    assert len(received) % SEGMENT == 0


@pytest.fixture
async def victim(encrypted: EncryptedStorage) -> bytes:
    data = os.urandom(5 * SEGMENT + 100)
    await encrypted.put("aa/bb/victim", chunked(data))
    return data


@pytest.mark.parametrize("where", [0, SEGMENT + 16 + 7, -1])
async def test_a_flipped_content_byte_is_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes, where: int
) -> None:
    content = await stored(memory, "aa/bb/victim")
    content[where] ^= 0x01
    await replace(memory, "aa/bb/victim", content)
    await assert_unreadable(encrypted, "aa/bb/victim")


async def test_a_flipped_header_byte_is_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    header = await stored(memory, "aa/bb/victim" + HEADER_SUFFIX)
    for where in range(4, len(header)):
        altered = bytearray(header)
        altered[where] ^= 0x01
        await replace(memory, "aa/bb/victim" + HEADER_SUFFIX, altered)
        with pytest.raises(BlobUnreadable):
            await read(encrypted, "aa/bb/victim")


@pytest.mark.parametrize("cut", [1, 16, SEGMENT + 16, 100 + 16])
async def test_a_truncated_object_is_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes, cut: int
) -> None:
    content = await stored(memory, "aa/bb/victim")
    await replace(memory, "aa/bb/victim", content[:-cut])
    await assert_unreadable(encrypted, "aa/bb/victim")
    with pytest.raises(BlobUnreadable):
        await read(encrypted, "aa/bb/victim", len(victim) - 1)


async def test_two_swapped_segments_are_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    content = await stored(memory, "aa/bb/victim")
    sealed = SEGMENT + 16
    first, second = content[sealed : 2 * sealed], content[2 * sealed : 3 * sealed]
    content[sealed : 2 * sealed], content[2 * sealed : 3 * sealed] = second, first
    await replace(memory, "aa/bb/victim", content)
    await assert_unreadable(encrypted, "aa/bb/victim")
    with pytest.raises(BlobUnreadable):
        await read(encrypted, "aa/bb/victim", sealed, sealed + 10)


async def test_a_segment_of_another_object_is_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    await encrypted.put("aa/bb/other", chunked(os.urandom(len(victim))))
    content = await stored(memory, "aa/bb/victim")
    other = await stored(memory, "aa/bb/other")
    sealed = SEGMENT + 16
    content[sealed : 2 * sealed] = other[sealed : 2 * sealed]
    await replace(memory, "aa/bb/victim", content)
    await assert_unreadable(encrypted, "aa/bb/victim")


async def test_another_objects_content_or_header_under_the_key_is_an_error(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    await encrypted.put("aa/bb/other", chunked(os.urandom(len(victim))))
    header = await stored(memory, "aa/bb/victim" + HEADER_SUFFIX)
    await replace(memory, "aa/bb/victim", await stored(memory, "aa/bb/other"))
    await assert_unreadable(encrypted, "aa/bb/victim")
    await replace(memory, "aa/bb/other" + HEADER_SUFFIX, header)  # a header moved to a key
    with pytest.raises(BlobUnreadable):
        await read(encrypted, "aa/bb/other")


async def test_a_wrong_master_key_with_the_same_id_is_an_error(
    memory: MemoryStorage, encrypted: EncryptedStorage, victim: bytes
) -> None:
    impostor = EncryptedStorage(memory, Keyring([MasterKey(KEY1.key_id, os.urandom(32))]))
    with pytest.raises(BlobUnreadable, match="does not unwrap under master key 'key-1'"):
        await impostor.get("aa/bb/victim")


async def test_a_missing_header_or_content_is_blob_not_found(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    await memory.delete("aa/bb/victim")
    with pytest.raises(BlobNotFound):
        await encrypted.get("aa/bb/victim")
    await memory.delete("aa/bb/victim" + HEADER_SUFFIX)
    with pytest.raises(BlobNotFound):
        await encrypted.head("aa/bb/victim")


def test_keys_that_name_headers_are_refused(encrypted: EncryptedStorage) -> None:
    with pytest.raises(ValueError, match="name headers"):
        anyio.run(encrypted.head, "aa/bb/file" + HEADER_SUFFIX)


# -- rotation ------------------------------------------------------------------------------------


async def test_rotation_rewraps_headers_only_and_old_keys_can_then_go(tmp_path: Path) -> None:
    disk = LocalStorage(tmp_path)
    before = EncryptedStorage(disk, Keyring([KEY1]), segment_size=SEGMENT)
    files = {f"aa/bb/file{n}": os.urandom(n * 3000) for n in range(6)}
    for key, data in files.items():
        await before.put(key, chunked(data))
    contents = files_under(tmp_path)

    rotated = EncryptedStorage(disk, Keyring([KEY2, KEY1]), segment_size=SEGMENT)
    newer = os.urandom(5000)
    await rotated.put("aa/bb/newer", chunked(newer))
    assert await rotated.key_id("aa/bb/newer") == "key-2"
    for key, data in files.items():
        assert await read(rotated, key) == data  # old keys still read
        assert await rotated.rewrap(key) is True
        assert await rotated.rewrap(key) is False  # already under the newest key
    after = files_under(tmp_path)
    for key in files:
        assert after[key] == contents[key]  # the content did not move
        assert after[key + HEADER_SUFFIX] != contents[key + HEADER_SUFFIX]

    only_new = EncryptedStorage(disk, Keyring([KEY2]))
    for key, data in {**files, "aa/bb/newer": newer}.items():
        assert await only_new.key_id(key) == "key-2"
        assert await read(only_new, key) == data


async def test_an_object_whose_master_key_is_gone_fails_clearly(
    encrypted: EncryptedStorage, memory: MemoryStorage, victim: bytes
) -> None:
    without = EncryptedStorage(memory, Keyring([KEY2]))
    with pytest.raises(BlobUnreadable, match="master key 'key-1', which is not in the keyring"):
        await without.get("aa/bb/victim")
    with pytest.raises(BlobUnreadable, match="not in the keyring"):
        await without.rewrap("aa/bb/victim")


async def test_a_stale_header_in_a_hot_tier_is_read_again_from_the_cold_tier(
    tmp_path: Path,
) -> None:
    """Another replica re-wrapped the object and the old key is gone: this replica's hot tier
    still holds the old header, drops it and reads the new one."""
    cold = LocalStorage(tmp_path / "cold")
    tiers = TieredStorage(MemoryStorage(), cold, max_bytes=1 << 20)
    replica = EncryptedStorage(tiers, Keyring([KEY1]), segment_size=SEGMENT)
    data = os.urandom(10_000)
    await replica.put("aa/bb/file", chunked(data))
    assert await read(replica, "aa/bb/file") == data  # cached, header included
    assert await EncryptedStorage(cold, Keyring([KEY2, KEY1])).rewrap("aa/bb/file")
    replica.keyring = Keyring([KEY2])
    assert await read(replica, "aa/bb/file") == data


# -- key files -----------------------------------------------------------------------------------


def key_line(key_id: str, size: int = 32) -> str:
    return f"{key_id}:{base64.b64encode(bytes(range(size))).decode()}"


def test_a_key_file_lists_keys_the_first_writing(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# rotated 2026-12\n{key_line('new')}\n\n{key_line('old')}\n")
    keyring = Keyring.from_file(path)
    assert keyring.key_ids == ["new", "old"]
    assert keyring.current.key_id == "new"
    assert "secret" not in repr(keyring.current)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no key"),
        ("no-colon-here", "line 1: write KEY_ID:BASE64_32_BYTES"),
        ("k:not base64!", "line 1: the key after ':' is not valid base64"),
        (f"k:{base64.b64encode(b'x' * 16).decode()}", "line 1: master key 'k' is 16 bytes"),
        (f"bad id:{base64.b64encode(b'x' * 32).decode()}", "line 1: invalid master key id"),
        (f"{key_line('k')}\n{key_line('k')}", "'k' is given twice"),
    ],
    ids=["empty", "no-colon", "not-base64", "short", "bad-id", "twice"],
)
def test_a_bad_key_file_says_which_line_and_never_shows_a_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = tmp_path / "keys"
    path.write_text(text)
    with pytest.raises(ValueError, match=message) as caught:
        Keyring.from_file(path)
    assert base64.b64encode(b"x" * 16).decode() not in str(caught.value)

"""Encryption at rest and a hot tier, composed by hand around any storage.

    python examples/encrypted_tiers.py

The cold tier here is a directory standing in for S3 (`S3Storage` takes its place unchanged);
the hot tier is a bounded directory on local disk; encryption wraps both, so neither holds a
byte of plaintext. Then the master key is rotated: a new key is put first in the keyring, every
file re-wrapped (only its small header is rewritten), and the old key dropped.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import anyio

from openai_files import FilesService, LocalStorage, SQLMetadataStore
from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey
from openai_files.storage.tiered import TieredStorage

SECRET = b"the quarterly numbers, line by line\n" * 10_000


async def main(root: Path) -> None:
    # --8<-- [start:compose]
    first = MasterKey("2026-12", os.urandom(32))  # in production: Keyring.from_file(path)
    cold = LocalStorage(root / "cold")  # or S3Storage("bucket", prefix="files/")
    hot = LocalStorage(root / "cache", fsync=False)  # a cache: the cold tier is the durable one
    tiers = TieredStorage(hot, cold, max_bytes=1024**3)
    storage = EncryptedStorage(tiers, Keyring([first]))
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}")
    async with FilesService(storage, metadata) as files:
        created = await files.create(
            "team-a", file=SECRET, filename="numbers.txt", purpose="assistants"
        )
        for _ in range(2):  # the first read fills the hot tier, the second is served from it
            content = await files.content("team-a", created.id)
            assert b"".join([chunk async for chunk in content.chunks]) == SECRET
        print(f"hot tier: {tiers.stats}")
        # --8<-- [end:compose]
        for directory in (root / "cold", root / "cache"):
            for path in directory.rglob("*"):
                assert not path.is_file() or b"quarterly" not in path.read_bytes()
        print("no plaintext on disk, in either tier")

        # --8<-- [start:rotate]
        second = MasterKey("2027-06", os.urandom(32))
        storage.keyring = Keyring([second, first])  # new files use the first key; all read
        async for key in storage.iter_keys(modified_before=float("inf")):
            await storage.rewrap(key)  # `openai-files storage rewrap` does this for a server
        storage.keyring = Keyring([second])  # the old key may go now
        # --8<-- [end:rotate]
        content = await files.content("team-a", created.id)
        assert b"".join([chunk async for chunk in content.chunks]) == SECRET
        await files.delete("team-a", created.id)
        print(f"rotated to {second.key_id!r}, read the file again, and deleted it")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))

"""The soak's check after the load (``tests/soak/soak_check.py``) finds what it is there to find.

A checker that always said "0 lost" would make every soak pass, so here it runs on a small
deployment (S3 in moto, SQLite) where three files were made as the soak's clients make them,
first untouched (it finds nothing), then with one fault planted each time: a file lost, a file
whose bytes changed, an object no record knows. Each must show in its findings."""

from __future__ import annotations

import hashlib
import importlib
import random
import sys
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from openai_files import FilesService, SQLMetadataStore

from ..s3_servers import S3Server

pytestmark = pytest.mark.anyio

SOAK_DIR = Path(__file__).resolve().parents[1] / "soak"


@pytest.fixture(scope="module")
def soak() -> Iterator[tuple[Any, Any]]:
    """The modules ``soak_check`` and ``soak_clients``, which import each other by plain name
    (they run as scripts from their folder)."""
    sys.path.insert(0, str(SOAK_DIR))
    try:
        yield importlib.import_module("soak_check"), importlib.import_module("soak_clients")
    finally:
        sys.path.remove(str(SOAK_DIR))


@dataclass
class Soaked:
    service: FilesService
    moto: S3Server
    check: Any
    clients: list[Any]
    sent: dict[str, Any]
    ids: list[str]

    async def verify(self) -> Any:
        return await self.check.verify(self.service, self.clients, self.moto.client, self.sent)


@pytest.fixture
async def soaked(soak: tuple[Any, Any], moto: S3Server, tmp_path: Path) -> AsyncIterator[Soaked]:
    """Three files of one client, made through the service on the soak's bucket."""
    check, clients_module = soak
    bucket = check.BUCKET
    moto.client.create_bucket(Bucket=bucket)
    storage = moto.storage(bucket, prefix=f"{check.PREFIX}/")
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}")
    sent: dict[str, Any] = {}
    tally = clients_module.Tally()
    client = clients_module.Client(0, "sk-0", "owner-0", ["http://unused"], tally, sent, 7)
    ids = []
    try:
        async with FilesService(storage, metadata) as service:
            for index in range(3):
                data = random.Random(index).randbytes(1000 + index)
                filename = f"soak-{index}.bin"
                expected = clients_module.Expected(
                    owner="owner-0",
                    filename=filename,
                    size=len(data),
                    seed=index,
                    sha256=hashlib.sha256(data).hexdigest(),
                    purpose="assistants",
                )
                created = await service.create(
                    "owner-0", file=data, filename=filename, purpose="assistants"
                )
                sent[filename] = expected
                client.alive[created.id] = expected
                ids.append(created.id)
            yield Soaked(service, moto, check, [client], sent, ids)
    finally:
        await client.http.aclose()
        moto.remove_bucket(bucket)


async def object_key(soaked: Soaked, file_id: str) -> str:
    """The key of the file's object in the bucket."""
    record = await soaked.service.metadata.get("owner-0", file_id, now=0)
    assert record is not None
    return f"{soaked.check.PREFIX}/{record.storage_key}"


async def test_an_untouched_deployment_has_nothing_to_report(soaked: Soaked) -> None:
    findings = await soaked.verify()
    assert findings.counts["files alive, found"] == 3
    assert findings.counts["file lost"] == findings.counts["file corrupted"] == 0
    assert findings.leaked == 0
    assert findings.examples == []


async def test_a_lost_file_is_reported(soaked: Soaked) -> None:
    await soaked.service.delete("owner-0", soaked.ids[1])  # no client was told
    findings = await soaked.verify()
    assert findings.counts["file lost"] == 1
    assert findings.counts["files alive, found"] == 2
    assert any(soaked.ids[1] in example for example in findings.examples)


async def test_a_corrupted_file_is_reported(soaked: Soaked) -> None:
    key = await object_key(soaked, soaked.ids[0])
    data = soaked.moto.client.get_object(Bucket=soaked.check.BUCKET, Key=key)["Body"].read()
    changed = bytes([data[0] ^ 1]) + data[1:]
    soaked.moto.client.put_object(Bucket=soaked.check.BUCKET, Key=key, Body=changed)
    findings = await soaked.verify()
    assert findings.counts["file corrupted"] == 1
    assert findings.counts["file lost"] == 0
    assert any(soaked.ids[0] in example for example in findings.examples)


async def test_a_leaked_object_is_reported(soaked: Soaked) -> None:
    leaked = f"{soaked.check.PREFIX}/ab/cd/{'0' * 32}"
    soaked.moto.client.put_object(Bucket=soaked.check.BUCKET, Key=leaked, Body=b"left behind")
    findings = await soaked.verify()
    assert findings.leaked == 1
    assert findings.before_orphan_sweep["objects without a record"] == 1
    assert any(leaked.removeprefix("soak/") in example for example in findings.examples)
    assert findings.counts["file lost"] == findings.counts["file corrupted"] == 0

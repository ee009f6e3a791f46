"""Quotas hold under concurrent uploads through two replicas sharing PostgreSQL and S3.

The quota lives in the database (one conditional update of the owner's usage row), so 32
uploads racing through two `openai-files serve` processes can never store more than the
owner's files or bytes allow, and what is counted always equals what is listed and stored.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from threading import Barrier
from typing import Any

import anyio
import httpx
from sqlalchemy import select

from openai_files import SQLMetadataStore

from ..clusters import KEY, Cluster
from ..databases import POSTGRES_URL
from ..s3_servers import S3Server

MAX_FILES = 10
MAX_BYTES = 1024 * 1024
UPLOADS = 32


def upload_all(urls: tuple[str, str], sizes: list[int]) -> list[httpx.Response]:
    """Upload one file of each size from its own thread, alternating replicas, all released
    at once."""
    start = Barrier(len(sizes))

    def upload(index: int) -> httpx.Response:
        data = bytes([index]) * sizes[index]
        with httpx.Client(base_url=urls[index % 2], timeout=60) as client:
            start.wait()
            return client.post(
                "/v1/files",
                headers={"authorization": f"Bearer {KEY}"},
                data={"purpose": "user_data"},
                files={"file": (f"f{index}.bin", data, "application/octet-stream")},
            )

    with ThreadPoolExecutor(max_workers=len(sizes)) as pool:
        return list(pool.map(upload, range(len(sizes))))


def listed(url: str) -> list[dict[str, Any]]:
    response = httpx.get(
        url + "/v1/files", params={"limit": 100}, headers={"authorization": f"Bearer {KEY}"}
    )
    response.raise_for_status()
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def database(
    prefix: str,
) -> tuple[list[tuple[str, int, int]], list[tuple[str, str, int]]]:
    """Every usage row as (owner, files, bytes) and every file record as (state, key, bytes)."""
    store = SQLMetadataStore(POSTGRES_URL, table_prefix=prefix)
    usage, files = store.tables.usage, store.tables.files
    try:
        async with store.engine.connect() as connection:
            usage_rows = (
                await connection.execute(select(usage.c.owner, usage.c.files, usage.c.bytes))
            ).all()
            file_rows = (
                await connection.execute(select(files.c.state, files.c.storage_key, files.c.bytes))
            ).all()
    finally:
        await store.aclose()
    return (
        [(row.owner, row.files, row.bytes) for row in usage_rows],
        [(row.state, row.storage_key, row.bytes) for row in file_rows],
    )


def check_outcome(
    cluster: Cluster, moto: S3Server, urls: tuple[str, str], responses: list[httpx.Response]
) -> list[dict[str, Any]]:
    """Every upload either succeeded or was refused for the quota; the database's usage,
    the records, both replicas' listings and the bucket then agree. The stored files."""
    created = [r.json() for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    for response in refused:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "quota_exceeded", response.text
    first, second = listed(urls[0]), listed(urls[1])
    assert sorted(f["id"] for f in first) == sorted(f["id"] for f in created)
    assert sorted(f["id"] for f in second) == sorted(f["id"] for f in created)
    files, total = len(created), sum(f["bytes"] for f in created)

    bucket = cluster.storage_url.removeprefix("s3://").split("/", 1)[0]
    deadline = time.monotonic() + 10
    while True:  # a refused upload's bytes are removed as it fails; allow a moment
        usage, records = anyio.run(database, cluster.table_prefix)
        objects = sorted(name.removeprefix("shared/") for name in moto.object_names(bucket, ""))
        settled = [state for state, _, _ in records] == ["active"] * files and len(objects) == files
        if settled or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert usage == [("tenant", files, total)]
    assert sorted(key for _, key, _ in records) == objects  # no stray object, no missing one
    assert [state for state, _, _ in records] == ["active"] * files  # nothing left pending
    assert sum(size for _, _, size in records) == total
    assert moto.upload_names(bucket, "") == []
    return created


def test_the_file_quota_holds_under_32_concurrent_uploads_through_two_replicas(
    cluster: Cluster, moto: S3Server
) -> None:
    with cluster.two_replicas("--max-files", str(MAX_FILES)) as urls:
        responses = upload_all(urls, [1024] * UPLOADS)
        created = check_outcome(cluster, moto, urls, responses)
    assert len(created) == MAX_FILES
    assert {f["bytes"] for f in created} == {1024}


def test_the_byte_quota_holds_under_32_concurrent_uploads_through_two_replicas(
    cluster: Cluster, moto: S3Server
) -> None:
    size = 200 * 1024  # five fit in the byte quota; the file quota would allow ten
    flags = ("--max-files", str(MAX_FILES), "--max-bytes", str(MAX_BYTES))
    with cluster.two_replicas(*flags) as urls:
        responses = upload_all(urls, [size] * UPLOADS)
        created = check_outcome(cluster, moto, urls, responses)
        fit = MAX_BYTES // size
        assert fit < MAX_FILES
        assert len(created) <= fit
        assert sum(f["bytes"] for f in created) <= MAX_BYTES
        # In the race an upload may be refused although it would have fitted: bytes are
        # reserved as they stream in, so uploads still in flight hold part of the quota. Once
        # the race is over, exactly as many more fit as were missing, one at a time.
        for _ in range(fit - len(created)):
            (added,) = upload_all(urls, [size])
            assert added.status_code == 200, added.text
            created.append(added.json())
        (over,) = upload_all(urls, [size])
        assert over.status_code == 400, over.text
        assert over.json()["error"]["code"] == "quota_exceeded"
        assert len(created) == len(listed(urls[0])) == fit
        # Then the byte quota is exact: one byte more than is left is refused (even from two
        # replicas at once), and exactly what is left is accepted.
        left = MAX_BYTES - sum(f["bytes"] for f in created)
        assert left == MAX_BYTES - fit * size
        refused = upload_all(urls, [left + 1] * 2)
        assert [r.status_code for r in refused] == [400, 400]
        assert {r.json()["error"]["code"] for r in refused} == {"quota_exceeded"}
        assert upload_all(urls, [left])[0].status_code == 200
        assert sum(f["bytes"] for f in listed(urls[1])) == MAX_BYTES
    usage, records = anyio.run(database, cluster.table_prefix)
    assert usage == [("tenant", len(created) + 1, MAX_BYTES)]
    assert [state for state, _, _ in records] == ["active"] * (len(created) + 1)

"""`openai-files serve` with encryption at rest and a hot tier, over S3 and PostgreSQL: two
replicas with the same master key read each other's files; `storage rewrap` rotates the key."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import openai

from ..clusters import KEY, Cluster
from ..s3_servers import S3Server
from ..support import server_process, stored_files

MARKER = b"PLAINTEXT-MARKER-5d1e"


def key_file(path: Path, *names: str) -> Path:
    lines = [f"{n}:{base64.b64encode((n.encode() * 32)[:32]).decode()}\n" for n in names]
    path.write_text("".join(lines))
    return path


def sdk(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)


def bucket_bodies(moto: S3Server, storage_url: str) -> dict[str, bytes]:
    bucket = urlsplit(storage_url).netloc
    names = moto.object_names(bucket, "")
    return {n: moto.client.get_object(Bucket=bucket, Key=n)["Body"].read() for n in names}


def test_replicas_share_encrypted_files_and_a_rotated_key(
    cluster: Cluster, moto: S3Server, tmp_path: Path
) -> None:
    keys = key_file(tmp_path / "keys", "k1")
    common = [*cluster.args(), "--encryption-key-file", str(keys)]
    data = (MARKER * (6 * 1024 * 1024 // len(MARKER) + 1))[: 6 * 1024 * 1024 + 3]
    with (
        server_process(
            cluster.workdir, *common, "--cache-dir", str(tmp_path / "a"), env=cluster.env
        ) as a,
        server_process(
            cluster.workdir,
            *common,
            "--cache-dir",
            str(tmp_path / "b"),
            "--cache-size",
            "100000000",
            env=cluster.env,
        ) as b,
    ):
        created = sdk(a.url).files.create(file=("big.bin", data), purpose="assistants")
        assert created.bytes == len(data)
        for replica in (a, a, b, b):  # the second read of each comes from its hot tier
            assert sdk(replica.url).files.content(created.id).content == data
        headers = {"Authorization": f"Bearer {KEY}", "Range": "bytes=262140-262150"}
        ranged = httpx.get(f"{b.url}/v1/files/{created.id}/content", headers=headers)
        assert ranged.status_code == 206
        assert ranged.content == data[262140:262151]
        last = httpx.get(
            f"{a.url}/v1/files/{created.id}/content",
            headers={**headers, "Range": f"bytes={len(data) - 1}-"},
        )
        assert last.content == data[-1:]
    bodies = bucket_bodies(moto, cluster.storage_url)
    assert len(bodies) == 2  # the content and its header
    assert not any(MARKER in body for body in bodies.values())
    for cache in ("a", "b"):
        cached = stored_files(tmp_path / cache)
        assert len(cached) == 2
        assert not any(MARKER in (tmp_path / cache / name).read_bytes() for name in cached)

    rotated = key_file(tmp_path / "rotated", "k2", "k1")
    command = [sys.executable, "-m", "openai_files.cli", "storage", "rewrap"]
    command += ["--storage", cluster.storage_url, "--encryption-key-file", str(rotated)]
    env = {**os.environ, **cluster.env}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (
        0,
        "rewrapped 1, already under 'k2' 0, failed 0",
    )
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
    assert again.stdout.strip() == "rewrapped 0, already under 'k2' 1, failed 0"
    after = bucket_bodies(moto, cluster.storage_url)
    content = [name for name in bodies if not name.endswith(".key")]
    assert [after[n] for n in content] == [bodies[n] for n in content]  # content untouched

    only_new = key_file(tmp_path / "new", "k2")
    args = [*cluster.args(), "--encryption-key-file", str(only_new)]
    with server_process(cluster.workdir, *args, env=cluster.env) as c:
        assert sdk(c.url).files.content(created.id).content == data
    only_old_gone = key_file(tmp_path / "other", "k3")
    args = [*cluster.args(), "--encryption-key-file", str(only_old_gone)]
    with server_process(cluster.workdir, *args, env=cluster.env) as d:
        response = httpx.get(
            f"{d.url}/v1/files/{created.id}/content", headers={"Authorization": f"Bearer {KEY}"}
        )
        assert response.status_code == 500
        assert response.json()["error"]["code"] == "blob_unreadable"
        assert MARKER not in response.content
    assert "master key 'k2', which is not in the keyring" in d.output()

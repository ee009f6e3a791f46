"""The S3 baseline: obstore putting or getting one object straight to or from an S3 server.

``s3_transfer.py`` runs this in a process of its own for every transfer, with the credentials in
the ``AWS_*`` environment variables, and reads the one JSON line it prints: the seconds the
transfer took (timed here, from the first request to the last byte; starting Python and
importing obstore are not counted), its bytes, and the CPU seconds of this process meanwhile
(all threads, obstore's included)::

    python s3_baseline.py put ENDPOINT BUCKET NAME FILE --part-size BYTES --parts-in-flight N
    python s3_baseline.py get ENDPOINT BUCKET NAME

- ``put``: ``obstore.put_async`` of the bytes of FILE, handed over as an async iterator of
  1 MiB blocks read from disk (from the page cache, where the caller put them), as a multipart
  upload of ``--part-size`` parts, ``--parts-in-flight`` of them sent at once: what
  `S3Storage` does, minus the HTTP server, the multipart parsing and the SHA-256 in front of it.
- ``get``: ``obstore.get_async`` and its stream consumed, every chunk discarded, with obstore's
  default chunk size (10 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import obstore
from obstore.store import S3Store

BLOCK = 1024 * 1024


async def put(store: S3Store, name: str, source: Path, part_size: int, in_flight: int) -> int:
    sent = 0

    async def blocks() -> AsyncIterator[bytes]:
        nonlocal sent
        with source.open("rb") as handle:
            while block := handle.read(BLOCK):
                sent += len(block)
                yield block

    await obstore.put_async(store, name, blocks(), chunk_size=part_size, max_concurrency=in_flight)
    return sent


async def get(store: S3Store, name: str) -> int:
    size = 0
    result = await obstore.get_async(store, name)
    async for chunk in result.stream():
        size += len(chunk)
    return size


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("operation", choices=("put", "get"))
    parser.add_argument("endpoint")
    parser.add_argument("bucket")
    parser.add_argument("name")
    parser.add_argument("file", nargs="?", type=Path, help="what to put")
    parser.add_argument("--part-size", type=int, default=8 * 1024 * 1024)
    parser.add_argument("--parts-in-flight", type=int, default=2)
    options = parser.parse_args(argv)
    if options.operation == "put" and options.file is None:
        parser.error("put needs a FILE")
    store = S3Store(
        options.bucket,
        config={"endpoint": options.endpoint},
        client_options={"allow_http": True},
    )
    if options.operation == "put":
        transfer = put(
            store, options.name, options.file, options.part_size, options.parts_in_flight
        )
    else:
        transfer = get(store, options.name)
    cpu, started = time.process_time(), time.perf_counter()
    size = asyncio.run(transfer)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"seconds": seconds, "bytes": size, "cpu_seconds": cpu}), flush=True)
    return 0


if __name__ == "__main__":
    status = main()
    # obstore's runtime threads can abort the interpreter's shutdown (SIGABRT, about one exit
    # in four here); the work is done and reported, so leave without it.
    os._exit(status)

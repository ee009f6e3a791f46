"""The baselines our endpoints are measured against: plain Starlette endpoints, no library.

Run under uvicorn exactly as ``openai-files serve`` runs (same defaults) with the directory in
``BENCH_BASELINE_DIR``: uploads are written there, downloads are served from there.

- ``POST /bare``: the raw body from ``request.stream()`` written to a file, with no parsing and
  no hashing; the upper bound for receiving bytes through Starlette and uvicorn.
- ``POST /bare-checked``: ``/bare`` plus the work ours promises beyond it: the SHA-256 of every
  byte, and the file and its directory flushed to the device (``fsync``) before the answer. On
  the event loop, one step after another, as simply as it can be written: the cost of that
  work without ours' parsing, overlap or flushes along the way.
- ``POST /naive``: ``await request.form()`` (Starlette spools the file part to a temporary
  file), then the ``UploadFile`` copied to its destination: the usual first implementation.
- ``GET /file-response/{name}``: Starlette's ``FileResponse``.
- ``GET /thread-blocks/{name}``: 1 MiB blocks read in a worker thread and streamed.
- ``GET /hello``: a plain-text hello world, the cost of a request through the server alone.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import Route

BLOCK_SIZE = 1024 * 1024
ROOT = Path(os.environ.get("BENCH_BASELINE_DIR", ".")).resolve()


def _new_path() -> Path:
    return ROOT / f"upload-{secrets.token_hex(8)}"


def _served(request: Request) -> Path:
    """The file named in the path, which must live directly under the root."""
    return ROOT / Path(request.path_params["name"]).name


async def bare_upload(request: Request) -> Response:
    path = _new_path()
    size = 0
    # Blocking writes on the event loop: a write into the page cache takes microseconds, and
    # skipping the hop to a worker thread makes this the fastest way to land the bytes.
    with path.open("wb") as handle:
        async for chunk in request.stream():
            handle.write(chunk)
            size += len(chunk)
    return JSONResponse({"path": path.name, "bytes": size})


async def bare_checked_upload(request: Request) -> Response:
    path = _new_path()
    size = 0
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        async for chunk in request.stream():
            digest.update(chunk)
            handle.write(chunk)
            size += len(chunk)
        handle.flush()
        os.fsync(handle.fileno())
    directory = os.open(ROOT, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return JSONResponse({"path": path.name, "bytes": size, "sha256": digest.hexdigest()})


async def naive_upload(request: Request) -> Response:
    async with request.form() as form:
        upload = form["file"]
        if not isinstance(upload, UploadFile):
            return JSONResponse({"error": "no file part"}, status_code=400)
        path = _new_path()
        size = await anyio.to_thread.run_sync(_copy, upload.file, path)
    return JSONResponse({"path": path.name, "bytes": size})


def _copy(source: BinaryIO, path: Path) -> int:
    source.seek(0)
    size = 0
    with path.open("wb") as target:
        while block := source.read(BLOCK_SIZE):
            target.write(block)
            size += len(block)
    return size


async def file_response(request: Request) -> Response:
    return FileResponse(_served(request), media_type="application/octet-stream")


async def thread_blocks(request: Request) -> Response:
    path = _served(request)
    size = path.stat().st_size
    return StreamingResponse(
        _read_blocks(path),
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )


async def _read_blocks(path: Path) -> AsyncIterator[bytes]:
    handle = await anyio.to_thread.run_sync(path.open, "rb")
    try:
        while block := await anyio.to_thread.run_sync(handle.read, BLOCK_SIZE):
            yield block
    finally:
        handle.close()


async def hello(request: Request) -> Response:
    return PlainTextResponse("Hello, world!")


app = Starlette(
    routes=[
        Route("/hello", hello, methods=["GET"]),
        Route("/bare", bare_upload, methods=["POST"]),
        Route("/bare-checked", bare_checked_upload, methods=["POST"]),
        Route("/naive", naive_upload, methods=["POST"]),
        Route("/file-response/{name}", file_response, methods=["GET"]),
        Route("/thread-blocks/{name}", thread_blocks, methods=["GET"]),
    ]
)

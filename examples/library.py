"""Use the files service from Python, with no HTTP at all (a batch worker, a script).

    python examples/library.py

Creates a batch input file from a stream of lines, reads it back line by line as a stream,
writes an output file, lists both and deletes them.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from openai_files import FilesService, LocalStorage, SQLMetadataStore


async def requests(count: int) -> AsyncIterator[bytes]:
    for index in range(count):
        line = {
            "custom_id": f"request-{index}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
        }
        yield (json.dumps(line) + "\n").encode()


async def lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Split a byte stream into lines without reading it whole."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        *complete, pending = pending.split(b"\n")
        for line in complete:
            yield line
    if pending:
        yield pending


async def main(root: Path) -> None:
    # --8<-- [start:service]
    storage = LocalStorage(root / "files")
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}")
    async with FilesService(storage, metadata) as files:
        batch = await files.create(
            "worker", file=requests(1000), filename="requests.jsonl", purpose="batch"
        )
        print(f"created {batch.id}: {batch.bytes} bytes, expires at {batch.expires_at}")

        async def answers() -> AsyncIterator[bytes]:
            content = await files.content("worker", batch.id)  # optional start=, end=
            async for line in lines(content.chunks):
                request = json.loads(line)
                yield json.dumps({"custom_id": request["custom_id"], "ok": True}).encode() + b"\n"

        output = await files.create(
            "worker", file=answers(), filename="results.jsonl", purpose="user_data"
        )
        page = await files.list("worker", order="asc")
        print("files:", [(f.id, f.filename, f.bytes) for f in page.data])
        for file in page.data:
            await files.delete("worker", file.id)
        print(f"wrote {output.id} ({output.bytes} bytes); deleted both")
    # --8<-- [end:service]


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))

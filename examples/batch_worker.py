"""A batch worker: reads a batch input file as a stream, answers each request, and writes the
results as a `batch_output` file, holding the input so that nobody deletes it meanwhile.

    python examples/batch_worker.py

It uses the library directly, with no HTTP: `FilesService.holding` keeps the input file from
being deleted (409) or expiring while the batch runs, and `create(..., system=True)` writes a
file with a purpose that clients cannot upload.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
from library import lines, requests  # the library example's stream helpers

from openai_files import FilesService, LocalStorage, SQLMetadataStore


# --8<-- [start:holding]
async def run_batch(files: FilesService, owner: str, input_file_id: str, batch_id: str) -> str:
    """Answer every request of the input file; return the id of the output file."""
    # Until the block ends, the input cannot be deleted (409) and does not expire.
    async with files.holding(owner, input_file_id, holder=batch_id):
        content = await files.content(owner, input_file_id)

        async def results() -> AsyncIterator[bytes]:
            async for line in lines(content.chunks):
                request = json.loads(line)
                answer = {
                    "id": f"{batch_id}-{request['custom_id']}",
                    "custom_id": request["custom_id"],
                    "response": {"status_code": 200, "body": {"echo": request["body"]}},
                    "error": None,
                }
                yield json.dumps(answer).encode() + b"\n"

        output = await files.create(
            owner,
            file=results(),
            filename=f"{batch_id}_output.jsonl",
            purpose="batch_output",
            system=True,
        )
    return output.id
    # --8<-- [end:holding]


async def main(root: Path) -> None:
    storage = LocalStorage(root / "files")
    metadata = SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}")
    async with FilesService(storage, metadata) as files:
        batch_input = await files.create(
            "team-a", file=requests(500), filename="requests.jsonl", purpose="batch"
        )
        output_id = await run_batch(files, "team-a", batch_input.id, batch_id="batch_1")
        output = await files.retrieve("team-a", output_id)
        print(f"input {batch_input.id} ({batch_input.bytes} bytes, {batch_input.status})")
        print(f"output {output.id}: {output.filename}, {output.bytes} bytes, {output.purpose}")
        await files.delete("team-a", batch_input.id)  # released: deleting works again
        print("input deleted after the batch released it")


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory:
        anyio.run(main, Path(directory))

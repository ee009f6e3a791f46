"""A large file through the Uploads API with the official `openai` SDK, in parts.

    openai-files serve                     # or `make serve`, in another terminal
    python examples/uploads_client.py

Writes a `train.jsonl` of a few MiB in a scratch directory and uploads it with
`client.uploads.upload_file_chunked`, which creates an upload, sends the file in parts and
completes it with the parts in order. The parts are 1 MiB here so that a small file takes
several; the SDK's default is 64 MiB, the largest part the server accepts. Then it downloads
the file and compares it with what it sent.

Server and key come from OPENAI_BASE_URL and OPENAI_API_KEY, as in `quickstart.py`.
"""

from __future__ import annotations

# --8<-- [start:imports]
import contextlib
import json
import os
import tempfile
from pathlib import Path

from openai import OpenAI

# --8<-- [end:imports]

MiB = 1024 * 1024


def write_training_file(path: Path, size: int) -> None:
    """Chat examples, one JSON object a line, until the file holds at least ``size`` bytes."""
    with path.open("w") as out:
        index = 0
        while out.tell() < size:
            example = {
                "messages": [
                    {"role": "user", "content": f"What is {index} + {index}?"},
                    {"role": "assistant", "content": str(2 * index)},
                ]
            }
            out.write(json.dumps(example) + "\n")
            index += 1


def main() -> None:
    write_training_file(Path("train.jsonl"), 3 * MiB)
    client = OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "sk-team-a"),
    )
    # --8<-- [start:upload]
    upload = client.uploads.upload_file_chunked(
        file=Path("train.jsonl"),
        mime_type="application/jsonl",
        purpose="fine-tune",
        part_size=1 * MiB,  # the default is 64 MiB
    )
    print(upload.status, upload.file.id if upload.file else None)
    # --8<-- [end:upload]
    if upload.file is None:
        raise SystemExit(f"the upload is {upload.status}")
    sent = Path("train.jsonl").read_bytes()
    received = client.files.content(upload.file.id).content
    print(
        f"{upload.file.filename}: {upload.file.bytes} bytes, purpose {upload.file.purpose}, "
        f"{'intact' if received == sent else 'CHANGED'}"
    )
    if received != sent:
        raise SystemExit(1)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory, contextlib.chdir(directory):
        main()

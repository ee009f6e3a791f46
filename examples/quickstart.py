"""The quickstart with the official `openai` SDK: upload a batch file, list, download, delete.

    openai-files serve                     # or `make serve`, in another terminal
    python examples/quickstart.py

It talks to http://127.0.0.1:8000/v1 unless OPENAI_BASE_URL names another server, with the key
in OPENAI_API_KEY (any key does while the server has none configured). It works in a scratch
directory, where it writes the `requests.jsonl` it uploads.
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


def write_requests(path: Path, count: int = 3) -> None:
    """A small batch input file: one chat completion request a line."""
    with path.open("w") as out:
        for index in range(count):
            request = {
                "custom_id": f"request-{index}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
            }
            out.write(json.dumps(request) + "\n")


def main() -> None:
    write_requests(Path("requests.jsonl"))
    # --8<-- [start:sdk]
    client = OpenAI(
        base_url=os.environ.get("OPENAI_BASE_URL", "http://127.0.0.1:8000/v1"),
        api_key=os.environ.get("OPENAI_API_KEY", "sk-team-a"),
    )

    file = client.files.create(
        file=Path("requests.jsonl"),
        purpose="batch",
        expires_after={"anchor": "created_at", "seconds": 86400},
    )
    for f in client.files.list(limit=100):  # pages automatically
        print(f.id, f.filename, f.bytes)
    client.files.content(file.id).write_to_file("copy.jsonl")
    client.files.delete(file.id)
    # --8<-- [end:sdk]
    same = Path("copy.jsonl").read_bytes() == Path("requests.jsonl").read_bytes()
    print(f"downloaded {file.id} {'intact' if same else 'CHANGED'}; deleted it")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as directory, contextlib.chdir(directory):
        main()

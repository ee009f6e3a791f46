"""Seed 003 (xAI): documents for conversations, per account.

    python examples/policies/xai.py

serves http://127.0.0.1:8000/v1/files, with files and records under ./data/xai.

Reproduced:

- purpose ``assistants`` and OpenAI's other upload purposes;
- PDF, plain text, Markdown, Word, CSV and JSON files, recognised by extension or by the
  media type the client declares (anything else: 400 ``unsupported_file_type``); ``batch`` and
  ``fine-tune`` keep OpenAI's ``.jsonl`` rule, since none of those types is JSONL;
- 100 MB a file (413 ``file_too_large``); 100,000 files and 100 GB an account (400
  ``quota_exceeded``);
- ``GET /v1/files`` pages 20 files by default, with ``order`` and ``after``;
- files are kept until deleted (seed 003's file object has no ``expires_at``);
- the platform has no Uploads API, so the app does not serve one
  (``create_app(uploads_api=False)``); should you serve it, ``max_upload_size=None`` holds
  the files it makes to the same limit.

Not reproduced:

- A file matches by extension *or* declared media type, so a ``.exe`` declared as
  ``application/pdf`` is accepted (``FileTypes(..., match="both")`` would refuse it, and a
  ``notes.md`` sent as ``application/octet-stream`` with it); the content is never inspected.
- An unknown file's error has type ``invalid_request_error`` (OpenAI's), not ``not_found_error``.
"""

from __future__ import annotations

from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from openai_files import (
    FileTypes,
    Policy,
    Quota,
    api_key_auth,
    create_app,
    open_embedded,
)
from openai_files.policy import OPENAI_UPLOAD_PURPOSES

# --8<-- [start:policy]
MB = 1024 * 1024
GB = 1024 * MB
JSONL = FileTypes(extensions=(".jsonl",))
DOCUMENTS = FileTypes(
    extensions=(".pdf", ".txt", ".md", ".docx", ".csv", ".json"),
    media_types=(
        "application/pdf",
        "text/plain",
        "text/markdown",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "text/csv",
        "application/json",
    ),
)

POLICY = Policy(
    upload_purposes=OPENAI_UPLOAD_PURPOSES,
    max_file_size=100 * MB,
    max_upload_size=None,  # as max_file_size, should the Uploads API be served
    file_types={
        **{purpose: DOCUMENTS for purpose in OPENAI_UPLOAD_PURPOSES},
        "batch": JSONL,
        "fine-tune": JSONL,
    },
    default_expiry={},
    quota=Quota(max_files=100_000, max_bytes=100 * GB),  # per account
    list_limit_default=20,
)
# --8<-- [end:policy]

API_KEYS = {"xai-local": "account-local"}  # API key -> account


def build_app(
    data_dir: Path, policy: Policy = POLICY, *, sweep_interval: float | None = 60
) -> Starlette:
    service = open_embedded(data_dir, policy=policy)
    return create_app(
        service,
        auth=api_key_auth(API_KEYS),
        sweep_interval=sweep_interval,
        close_service=True,
        uploads_api=False,
    )


if __name__ == "__main__":
    uvicorn.run(build_app(Path("data") / "xai"), host="127.0.0.1", port=8000)

"""Seed 004 (OpenAI): the defaults, spelled out. ``Policy()`` is the same policy.

    python examples/policies/openai.py

serves http://127.0.0.1:8000/v1/files, with files and records under ./data/openai.

Reproduced:

- the six upload purposes; ``batch_output``, ``assistants_output`` and ``fine-tune-results``
  for files the service itself creates;
- 512 MB a file; ``.jsonl`` for ``batch`` and ``fine-tune``, checked line by line on upload
  (batch: at most 50,000 requests with unique ``custom_id``), a bad file refused with 400;
- ``batch`` files expire after 30 days, other files never, unless the client sends
  ``expires_after`` (1 hour to 30 days);
- ``GET /v1/files``: ``limit`` 1..10,000 (default 10,000), ``order``, ``after``; hard delete;
  downloads as ``application/octet-stream``; one owner per project, by API key;
- the Uploads API for larger files: up to 8 GB in parts of up to 64 MB, an upload expiring
  after an hour.

Not reproduced by the defaults (each is one field away):

- OpenAI's cap on batch input files (100 MB in seed 004's files reference, 200 MB in its
  current batch limits): ``max_file_size_by_purpose={"batch": 200 * MB}``.
- Its storage limit per organization or project: ``quota=Quota(max_bytes=...)``.
"""

from __future__ import annotations

from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from openai_files import (
    Policy,
    api_key_auth,
    create_app,
    open_embedded,
)
from openai_files.policy import (
    DAY,
    OPENAI_SYSTEM_PURPOSES,
    OPENAI_UPLOAD_PURPOSES,
    FileTypes,
)
from openai_files.validation import BATCH_RULES, FINE_TUNE_RULES

# --8<-- [start:policy]
MB = 1024 * 1024
GB = 1024 * MB
JSONL = FileTypes(extensions=(".jsonl",))

POLICY = Policy(
    upload_purposes=OPENAI_UPLOAD_PURPOSES,
    system_purposes=OPENAI_SYSTEM_PURPOSES,
    max_file_size=512 * MB,
    max_file_size_by_purpose={},
    max_filename_length=1024,
    file_types={"batch": JSONL, "fine-tune": JSONL},
    validation="strict",
    jsonl_rules={"batch": BATCH_RULES, "fine-tune": FINE_TUNE_RULES},
    default_expiry={"batch": 30 * DAY},
    quota=None,
    soft_delete=False,
    keep_media_type=False,
    download_media_types={},
    file_too_large_status=413,  # deprecated: create_app(file_too_large_status=...) now
    max_upload_size=8 * GB,
    max_part_size=64 * MB,
    upload_ttl=3600,
    max_upload_parts=10_000,
    max_open_uploads=100,
    list_limit_default=10_000,
    list_limit_max=10_000,
    list_offset=False,
    list_offset_max=1_000,
    file_id_format="openai",
)
# --8<-- [end:policy]

API_KEYS = {"sk-local": "project-local"}  # API key -> project


def build_app(
    data_dir: Path, policy: Policy = POLICY, *, sweep_interval: float | None = 60
) -> Starlette:
    service = open_embedded(data_dir, policy=policy)
    return create_app(
        service,
        auth=api_key_auth(API_KEYS),
        sweep_interval=sweep_interval,
        close_service=True,
    )


if __name__ == "__main__":
    uvicorn.run(build_app(Path("data") / "openai"), host="127.0.0.1", port=8000)

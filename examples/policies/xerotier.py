"""Seed 000 (Xerotier): project-scoped files for a batch platform.

    python examples/policies/xerotier.py

serves http://127.0.0.1:8000/v1/files, with files and records under ./data/xerotier.

Reproduced:

- purposes ``batch``, ``assistants``, ``vision``, ``user_data``, ``fine-tune`` (no ``evals``);
- 500 MB a file, 20 MB for ``vision``; JSONL for ``batch`` and ``fine-tune``, images for
  ``vision``;
- every file expires 30 days after creation, whatever its purpose;
- a batch file is stored ``uploaded`` and validated when a batch first uses it
  (``validation="deferred"``; `start_batch` calls `FilesService.validate`): one that is not
  valid JSONL then reads ``status: "error"`` with the first bad line in ``status_details``;
- a file cannot be deleted (409 ``conflict``) while a batch holds it: `start_batch` and
  `finish_batch` show the batch worker's side;
- one owner per project, by API key; 429 with ``Retry-After`` from a per-project rate limiter
  (Xerotier publishes no rates: the numbers here are examples);
- JSONL files download as ``application/jsonl`` (``download_media_types``);
- a file over the limit gets 400 ``file_too_large``
  (``create_app(file_too_large_status=400)``; OpenAI answers 413);
- the platform has no Uploads API, so the app does not serve one
  (``create_app(uploads_api=False)``); should you serve it, ``max_upload_size=None`` holds
  the files it makes to the same limit.

Not reproduced:

- An unknown file is 404 ``file_not_found`` (Xerotier: code ``not_found``).
- Deleted files are removed; Xerotier's terminal ``deleted`` status would need
  ``soft_delete=True``, which its delete description ("deletes the file from storage") argues
  against.
"""

from __future__ import annotations

from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from openai_files import (
    FileObject,
    FilesService,
    FileTypes,
    Policy,
    api_key_auth,
    create_app,
    open_embedded,
)
from openai_files.http import TokenBucket
from openai_files.policy import DAY, OPENAI_SYSTEM_PURPOSES
from openai_files.validation import BATCH_RULES

# --8<-- [start:policy]
MB = 1024 * 1024
PURPOSES = ("batch", "assistants", "vision", "user_data", "fine-tune")
JSONL = FileTypes(extensions=(".jsonl",))
IMAGES = FileTypes(
    extensions=(".png", ".jpg", ".jpeg", ".gif", ".webp"),
    media_types=("image/png", "image/jpeg", "image/gif", "image/webp"),
)

POLICY = Policy(
    upload_purposes=PURPOSES,
    max_file_size=500 * MB,
    max_upload_size=None,  # as max_file_size, should the Uploads API be served
    max_file_size_by_purpose={"vision": 20 * MB},
    file_types={"batch": JSONL, "fine-tune": JSONL, "vision": IMAGES},
    validation="deferred",  # checked when a batch first uses the file: see start_batch
    # Only batch files are read by Xerotier; fine-tune files are stored, never parsed.
    jsonl_rules={"batch": BATCH_RULES},
    default_expiry={purpose: 30 * DAY for purpose in PURPOSES + OPENAI_SYSTEM_PURPOSES},
    download_media_types={".jsonl": "application/jsonl"},
)
FILE_TOO_LARGE_STATUS = 400  # an HTTP choice: create_app(file_too_large_status=...)
# --8<-- [end:policy]

API_KEYS = {"xero_local": "proj_local"}  # API key -> project


def build_app(
    data_dir: Path, policy: Policy = POLICY, *, sweep_interval: float | None = 60
) -> Starlette:
    service = open_embedded(data_dir, policy=policy)
    app = create_app(
        service,
        auth=api_key_auth(API_KEYS),
        rate_limiter=TokenBucket(rate=10, burst=50),
        sweep_interval=sweep_interval,
        close_service=True,
        uploads_api=False,
        file_too_large_status=FILE_TOO_LARGE_STATUS,
    )
    app.state.service = service  # for the host's batch worker: see start_batch
    return app


# A batch starts and completes in different requests, so the worker holds the input file
# explicitly rather than within one `service.holding(...)` block.
async def start_batch(
    service: FilesService, project: str, file_id: str, batch_id: str
) -> FileObject:
    """Hold the batch's input file (until `finish_batch`, deleting it answers 409 and it does
    not expire) and validate it on this first use: a file whose status is then ``error``
    cannot run, and ``status_details`` says why."""
    await service.hold(project, file_id, batch_id)
    return await service.validate(project, file_id)


async def finish_batch(service: FilesService, project: str, file_id: str, batch_id: str) -> None:
    await service.release(project, file_id, batch_id)


if __name__ == "__main__":
    uvicorn.run(build_app(Path("data") / "xerotier"), host="127.0.0.1", port=8000)

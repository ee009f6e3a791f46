"""Seed 002 (Aqueduct): a gateway whose files are batch input, per user.

    python examples/policies/aqueduct.py

serves http://127.0.0.1:8000/v1/files, with files and records under ./data/aqueduct.

Reproduced:

- purpose ``batch`` only (anything else: 400 naming the valid purposes), and ``.jsonl`` files
  only (400 ``unsupported_file_type``), checked as batch requests (400 naming the bad line);
- files expire 7 days after creation unless the client asks otherwise;
- files belong to users (one API key each) and each user has a quota of files and bytes; the
  size limit and the quota are deployment settings in Aqueduct, so the numbers are examples;
- routes under both ``/files`` and ``/v1/files`` (every app does that);
- a file over the size limit gets 400 ``file_too_large``, as in Aqueduct
  (``create_app(file_too_large_status=400)``; OpenAI answers 413);
- the platform has no Uploads API, so the app does not serve one
  (``create_app(uploads_api=False)``); should you serve it, ``max_upload_size=None`` holds
  the files it makes to the same limit.
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
from openai_files.policy import DAY
from openai_files.validation import BATCH_RULES

# --8<-- [start:policy]
MB = 1024 * 1024
GB = 1024 * MB

POLICY = Policy(
    upload_purposes=("batch",),
    system_purposes=("batch_output",),
    max_file_size=100 * MB,  # a deployment setting in Aqueduct
    max_upload_size=None,  # as max_file_size, should the Uploads API be served
    file_types={"batch": FileTypes(extensions=(".jsonl",))},
    jsonl_rules={"batch": BATCH_RULES},
    default_expiry={"batch": 7 * DAY, "batch_output": 7 * DAY},
    quota=Quota(max_files=1000, max_bytes=10 * GB),  # per user
)
FILE_TOO_LARGE_STATUS = 400  # an HTTP choice: create_app(file_too_large_status=...)
# --8<-- [end:policy]

API_KEYS = {"sk-alice": "alice", "sk-bob": "bob"}  # API key -> user


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
        file_too_large_status=FILE_TOO_LARGE_STATUS,
    )


if __name__ == "__main__":
    uvicorn.run(build_app(Path("data") / "aqueduct"), host="127.0.0.1", port=8000)

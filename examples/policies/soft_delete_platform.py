"""Seed 001: a training and evaluation platform with soft delete.

    python examples/policies/soft_delete_platform.py

serves http://127.0.0.1:8000/v1/files, with files and records under ./data/soft_delete_platform.

Reproduced:

- any purpose (``upload_purposes=None``: any name of up to 64 letters, digits, ``_``, ``-``,
  ``.`` and ``:``) and any type of file (no purpose restricts file types);
- ``status`` and ``status_details``: a batch or fine-tune file that is not valid JSONL is
  stored with ``status: "error"`` and the reason (``validation="lenient"``);
- soft delete: a deleted file's record stays, with ``status: "deleted"``; it is gone from
  lists and its content answers 404;
- ``GET /v1/files`` pages 100 files by default and at most 1000 (``limit`` 1..1000);
- files do not expire (seed 001's file object has no ``expires_at``); one owner per project;
- ``offset`` pagination and the ``total`` count (``list_offset=True``), offsets up to 1,000
  (``list_offset_max``, the default: deeper ones cost more than a page should, and are
  refused with a 400 that says to page on with ``after``); ``after=<file id>`` cursors work
  as well, and stay correct while files are added and deleted;
- UUID ids (``file_id_format="uuid7"``), which carry the creation time as ``file-`` ids do;
- the platform has no Uploads API, so the app does not serve one
  (``create_app(uploads_api=False)``).
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

# --8<-- [start:policy]
POLICY = Policy(
    upload_purposes=None,  # any purpose: letters, digits, _ - . : (up to 64)
    file_types={},  # any file for any purpose
    validation="lenient",
    default_expiry={},  # files are kept until deleted
    soft_delete=True,
    list_limit_default=100,
    list_limit_max=1000,
    list_offset=True,  # offset=N pages, and every page carries total
    list_offset_max=1_000,  # deeper offsets: 400, page on with after=<last_id>
    file_id_format="uuid7",  # UUIDs, which still carry the creation time for cursors
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
        uploads_api=False,
    )


if __name__ == "__main__":
    uvicorn.run(build_app(Path("data") / "soft_delete_platform"), host="127.0.0.1", port=8000)

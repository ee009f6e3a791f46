"""Run the Files API on its own, with files on local disk and records in SQLite.

    python examples/standalone.py            # http://127.0.0.1:8000/v1/files

The same server as `openai-files serve`, written out so you can change what you need.
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn

from openai_files import FilesService, LocalStorage, SQLMetadataStore, api_key_auth, create_app

DATA = Path(os.environ.get("OPENAI_FILES_DATA_DIR", "./data"))
DATA.mkdir(parents=True, exist_ok=True)

service = FilesService(
    LocalStorage(DATA / "files"),
    SQLMetadataStore(f"sqlite+aiosqlite:///{DATA / 'files.db'}"),
)
# One key per owner; clients send it as `Authorization: Bearer sk-local`.
app = create_app(service, auth=api_key_auth({"sk-local": "local"}), close_service=True)

if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("OPENAI_FILES_PORT", "8000")))

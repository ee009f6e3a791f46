"""A deployment's rules in one `Policy`: batch files only, kept for a week, 1000 per owner.

    python examples/batch_only_policy.py      # http://127.0.0.1:8000/v1/files

Any purpose but `batch` is refused (400, `param: "purpose"`), so is a file that is not
`.jsonl` (400 `unsupported_file_type`) or not a valid batch input file (400 `invalid_file`).
A batch file expires seven days after it was uploaded unless the client sends its own
`expires_after`, and an owner may store at most 1000 files. Every other rule is OpenAI's.
"""

from __future__ import annotations

import os
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

# --8<-- [start:policy]
from openai_files import (
    FilesService,
    FileTypes,
    LocalStorage,
    Policy,
    Quota,
    SQLMetadataStore,
    create_app,
)
from openai_files.policy import DAY

POLICY = Policy(
    upload_purposes=("batch",),
    file_types={"batch": FileTypes(extensions=(".jsonl",))},
    default_expiry={"batch": 7 * DAY},
    quota=Quota(max_files=1000),
)
# --8<-- [end:policy]


def build_app(data_dir: Path, policy: Policy = POLICY) -> Starlette:
    data_dir.mkdir(parents=True, exist_ok=True)
    # --8<-- [start:app]
    service = FilesService(
        LocalStorage(data_dir / "files"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{data_dir / 'files.db'}"),
        policy=policy,
    )
    app = create_app(service, close_service=True)
    # --8<-- [end:app]
    return app


if __name__ == "__main__":
    data_dir = Path(os.environ.get("OPENAI_FILES_DATA_DIR", "./data"))
    port = int(os.environ.get("OPENAI_FILES_PORT", "8000"))
    uvicorn.run(build_app(data_dir), host="127.0.0.1", port=port)

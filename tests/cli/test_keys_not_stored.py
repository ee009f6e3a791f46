"""API keys are never stored: ``openai-files serve --api-key KEY`` without an owner serves the
key as an owner derived from it, so after uploads (single-request and Uploads API) neither the
data directory, its database, nor the server's log holds the key."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx

from openai_files.cli._serve_options import owner_of_key

from ..support import server_process

KEY = "sk-live-7f3a9c01e4b2d8aa65c0ffee1234"
NAMED_KEY = "sk-named-0b1c2d3e4f5a6b7c8d9e"
CLI = (sys.executable, "-m", "openai_files.cli")


def test_the_derived_owner_is_stable_and_does_not_show_the_key() -> None:
    owner = owner_of_key(KEY)
    assert owner == owner_of_key(KEY)
    assert owner != owner_of_key(KEY + "x")
    assert owner.startswith("key-")
    assert len(owner) == len("key-") + 16
    assert KEY not in owner
    assert KEY[3:11] not in owner


def test_no_key_is_found_in_the_data_directory_after_uploads(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (tmp_path / "notes.txt").write_text("hello\n")
    args = ["--data-dir", str(data), "--api-key", KEY, "--api-key", f"{NAMED_KEY}=team-b"]
    with server_process(tmp_path, *args) as server:
        env = {**os.environ, "OPENAI_BASE_URL": server.url + "/v1", "OPENAI_API_KEY": KEY}
        for key in (KEY, NAMED_KEY):
            done = subprocess.run(
                [*CLI, "upload", "notes.txt", "--purpose", "assistants", "--api-key", key],
                capture_output=True,
                text=True,
                cwd=tmp_path,
                env=env,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
        headers = {"authorization": f"Bearer {KEY}"}
        upload = httpx.post(
            server.url + "/v1/uploads",
            headers=headers,
            json={
                "filename": "u.txt",
                "purpose": "assistants",
                "bytes": 2,
                "mime_type": "text/plain",
            },
        ).json()
        part = httpx.post(
            f"{server.url}/v1/uploads/{upload['id']}/parts", headers=headers, files={"data": b"hi"}
        ).json()
        completed = httpx.post(
            f"{server.url}/v1/uploads/{upload['id']}/complete",
            headers=headers,
            json={"part_ids": [part["id"]]},
        )
        assert completed.status_code == 200, completed.text
    log = server.output()
    assert f"is the owner {owner_of_key(KEY)}" in log
    assert KEY not in log
    assert NAMED_KEY not in log

    with sqlite3.connect(data / "files.db") as database:
        owners = {row[0] for row in database.execute("SELECT owner FROM openai_files_files")}
    assert owners == {owner_of_key(KEY), "team-b"}
    stored = [path for path in data.rglob("*") if path.is_file()]
    assert any(path.name == "files.db" for path in stored)
    for path in stored:
        content = path.read_bytes()
        for key in (KEY, NAMED_KEY):
            assert key.encode() not in content, f"{key} found in {path}"

"""`openai-files serve` checks its backends before it accepts traffic: a backend that cannot
serve stops it with status 1 and the cause, in the driver's own words, credentials masked."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ..databases import POSTGRES_URL
from ..s3_servers import ACCESS_KEY, REGION, SECRET_KEY, S3Server
from ..support import free_port, require_service


def serve(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``openai-files serve`` with ``args``; its exit status and output."""
    command = [sys.executable, "-m", "openai_files.cli", "serve", "--port", str(free_port())]
    done = subprocess.run(
        [*command, *args],
        cwd=tmp_path,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return done.returncode, done.stdout + done.stderr


def test_a_database_that_does_not_exist_stops_serve_naming_it(tmp_path: Path) -> None:
    require_service("PostgreSQL", "127.0.0.1", 5432)
    base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgres@", "postgres:hunter2@", 1)
    status, output = serve(tmp_path, "--metadata", f"{base}/nosuchdb_openai_files")
    assert status == 1, output
    assert 'database "nosuchdb_openai_files" does not exist' in output
    assert "metadata store failed its start-up check" in output
    assert "hunter2" not in output
    assert "Application startup complete" not in output


def test_a_refused_database_port_stops_serve_naming_it(tmp_path: Path) -> None:
    url = f"postgresql+asyncpg://postgres:hunter2@127.0.0.1:{free_port()}/files"
    status, output = serve(tmp_path, "--metadata", url, "--storage", "memory://")
    assert status == 1, output
    assert "Connect call failed" in output or "refused" in output.lower()
    assert "hunter2" not in output


def test_a_bucket_that_does_not_exist_stops_serve_naming_it(tmp_path: Path, moto: S3Server) -> None:
    storage = f"s3://no-such-bucket-here/?endpoint={moto.endpoint}&region={REGION}&allow_http=true"
    env = {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    status, output = serve(tmp_path, "--storage", storage, "--metadata", "memory://", env=env)
    assert status == 1, output
    assert "storage failed its start-up check" in output
    assert "bucket was not found" in output
    assert SECRET_KEY not in output


def test_backends_that_answer_leave_nothing_behind_in_the_files_directory(
    tmp_path: Path,
) -> None:
    from openai_files.cli import build_parser
    from openai_files.cli._startup_checks import backends_answer

    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path / "data")])
    assert backends_answer(args)
    assert [p.name for p in (tmp_path / "data" / "files").iterdir()] == []
    assert (tmp_path / "data" / "files.db").exists()

"""``serve --inline-max``: which files' bytes the metadata database keeps, by default and when
asked, and the one-line refusals of what cannot be kept so."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import openai
import pytest

from openai_files._inline import EMBEDDED_INLINE_MAX
from openai_files._pending_upload import RECORD_AFTER
from openai_files.cli import build_parser, main
from openai_files.cli._serve_options import server_settings
from openai_files.cli._storage_options import inline_max_for

from ..support import server_process, stored_files


def inline_max(argv: list[str], environ: dict[str, str] | None = None) -> int:
    if environ is not None:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in environ.items():
                patch.setenv(name, value)
            args = build_parser().parse_args(["serve", *argv])
    else:
        args = build_parser().parse_args(["serve", *argv])
    storage = server_settings(args, {})[0]
    return inline_max_for(args, storage)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], EMBEDDED_INLINE_MAX),
        (["--storage", "memory://"], EMBEDDED_INLINE_MAX),
        (["--storage", "s3://bucket"], 0),
        (["--encryption-key-file", "keys"], 0),
        (["--inline-max", "0"], 0),
        (["--inline-max", "1000", "--storage", "s3://bucket"], 1000),
    ],
    ids=["local", "memory", "s3", "encrypted", "off", "asked-on-s3"],
)
def test_small_files_are_kept_with_their_records_on_local_storage_unless_told(
    argv: list[str], expected: int
) -> None:
    assert inline_max(argv) == expected


def test_the_environment_variable_sets_it_and_the_flag_wins() -> None:
    environ = {"OPENAI_FILES_INLINE_MAX": "4096"}
    assert inline_max([], environ) == 4096
    assert inline_max(["--inline-max", "10"], environ) == 10
    assert inline_max([], {"OPENAI_FILES_INLINE_MAX": ""}) == 0


def test_the_help_names_the_default_and_the_largest(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"(at most {RECORD_AFTER})" in text
    assert f"default {EMBEDDED_INLINE_MAX} on file:// and memory://" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--inline-max", str(RECORD_AFTER + 1)], "--inline-max must be 0 to 262144 bytes"),
        (["--inline-max", "1024", "--encryption-key-file", "KEYS"], "unencrypted"),
    ],
    ids=["too-large", "encrypted"],
)
def test_what_cannot_be_kept_stops_serve_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = tmp_path / "keys"
    keys.write_text("k1:" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=\n")
    argv = [arg.replace("KEYS", str(keys)) for arg in argv]
    assert main(["serve", "--data-dir", str(tmp_path / "data"), *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error
    assert len(error.splitlines()) == 1


def test_serve_keeps_small_files_in_sqlite_and_larger_ones_on_disk(tmp_path: Path) -> None:
    small, large = b"s" * EMBEDDED_INLINE_MAX, b"l" * (EMBEDDED_INLINE_MAX + 1)
    with server_process(tmp_path) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="any", max_retries=0)
        kept = sdk.files.create(file=("s.txt", small), purpose="assistants")
        stored = sdk.files.create(file=("l.txt", large), purpose="assistants")
        assert sdk.files.content(kept.id).content == small
        assert sdk.files.content(stored.id).content == large
        assert stored_files(tmp_path / "data" / "files") != []
        assert [
            (tmp_path / "data" / "files" / name).read_bytes()
            for name in stored_files(tmp_path / "data" / "files")
        ] == [large]
        with sqlite3.connect(tmp_path / "data" / "files.db") as database:
            rows = database.execute("SELECT data FROM openai_files_file_bytes").fetchall()
        assert rows == [(small,)]
        sdk.files.delete(kept.id)
        with sqlite3.connect(tmp_path / "data" / "files.db") as database:
            rows = database.execute("SELECT data FROM openai_files_file_bytes").fetchall()
        assert rows == []
    assert f"(keeping the bytes of files of up to {EMBEDDED_INLINE_MAX} bytes)" in server.output()

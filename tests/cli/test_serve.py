"""`openai-files serve`: flags, environment variables, and a real server process."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import openai
import pytest

from openai_files import Policy
from openai_files.cli import build_parser
from openai_files.cli._serve_options import owner_of_key, policy_from_args, server_settings
from openai_files.metadata.base import Quota

from ..support import server_process


def settings(argv: list[str], environ: dict[str, str]) -> tuple[str, str, dict[str, str]]:
    return server_settings(build_parser().parse_args(["serve", *argv]), environ)


def test_defaults_put_files_and_sqlite_under_the_data_dir(tmp_path: Path) -> None:
    storage, metadata, keys = settings(["--data-dir", str(tmp_path)], {})
    assert storage == (tmp_path / "files").as_uri()
    assert metadata == f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"
    assert keys == {}


def test_api_keys_come_from_flags_or_the_environment() -> None:
    environ = {"OPENAI_FILES_API_KEYS": "sk-a=alice, sk-b"}
    assert settings([], environ)[2] == {"sk-a": "alice", "sk-b": owner_of_key("sk-b")}
    assert settings(["--api-key", "sk-c=carol"], environ)[2] == {"sk-c": "carol"}


def test_flags_win_over_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_FILES_PORT", "9001")
    monkeypatch.setenv("OPENAI_FILES_MAX_FILE_SIZE", "1234")
    assert build_parser().parse_args(["serve"]).port == 9001
    assert build_parser().parse_args(["serve"]).max_file_size == 1234
    assert build_parser().parse_args(["serve", "--port", "9002"]).port == 9002


def test_serve_with_no_key_is_open_says_so_and_keeps_files_under_data(tmp_path: Path) -> None:
    with server_process(tmp_path) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="anything", max_retries=0)
        content = b"hello" * 20_000  # past 64 KiB: a file of its own, not kept in SQLite
        created = sdk.files.create(file=("a.txt", content), purpose="assistants")
        assert sdk.files.content(created.id).content == content
    assert "the server is OPEN" in server.output()
    assert (tmp_path / "data" / "files.db").exists()
    assert any(p.is_file() for p in (tmp_path / "data" / "files").rglob("*"))


def test_serve_creates_the_data_dir_for_the_database_when_files_go_elsewhere(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "new" / "data"
    args = ("--storage", "memory://", "--data-dir", str(data_dir))
    with server_process(tmp_path, *args) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="anything", max_retries=0)
        created = sdk.files.create(file=("a.txt", b"hello"), purpose="assistants")
        assert sdk.files.retrieve(created.id).bytes == 5
    assert (data_dir / "files.db").exists()
    assert not (data_dir / "files").exists()


def test_serve_with_keys_from_the_environment_requires_them(tmp_path: Path) -> None:
    env = {"OPENAI_FILES_API_KEYS": "sk-one=team", "OPENAI_FILES_STORAGE": "memory://"}
    with server_process(tmp_path, "--metadata", "memory://", env=env) as server:
        url = server.url
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url + "/v1", api_key="sk-two", max_retries=0).files.list()
        sdk = openai.OpenAI(base_url=url + "/v1", api_key="sk-one", max_retries=0)
        assert sdk.files.create(file=("a", b"a"), purpose="vision").bytes == 1
    assert not (tmp_path / "data").exists()


def test_lifecycle_flags_build_the_policy() -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--max-files",
            "10",
            "--max-bytes",
            "1000",
            "--default-expiry",
            "assistants=3600",
            "--default-expiry",
            "batch=never",
            "--validation",
            "lenient",
            "--soft-delete",
        ]
    )
    policy = policy_from_args(args, {})
    assert policy.quota == Quota(max_files=10, max_bytes=1000)
    assert dict(policy.default_expiry) == {"assistants": 3600}
    assert (policy.validation, policy.soft_delete) == ("lenient", True)
    assert args.sweep_interval == 60
    assert args.stale_after == 3600


def test_lifecycle_environment_variables_build_the_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_FILES_MAX_FILES", "3")
    monkeypatch.setenv("OPENAI_FILES_SOFT_DELETE", "true")
    monkeypatch.setenv("OPENAI_FILES_SWEEP_INTERVAL", "0")
    monkeypatch.setenv("OPENAI_FILES_STALE_AFTER", "600")
    args = build_parser().parse_args(["serve"])
    environ = {"OPENAI_FILES_DEFAULT_EXPIRY": "vision=7200"}
    policy = policy_from_args(args, environ)
    assert policy.quota == Quota(max_files=3, max_bytes=None)
    assert dict(policy.default_expiry) == {"batch": 30 * 86400, "vision": 7200}
    assert policy.soft_delete is True
    assert args.sweep_interval == 0
    assert args.stale_after == 600


# -- --policy, --max-upload-size, --no-uploads-api ------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
XAI = f"{ROOT / 'examples' / 'policies' / 'xai.py'}:POLICY"


def parsed(*argv: str) -> Policy:
    return policy_from_args(build_parser().parse_args(["serve", *argv]), {})


def test_policy_loads_a_policy_from_a_file_or_a_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from_file = parsed("--policy", XAI)
    assert (from_file.max_file_size, from_file.list_limit_default) == (100 * 1024**2, 20)
    (tmp_path / "site_policies.py").write_text(
        "from openai_files import Policy\nSTRICT = Policy(max_file_size=1234)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    assert parsed("--policy", "site_policies:STRICT").max_file_size == 1234


@pytest.mark.parametrize(
    ("reference", "says"),
    [
        ("no-colon", "use FILE.py:NAME or MODULE:NAME"),
        ("missing.py:POLICY", "no such file missing.py"),
        ("no_such_module_here:POLICY", "cannot import no_such_module_here"),
        (f"{ROOT / 'examples' / 'policies' / 'xai.py'}:MB", "has no Policy named MB (found int)"),
    ],
)
def test_a_policy_that_cannot_be_loaded_says_why(reference: str, says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        parsed("--policy", reference)


def test_lifecycle_flags_beside_policy_are_refused_by_name() -> None:
    with pytest.raises(
        ValueError, match=r"--policy replaces --max-files/--max-bytes, --soft-delete"
    ):
        parsed("--policy", XAI, "--max-files", "3", "--soft-delete")
    # At their defaults they describe nothing, so they do not conflict.
    assert parsed("--policy", XAI, "--validation", "strict").list_limit_default == 20


def test_max_upload_size_sets_the_uploads_api_limit_from_a_flag_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert parsed().max_upload_size == Policy().max_upload_size
    assert parsed("--max-upload-size", "1000").max_upload_size == 1000
    monkeypatch.setenv("OPENAI_FILES_MAX_UPLOAD_SIZE", "2000")
    monkeypatch.setenv("OPENAI_FILES_UPLOADS_API", "false")
    args = build_parser().parse_args(["serve"])
    assert (policy_from_args(args, {}).max_upload_size, args.uploads_api) == (2000, False)


def test_serve_with_a_policy_and_no_uploads_api(tmp_path: Path) -> None:
    with server_process(tmp_path, "--policy", XAI, "--no-uploads-api") as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="anything", max_retries=0)
        with pytest.raises(openai.BadRequestError, match=re.escape("must be .pdf, .txt")):
            sdk.files.create(file=("tool.exe", b"MZ"), purpose="assistants")
        assert sdk.files.create(file=("notes.txt", b"hi"), purpose="assistants").bytes == 2
        with pytest.raises(openai.NotFoundError):
            sdk.uploads.create(
                bytes=2, filename="notes.txt", mime_type="text/plain", purpose="assistants"
            )


def test_serve_refuses_a_policy_beside_lifecycle_flags_with_exit_status_2(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openai_files.cli", "serve", "--policy", XAI, "--max-files", "3"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "openai-files serve: error: --policy replaces --max-files/--max-bytes: "
        "set it in the policy instead"
    )

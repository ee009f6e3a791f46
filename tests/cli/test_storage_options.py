"""``serve --encryption-key-file/--cache-dir/--cache-size`` and ``storage rewrap``: what they
build, and the one-line errors for what cannot be used."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import openai
import pytest

from openai_files import LocalStorage, MemoryStorage
from openai_files.cli import build_parser, main
from openai_files.cli._storage_options import wrap_storage
from openai_files.storage.encrypted import EncryptedStorage, Keyring, MasterKey
from openai_files.storage.tiered import TieredStorage

from ..support import server_process, stored_files

MARKER = b"PLAINTEXT-MARKER-c0ffee"


def write_keys(path: Path, *names: str) -> Path:
    path.write_text(
        "".join(f"{n}:{base64.b64encode(n.encode().ljust(32, b'.')).decode()}\n" for n in names)
    )
    return path


def test_encryption_wraps_the_hot_tier_that_wraps_the_storage(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", "k1")
    argv = ["serve", "--encryption-key-file", str(keys), "--cache-dir", str(tmp_path / "cache")]
    args = build_parser().parse_args([*argv, "--cache-size", "1000"])
    cold = MemoryStorage()
    storage = wrap_storage(cold, args)
    assert isinstance(storage, EncryptedStorage)
    assert storage.keyring.key_ids == ["k1"]
    assert isinstance(storage.inner, TieredStorage)
    assert (storage.inner.cold, storage.inner.max_bytes) == (cold, 1000)
    assert isinstance(storage.inner.hot, LocalStorage)
    assert wrap_storage(cold, build_parser().parse_args(["serve"])) is cold


def test_the_flags_read_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_FILES_ENCRYPTION_KEY_FILE", "/etc/keys")
    monkeypatch.setenv("OPENAI_FILES_CACHE_DIR", "/var/cache/files")
    monkeypatch.setenv("OPENAI_FILES_CACHE_SIZE", "12345")
    args = build_parser().parse_args(["serve"])
    assert (args.encryption_key_file, args.cache_dir, args.cache_size) == (
        "/etc/keys",
        "/var/cache/files",
        12345,
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--encryption-key-file", "/no/such/keys"], "cannot read the key file /no/such/keys"),
        (["--cache-dir", "cache", "--cache-size", "0"], "--cache-size must be a positive"),
    ],
    ids=["missing-key-file", "zero-cache"],
)
def test_unusable_storage_flags_stop_serve_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error
    assert len(error.splitlines()) == 1


def test_without_the_encryption_extra_serve_says_which_extra_in_one_line(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", "k1")
    code = (
        "import sys; sys.modules['cryptography'] = None; "
        "from openai_files.cli import main; "
        f"sys.exit(main(['serve', '--encryption-key-file', {str(keys)!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "openai-files serve: error: encrypted storage needs the 'cryptography' package: "
        "pip install 'openai-files[encryption]'"
    ]


def test_serve_encrypts_on_local_disk_and_rewrap_rotates_the_key(tmp_path: Path) -> None:
    keys = write_keys(tmp_path / "keys", "old")
    files = tmp_path / "data" / "files"
    argv = ["--encryption-key-file", str(keys), "--cache-dir", str(tmp_path / "cache")]
    with server_process(tmp_path, *argv) as server:
        sdk = openai.OpenAI(base_url=server.url + "/v1", api_key="any", max_retries=0)
        created = sdk.files.create(file=("a.txt", MARKER * 1000), purpose="assistants")
        assert sdk.files.content(created.id).content == MARKER * 1000
        assert sdk.files.content(created.id).content == MARKER * 1000
    assert len(stored_files(files)) == len(stored_files(tmp_path / "cache")) == 2
    for root in (files, tmp_path / "cache"):
        assert not any(MARKER in (root / name).read_bytes() for name in stored_files(root))

    write_keys(keys, "new", "old")
    argv = ["storage", "rewrap", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--encryption-key-file", str(keys)]) == 0
    reader = EncryptedStorage(
        LocalStorage(files), Keyring([MasterKey("new", b"new".ljust(32, b"."))])
    )
    (key,) = [name for name in stored_files(files) if not name.endswith(".key")]
    assert anyio.run(reader.key_id, key) == "new"


def test_rewrap_fails_clearly_without_a_key_file_or_for_a_key_that_is_gone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = tmp_path / "data" / "files"
    assert main(["storage", "rewrap", "--data-dir", str(tmp_path / "data")]) == 2
    assert "give the key file" in capsys.readouterr().err

    async def store() -> None:
        old = EncryptedStorage(LocalStorage(files), Keyring([MasterKey("old", b"o" * 32)]))

        async def content() -> AsyncIterator[bytes]:
            yield b"x"

        await old.put("aa/bb/file", content())

    anyio.run(store)
    keys = write_keys(tmp_path / "keys", "other")
    argv = ["storage", "rewrap", "--data-dir", str(tmp_path / "data")]
    assert main([*argv, "--encryption-key-file", str(keys)]) == 1
    captured = capsys.readouterr()
    assert captured.out.strip() == "rewrapped 0, already under 'other' 0, failed 1"
    assert "failed: aa/bb/file: " in captured.err
    assert "master key 'old', which is not in the keyring" in captured.err


def test_importing_the_package_or_serving_unencrypted_loads_no_cryptography() -> None:
    code = (
        "import sys, openai_files; from openai_files.cli import build_parser; "
        "from openai_files.cli._storage_options import wrap_storage; "
        "wrap_storage(openai_files.MemoryStorage(), build_parser().parse_args(['serve'])); "
        "before = 'cryptography' in sys.modules; "
        "from openai_files import EncryptedStorage; print(before, 'cryptography' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]

"""API keys of any form each stand for exactly their own owner, and key configuration fails
closed: ``openai-files serve`` given keys it cannot read one way only does not start.

- A key made the usual ways (base64 with ``=`` padding, URL-safe base64, hex, printable ASCII
  with ``=``, ``:`` or ``+``) authenticates as itself, not as a prefix of itself.
- ``--api-key KEY=OWNER`` takes the owner after the LAST ``=``; a key ending in ``=`` is whole.
- A key given alone stands for an owner derived from it (``key-`` and 16 hex digits of its
  SHA-256): the key itself is never stored.
- A key option, variable or file that yields no valid key, or any invalid entry, stops the
  server from starting with a message that names the entry but never shows the key.
"""

from __future__ import annotations

import base64
import json
import os
import random
import sqlite3
import string
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from openai_files.cli._serve_options import mask, owner_of_key, parse_api_key

from ..support import free_port, server_process

OWNERS_TABLE = "openai_files_files"


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def upload(client: httpx.Client, key: str, name: str) -> str:
    response = client.post(
        "/v1/files",
        headers=bearer(key),
        files={"file": (name, name.encode())},
        data={"purpose": "assistants"},
    )
    assert response.status_code == 200, response.text
    file_id: str = response.json()["id"]
    return file_id


def listed(client: httpx.Client, key: str) -> list[str]:
    response = client.get("/v1/files", headers=bearer(key))
    assert response.status_code == 200, response.text
    return [f["id"] for f in response.json()["data"]]


def owners_of(database: Path) -> dict[str, str]:
    """file id -> owner, as the server stored them."""
    with sqlite3.connect(database) as connection:
        rows = connection.execute(f"SELECT id, owner FROM {OWNERS_TABLE}").fetchall()
    return dict(rows)


def serve_args(tmp_path: Path) -> list[str]:
    return ["--storage", "memory://", "--metadata", f"sqlite+aiosqlite:///{tmp_path / 'f.db'}"]


# Keys of every alphabet a user may generate them in.


def base64_key(rng: random.Random) -> str:
    """``openssl rand -base64 16``: 24 characters ending in ``==``."""
    return base64.b64encode(rng.randbytes(16)).decode()


def urlsafe_key(rng: random.Random) -> str:
    """``secrets.token_urlsafe`` style, with ``-`` and ``_``, padded to a multiple of 4."""
    return base64.urlsafe_b64encode(rng.randbytes(rng.choice([16, 17, 32]))).decode()


def hex_key(rng: random.Random) -> str:
    return rng.randbytes(rng.choice([16, 32])).hex()


PRINTABLE = [c for c in string.printable if "!" <= c <= "~"]


def printable_key(rng: random.Random) -> str:
    """Printable ASCII with at least one ``=`` and one ``:`` (and a ``+`` now and then),
    not starting with ``#``, which starts a comment in a text keys file."""
    body = [rng.choice(PRINTABLE) for _ in range(rng.randint(8, 40))]
    for extra in "=:" + rng.choice(["+", "=", ":", "=="]):
        body.insert(rng.randint(0, len(body)), extra)
    if rng.random() < 0.3:
        body.append("=")  # a key may end in '=' as base64 does
    key = "".join(body)
    return "k" + key if key.startswith("#") else key


GENERATORS = [base64_key, urlsafe_key, hex_key, printable_key]


def generated_keys(seed: int, per_alphabet: int = 50) -> dict[str, str]:
    """``per_alphabet`` keys of each alphabet, each for its own owner."""
    rng = random.Random(seed)
    keys: dict[str, str] = {}
    for generator in GENERATORS:
        made = 0
        while made < per_alphabet:
            key = generator(rng)
            if key not in keys:
                keys[key] = f"{generator.__name__.removesuffix('_key')}-{made}"
                made += 1
    return keys


def check_each_key_is_its_own_owner(url: str, database: Path, keys: dict[str, str]) -> None:
    """Every key uploads a file that only it lists, stored under exactly its owner; the key
    cut or lengthened by one character is refused."""
    with httpx.Client(base_url=url, timeout=30) as client:
        created = {key: upload(client, key, f"{owner}.txt") for key, owner in keys.items()}
        for key in keys:
            assert listed(client, key) == [created[key]]
        stored = owners_of(database)
        assert {stored[created[key]] for key in keys} == set(keys.values())
        for key, owner in keys.items():
            assert stored[created[key]] == owner
        for key in keys:
            for wrong in (key[:-1], key + "A", key[1:], key.rstrip("=")):
                if wrong != key and wrong not in keys:
                    response = client.get("/v1/files", headers=bearer(wrong))
                    assert response.status_code == 401, (wrong, response.text)


def test_two_base64_keys_with_padding_are_two_owners(tmp_path: Path) -> None:
    rng = random.Random(1)
    key_a, key_b = base64_key(rng), base64_key(rng)
    assert key_a.endswith("==")
    assert key_b.endswith("==")
    with (
        server_process(
            tmp_path, *serve_args(tmp_path), "--api-key", key_a, "--api-key", key_b
        ) as server,
        httpx.Client(base_url=server.url) as client,
    ):
        file_a = upload(client, key_a, "a.txt")
        assert listed(client, key_a) == [file_a]
        assert listed(client, key_b) == []
        assert client.get(f"/v1/files/{file_a}", headers=bearer(key_b)).status_code == 404
        assert client.delete(f"/v1/files/{file_a}", headers=bearer(key_b)).status_code == 404
        assert client.get("/v1/files", headers=bearer(key_a[:-2])).status_code == 401
    assert owners_of(tmp_path / "f.db") == {file_a: owner_of_key(key_a)}


def test_a_key_with_an_early_equals_sign_is_not_cut(tmp_path: Path) -> None:
    key = "sk=abc=def:ghi+jk=="
    with (
        server_process(tmp_path, *serve_args(tmp_path), "--api-key", f"{key}=team-a") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        file_id = upload(client, key, "a.txt")
        for prefix in ("sk", "sk=abc", "sk=abc=def:ghi+jk"):
            assert client.get("/v1/files", headers=bearer(prefix)).status_code == 401
    assert owners_of(tmp_path / "f.db") == {file_id: "team-a"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("sk-a=alice", ("sk-a", "alice")),
        ("sk-b", ("sk-b", owner_of_key("sk-b"))),
        ("AbCd+/Ef==", ("AbCd+/Ef==", owner_of_key("AbCd+/Ef=="))),
        ("AbCd+/Ef===team-a", ("AbCd+/Ef==", "team-a")),
        ("a=b=c", ("a=b", "c")),
        ("user:pass=team", ("user:pass", "team")),
    ],
)
def test_the_owner_is_what_follows_the_last_equals_sign(
    value: str, expected: tuple[str, str]
) -> None:
    assert parse_api_key(value, "--api-key #1") == expected


def test_fifty_keys_of_every_alphabet_from_a_text_keys_file(tmp_path: Path) -> None:
    keys = generated_keys(seed=18)
    lines = ["# generated keys", ""] + [f"{key}  {owner}" for key, owner in keys.items()]
    keys_file = tmp_path / "keys.txt"
    keys_file.write_text("\n".join(lines) + "\n")
    args = [*serve_args(tmp_path), "--api-keys-file", str(keys_file)]
    with server_process(tmp_path, *args) as server:
        check_each_key_is_its_own_owner(server.url, tmp_path / "f.db", keys)
    assert "200 API key(s) configured for 200 owner(s)" in server.output()


def test_fifty_keys_of_every_alphabet_from_a_json_keys_file_in_the_environment(
    tmp_path: Path,
) -> None:
    keys = generated_keys(seed=19)
    keys["#starts-with-hash=="] = "hash-owner"
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps(keys))
    env = {"OPENAI_FILES_API_KEYS_FILE": str(keys_file)}
    with server_process(tmp_path, *serve_args(tmp_path), env=env) as server:
        check_each_key_is_its_own_owner(server.url, tmp_path / "f.db", keys)


def test_fifty_keys_of_every_alphabet_as_key_equals_owner_flags(tmp_path: Path) -> None:
    keys = generated_keys(seed=20)
    flags = [arg for key, owner in keys.items() for arg in ("--api-key", f"{key}={owner}")]
    with server_process(tmp_path, *serve_args(tmp_path), *flags) as server:
        check_each_key_is_its_own_owner(server.url, tmp_path / "f.db", keys)


def test_keys_alone_that_end_in_padding_each_stand_for_an_owner_derived_from_them(
    tmp_path: Path,
) -> None:
    rng = random.Random(21)
    keys = {k: owner_of_key(k) for k in (base64_key(rng) for _ in range(20))}
    keys.update({k: owner_of_key(k) for k in (hex_key(rng) for _ in range(5))})
    keys["k" * 300] = owner_of_key("k" * 300)  # longer than an owner may be: fine
    flags = [arg for key in keys for arg in ("--api-key", key)]
    with server_process(tmp_path, *serve_args(tmp_path), *flags) as server:
        check_each_key_is_its_own_owner(server.url, tmp_path / "f.db", keys)


# Fail closed: what cannot be read one way only stops the server.

SECRET = "sk-live-0123456789abcdefSECRET"


def keys_file(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


REFUSALS: list[tuple[str, list[str], dict[str, str], str, str]] = [
    ("empty key", ["--api-key", "=team-a"], {}, "", "--api-key #1: the key is empty"),
    ("blank key", ["--api-key", " =team-b"], {}, "", "--api-key #1: the key is empty"),
    (
        "both unset",
        ["--api-key", "=team-a", "--api-key", " =team-b"],
        {},
        "",
        "the key is empty (an unset shell variable?)",
    ),
    ("empty flag", ["--api-key", ""], {}, "", "--api-key #1: the key is empty"),
    (
        "unset variables",
        [],
        {"OPENAI_FILES_API_KEYS": "=team-a, =team-b"},
        "",
        "OPENAI_FILES_API_KEYS entry 1: the key is empty",
    ),
    ("empty variable", [], {"OPENAI_FILES_API_KEYS": ""}, "", "OPENAI_FILES_API_KEYS is set"),
    (
        "trailing comma",
        [],
        {"OPENAI_FILES_API_KEYS": f"{SECRET}=team-a,"},
        "",
        "OPENAI_FILES_API_KEYS entry 2: the key is empty",
    ),
    ("empty file", ["--api-keys-file", "{empty}"], {}, "", "gave no API key"),
    ("comments only", ["--api-keys-file", "{comments}"], {}, "", "gave no API key"),
    ("empty json", ["--api-keys-file", "{empty_json}"], {}, "", "gave no API key"),
    ("missing file", ["--api-keys-file", "{missing}"], {}, "", "cannot read the keys file"),
    ("empty file variable", [], {"OPENAI_FILES_API_KEYS_FILE": ""}, "", "names no file"),
    (
        "invalid owner",
        ["--api-key", f"{SECRET}=team a"],
        {},
        SECRET,
        "the owner after the last '=' contains whitespace",
    ),
    (
        "owner too long",
        ["--api-key", f"{SECRET}={'o' * 256}"],
        {},
        SECRET,
        "longer than 255 characters",
    ),
    (
        "invalid owner in a file",
        ["--api-keys-file", "{bad_owner}"],
        {},
        SECRET,
        "line 2: the owner of {MASKED} contains '='",
    ),
    (
        "three fields",
        ["--api-keys-file", "{three_fields}"],
        {},
        SECRET,
        "line 1: write one key and its owner separated by whitespace",
    ),
    (
        "conflicting flags",
        ["--api-key", f"{SECRET}=team-a", "--api-key", f"{SECRET}=team-b"],
        {},
        SECRET,
        "--api-key #2: the key {MASKED} was already given for another owner (--api-key #1)",
    ),
    (
        "conflicting flag and file",
        ["--api-key", f"{SECRET}=team-b", "--api-keys-file", "{good}"],
        {},
        SECRET,
        "was already given for another owner (--api-key #1)",
    ),
    (
        "conflicting json",
        ["--api-keys-file", "{duplicate_json}"],
        {},
        SECRET,
        "entry 2: the key {MASKED} was already given for another owner",
    ),
    (
        "space in a json key",
        ["--api-keys-file", "{space_json}"],
        {},
        SECRET,
        "entry 1: the key has whitespace around it",
    ),
    ("non-ascii key", ["--api-key", "sk-é=team"], {}, "sk-é", "other than printable ASCII"),
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, str]:
    return {
        "empty": keys_file(tmp_path, "empty.txt", ""),
        "comments": keys_file(tmp_path, "comments.txt", "# no keys yet\n\n   \n"),
        "empty_json": keys_file(tmp_path, "empty.json", "{}"),
        "missing": str(tmp_path / "missing.txt"),
        "bad_owner": keys_file(tmp_path, "bad.txt", f"sk-fine team-a\n{SECRET} team=a\n"),
        "three_fields": keys_file(tmp_path, "three.txt", f"{SECRET} team-a extra\n"),
        "good": keys_file(tmp_path, "good.txt", f"{SECRET} team-a\n"),
        "duplicate_json": keys_file(
            tmp_path, "dup.json", f'{{"{SECRET}": "team-a", "{SECRET}": "team-b"}}'
        ),
        "space_json": keys_file(tmp_path, "space.json", f'{{" {SECRET}": "team-a"}}'),
    }


@pytest.mark.parametrize(
    ("args", "env", "secret", "message"),
    [case[1:] for case in REFUSALS],
    ids=[case[0] for case in REFUSALS],
)
def test_serve_refuses_to_start_on_keys_it_cannot_read(
    tmp_path: Path,
    files: dict[str, str],
    args: list[str],
    env: dict[str, str],
    secret: str,
    message: str,
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "openai_files.cli", "serve", "--port", str(port)]
    finished = subprocess.run(
        [*command, *serve_args(tmp_path), *(a.format(**files) for a in args)],
        env={**os.environ, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 2, output
    assert message.replace("{MASKED}", mask(SECRET)) in output
    assert "refusing to serve" in output or "error:" in output
    if secret:
        assert secret not in output
    assert "Uvicorn running" not in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{port}/v1/files", timeout=1)


def test_a_key_option_that_gives_keys_serves_only_them(tmp_path: Path) -> None:
    """The counterpart of the refusals: an option that yields a key starts a closed server."""
    with (
        server_process(tmp_path, *serve_args(tmp_path), "--api-key", f"{SECRET}=team") as server,
        httpx.Client(base_url=server.url) as client,
    ):
        assert client.get("/v1/files").status_code == 401
        assert client.get("/v1/files", headers=bearer(SECRET)).status_code == 200
    assert SECRET not in server.output()


@pytest.fixture(autouse=True)
def _no_key_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Servers started here see only the key settings each test gives them."""
    for name in ("OPENAI_FILES_API_KEYS", "OPENAI_FILES_API_KEYS_FILE"):
        monkeypatch.delenv(name, raising=False)

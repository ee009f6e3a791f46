"""What ``openai-files serve`` is asked for, from its flags and ``OPENAI_FILES_*`` variables:
the storage and metadata URLs, the API keys, and the `Policy` (built from the lifecycle flags,
or loaded whole with ``--policy FILE.py:NAME``)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path

from ..metadata.base import Quota
from ..policy import Policy

__all__ = [
    "HTTP_CHOICES",
    "LOOP_CHOICES",
    "api_keys_from",
    "key_problem",
    "load_policy",
    "mask",
    "merge_api_keys",
    "owner_of_key",
    "owner_problem",
    "parse_api_key",
    "parse_api_keys",
    "parse_expiries",
    "policy_from_args",
    "read_api_keys_file",
    "server_settings",
    "without_flushes",
]

HTTP_CHOICES = ("auto", "httptools", "h11")
"""``--http``: auto is httptools when it is installed, else h11."""
LOOP_CHOICES = ("auto", "uvloop", "asyncio")
"""``--loop``: auto is uvloop when it is installed, else asyncio."""


def parse_expiries(values: Sequence[str]) -> dict[str, int | None]:
    """``PURPOSE=SECONDS`` (or ``PURPOSE=never``) entries as a purpose -> seconds map."""
    expiries: dict[str, int | None] = {}
    for value in values:
        purpose, separator, seconds = value.strip().partition("=")
        if not purpose or not separator:
            raise SystemExit(f"openai-files: --default-expiry takes PURPOSE=SECONDS, not {value!r}")
        expiries[purpose] = None if seconds.strip().lower() == "never" else int(seconds)
    return expiries


def policy_from_args(args: argparse.Namespace, environ: Mapping[str, str] = os.environ) -> Policy:
    """The `Policy` that the flags and environment variables describe, or the one ``--policy``
    names (`ValueError` if lifecycle flags are set beside it, or it cannot be loaded)."""
    entries = args.default_expiry
    if entries is None:
        entries = [e for e in environ.get("OPENAI_FILES_DEFAULT_EXPIRY", "").split(",") if e]
    expiry = {**Policy().default_expiry, **parse_expiries(entries)}
    quota = None
    if args.max_files is not None or args.max_bytes is not None:
        quota = Quota(max_files=args.max_files, max_bytes=args.max_bytes)
    described = Policy(
        max_file_size=args.max_file_size,
        max_upload_size=args.max_upload_size,
        max_open_uploads=args.max_open_uploads or None,
        default_expiry={p: s for p, s in expiry.items() if s is not None},
        quota=quota,
        validation=args.validation,
        soft_delete=args.soft_delete,
    )
    if args.policy is None:
        return described
    changed = [flag for flag, field in _LIFECYCLE_FLAGS if _differs(described, field)]
    if changed:
        raise ValueError(
            f"--policy replaces {', '.join(changed)}: set {'it' if len(changed) == 1 else 'them'}"
            " in the policy instead"
        )
    return load_policy(args.policy)


_LIFECYCLE_FLAGS = (
    ("--max-file-size", "max_file_size"),
    ("--max-upload-size", "max_upload_size"),
    ("--max-open-uploads", "max_open_uploads"),
    ("--max-files/--max-bytes", "quota"),
    ("--default-expiry", "default_expiry"),
    ("--validation", "validation"),
    ("--soft-delete", "soft_delete"),
)
"""The flags (and their variables) that describe a policy, and the field each one sets."""


def _differs(policy: Policy, field: str) -> bool:
    return bool(getattr(policy, field) != getattr(Policy(), field))


def load_policy(reference: str) -> Policy:
    """The `Policy` ``FILE.py:NAME`` or ``package.module:NAME`` names; `ValueError` otherwise."""
    import importlib
    import importlib.util

    where, _, name = reference.rpartition(":")
    if not where or not name:
        raise ValueError(f"--policy {reference!r}: use FILE.py:NAME or MODULE:NAME")
    try:
        if where.endswith(".py"):
            path = Path(where)
            spec = importlib.util.spec_from_file_location(f"openai_files_policy_{path.stem}", path)
            if spec is None or spec.loader is None or not path.is_file():
                raise ValueError(f"--policy {reference!r}: no such file {where}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(where)
    except ImportError as exc:
        raise ValueError(f"--policy {reference!r}: cannot import {where}: {exc}") from exc
    policy = getattr(module, name, None)
    if not isinstance(policy, Policy):
        raise ValueError(
            f"--policy {reference!r}: {where} has no Policy named {name} "
            f"(found {type(policy).__name__})"
        )
    return policy


API_KEYS_VARIABLE = "OPENAI_FILES_API_KEYS"
API_KEYS_FILE_VARIABLE = "OPENAI_FILES_API_KEYS_FILE"
MAX_OWNER_LENGTH = 255
"""The longest owner the service accepts."""
KEY_OWNER_PREFIX = "key-"


def owner_of_key(key: str) -> str:
    """The owner of a key given without one (``--api-key KEY``): ``key-`` and the first 16 hex
    digits of the key's SHA-256, a stable id that does not reveal the key. The key itself is
    never stored: the owner is what the records hold."""
    return KEY_OWNER_PREFIX + hashlib.sha256(key.encode()).hexdigest()[:16]


def owner_problem(owner: str) -> str | None:
    """Why ``owner`` cannot be a configured owner, or None when it can.

    A configured owner is 1 to 255 characters with no whitespace, no control or unassigned
    characters and no ``=`` (which separates it from the key in ``--api-key KEY=OWNER``).
    """
    if not owner:
        return "is empty"
    if len(owner) > MAX_OWNER_LENGTH:
        return f"is longer than {MAX_OWNER_LENGTH} characters"
    if any(c.isspace() or unicodedata.category(c).startswith("C") for c in owner):
        return "contains whitespace or control characters"
    if "=" in owner:
        return "contains '='"
    return None


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a configured API key, or None when it can.

    A key is one or more printable ASCII characters other than space (``!`` to ``~``): what
    base64 (with its ``=`` padding), URL-safe base64, hex and ``sk-...`` keys are made of, and
    what a client can send in an ``Authorization`` header exactly as configured.
    """
    if not key.strip():
        return "is empty"
    if key != key.strip():
        return "has whitespace around it"
    if any(not "!" <= c <= "~" for c in key):
        return "contains characters other than printable ASCII (a space, a control character?)"
    return None


def mask(key: str) -> str:
    """``key`` as it may appear in a message: at most its first 3 characters, and its length."""
    shown = key[:3] if len(key) >= 20 else ""
    return f"{shown}*** ({len(key)} characters)"


def parse_api_key(value: str, where: str) -> tuple[str, str]:
    """One ``KEY`` or ``KEY=OWNER`` value as ``(key, owner)``; `ValueError` saying why not.

    The owner is what follows the LAST ``=``, since owners never contain one; a value ending
    in ``=`` (base64 padding) has no owner and is the key whole. A key alone stands for the
    owner `owner_of_key` derives from it.
    ``where`` names the value in messages, which never show a key.
    """
    key, separator, owner = value.rpartition("=")
    if not separator or not owner:  # no '=', or a trailing one: the whole value is the key
        key, owner = value, ""
    elif (problem := owner_problem(owner)) is not None:
        raise ValueError(
            f"{where}: the owner after the last '=' {problem}. Write KEY=OWNER with a valid "
            "owner, or list the key in a keys file (--api-keys-file)."
        )
    if (problem := key_problem(key)) is not None:
        hint = " (an unset shell variable?)" if problem == "is empty" else ""
        raise ValueError(f"{where}: the key {problem}{hint}.")
    return key, owner or owner_of_key(key)


def parse_api_keys(values: Sequence[str], source: str = "--api-key") -> dict[str, str]:
    """``KEY`` or ``KEY=OWNER`` values (see `parse_api_key`) as a key -> owner map.

    `ValueError`, naming the value by its position in ``source``, for a value that cannot be
    read one way only, and for one key given twice with different owners.
    """
    return merge_api_keys(
        [(*parse_api_key(v, f"{source} #{n}"), f"{source} #{n}") for n, v in enumerate(values, 1)]
    )


def read_api_keys_file(path: str) -> list[tuple[str, str, str]]:
    """The ``(key, owner, where)`` entries of a keys file; `ValueError` saying what is wrong.

    A file named ``*.json`` holds one JSON object ``{"KEY": "OWNER", ...}``; any other holds
    one ``KEY OWNER`` per line, separated by whitespace, where blank lines and lines starting
    with ``#`` are skipped (a key that starts with ``#`` goes in a JSON file).
    """
    if not path.strip():
        raise ValueError(f"{API_KEYS_FILE_VARIABLE} is set but names no file")
    try:
        text = Path(path).read_bytes().decode("utf-8-sig")
    except OSError as exc:
        raise ValueError(f"cannot read the keys file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"the keys file {path} is not UTF-8 text") from None
    if path.lower().endswith(".json"):
        return _json_key_entries(text, path)
    entries = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        where = f"{path} line {number}"
        if len(fields) != 2:
            raise ValueError(
                f"{where}: write one key and its owner separated by whitespace (KEY OWNER); "
                f"found {len(fields)} field(s)"
            )
        entries.append(_checked_entry(fields[0], fields[1], where))
    return entries


def _json_key_entries(text: str, path: str) -> list[tuple[str, str, str]]:
    try:
        pairs = json.loads(text, object_pairs_hook=list)
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"the keys file {path} is not valid JSON: {exc}") from None
    if not isinstance(pairs, list) or any(not isinstance(p, tuple) for p in pairs):
        raise ValueError(f'the keys file {path} must be one JSON object {{"KEY": "OWNER"}}')
    entries = []
    for number, (key, owner) in enumerate(pairs, 1):
        where = f"{path} entry {number}"
        if not isinstance(owner, str):
            raise ValueError(f"{where}: the owner must be a string")
        entries.append(_checked_entry(key, owner, where))
    return entries


def _checked_entry(key: str, owner: str, where: str) -> tuple[str, str, str]:
    if (problem := key_problem(key)) is not None:
        raise ValueError(f"{where}: the key {problem}.")
    if (problem := owner_problem(owner)) is not None:
        raise ValueError(f"{where}: the owner of {mask(key)} {problem}.")
    return key, owner, where


def merge_api_keys(entries: Sequence[tuple[str, str, str]]) -> dict[str, str]:
    """``(key, owner, where)`` entries as a key -> owner map; `ValueError` for a key given
    twice with different owners (the same key for the same owner again is harmless)."""
    keys: dict[str, tuple[str, str]] = {}
    for key, owner, where in entries:
        earlier = keys.setdefault(key, (owner, where))
        if earlier[0] != owner:
            raise ValueError(
                f"{where}: the key {mask(key)} was already given for another owner "
                f"({earlier[1]}); one key cannot stand for two owners."
            )
    return {key: owner for key, (owner, _) in keys.items()}


def api_keys_from(args: argparse.Namespace, environ: Mapping[str, str]) -> dict[str, str]:
    """The key -> owner map of ``--api-key`` (else ``OPENAI_FILES_API_KEYS``) and
    ``--api-keys-file`` (else ``OPENAI_FILES_API_KEYS_FILE``).

    Empty when none of them is given (or set, even to an empty value): an open server. When any
    is given, it must yield at least one key and every entry must be valid, else `ValueError`:
    a value meant to hold keys that holds none (an unset shell variable) never opens a server.
    """
    entries: list[tuple[str, str, str]] = []
    asked = []
    if args.api_key is not None:
        asked.append("--api-key")
        for number, value in enumerate(args.api_key, 1):
            where = f"--api-key #{number}"
            entries.append((*parse_api_key(value, where), where))
    elif API_KEYS_VARIABLE in environ:
        asked.append(API_KEYS_VARIABLE)
        if not environ[API_KEYS_VARIABLE].strip():
            raise ValueError(
                f"{API_KEYS_VARIABLE} is set but empty: give it keys, or unset it to run an "
                "open server"
            )
        for number, value in enumerate(environ[API_KEYS_VARIABLE].split(","), 1):
            where = f"{API_KEYS_VARIABLE} entry {number}"
            entries.append((*parse_api_key(value.strip(), where), where))
    path = args.api_keys_file
    if path is None and API_KEYS_FILE_VARIABLE in environ:
        path = environ[API_KEYS_FILE_VARIABLE]
    if path is not None:
        asked.append(path)
        entries += read_api_keys_file(path)
    if asked and not entries:
        raise ValueError(f"{' and '.join(asked)} gave no API key: refusing to serve without keys")
    return merge_api_keys(entries)


def server_settings(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> tuple[str, str, dict[str, str]]:
    """The storage URL, metadata URL and API keys that ``args`` and the environment ask for;
    `ValueError` when the keys cannot be read (see `api_keys_from`). With ``--no-fsync`` the
    URLs carry the options that skip flushing (see `without_flushes`)."""
    data_dir = Path(args.data_dir).resolve()
    storage = args.storage or (data_dir / "files").as_uri()
    metadata = args.metadata or f"sqlite+aiosqlite:///{data_dir / 'files.db'}"
    if not getattr(args, "fsync", True):
        storage, metadata = without_flushes(storage, metadata)
    return storage, metadata, api_keys_from(args, environ)


def without_flushes(storage: str, metadata: str) -> tuple[str, str]:
    """The storage and metadata URLs with the options that trade durability for speed, where
    they apply: ``fsync=false`` on a ``file:`` storage, ``synchronous=normal`` on SQLite.
    Other backends (S3, PostgreSQL, MariaDB) are durable by their own configuration."""
    if storage.startswith("file:") and "fsync=" not in storage:
        storage += ("&" if "?" in storage else "?") + "fsync=false"
    if metadata.startswith("sqlite") and "synchronous=" not in metadata:
        metadata += ("&" if "?" in metadata else "?") + "synchronous=normal"
    return storage, metadata

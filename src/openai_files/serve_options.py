"""What ``openai-files serve`` is asked for, from its flags and ``OPENAI_FILES_*`` variables:
the storage and metadata URLs, the API keys, and the `Policy` (built from the lifecycle flags,
or loaded whole with ``--policy FILE.py:NAME``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .metadata.base import Quota
from .policy import Policy

__all__ = [
    "load_policy",
    "parse_api_keys",
    "parse_expiries",
    "policy_from_args",
    "server_settings",
]


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


def parse_api_keys(values: Sequence[str]) -> dict[str, str]:
    """``KEY`` or ``KEY=OWNER`` entries as a key -> owner map."""
    keys: dict[str, str] = {}
    for value in values:
        key, _, owner = value.strip().partition("=")
        if key:
            keys[key] = owner or key
    return keys


def server_settings(
    args: argparse.Namespace, environ: Mapping[str, str] = os.environ
) -> tuple[str, str, dict[str, str]]:
    """The storage URL, metadata URL and API keys that ``args`` and the environment ask for."""
    data_dir = Path(args.data_dir).resolve()
    storage = args.storage or (data_dir / "files").as_uri()
    metadata = args.metadata or f"sqlite+aiosqlite:///{data_dir / 'files.db'}"
    entries = args.api_key
    if entries is None:
        entries = [e for e in environ.get("OPENAI_FILES_API_KEYS", "").split(",") if e.strip()]
    return storage, metadata, parse_api_keys(entries)

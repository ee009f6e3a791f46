"""Encryption at rest and a local hot tier for ``openai-files serve``, and the
``openai-files storage rewrap`` command that rotates master keys.

``--encryption-key-file PATH`` (``OPENAI_FILES_ENCRYPTION_KEY_FILE``) wraps the storage in
`EncryptedStorage` with the keys of that file (``KEY_ID:BASE64_32_BYTES`` per line, the first
one writes). ``--cache-dir DIR --cache-size BYTES`` (``OPENAI_FILES_CACHE_DIR``,
``OPENAI_FILES_CACHE_SIZE``) put a `TieredStorage` hot tier on local disk in front of it.
Encryption wraps the tiers, so the hot tier holds ciphertext too.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from ..errors import BlobNotFound, OpenAIFilesError

if TYPE_CHECKING:
    from ..storage.base import Storage
    from ..storage.encrypted import EncryptedStorage
    from ..storage.tiered import TierStats

__all__ = [
    "DEFAULT_CACHE_SIZE",
    "add_rewrap_command",
    "add_storage_flags",
    "check_storage_flags",
    "describe_storage",
    "inline_max_for",
    "run_rewrap",
    "wrap_storage",
]

log = logging.getLogger("openai_files")

KEY_FILE_VARIABLE = "OPENAI_FILES_ENCRYPTION_KEY_FILE"
DEFAULT_CACHE_SIZE = 10 * 1024**3
"""``--cache-size`` when only ``--cache-dir`` is given: 10 GiB."""


def add_storage_flags(serve: argparse.ArgumentParser, environ: Mapping[str, str]) -> None:
    """Add ``--encryption-key-file``, ``--cache-dir`` and ``--cache-size`` to ``serve``."""
    serve.add_argument(
        "--encryption-key-file",
        default=environ.get(KEY_FILE_VARIABLE) or None,
        metavar="PATH",
        help="encrypt every stored file with the master keys in PATH, one KEY_ID:BASE64 "
        "(32 bytes) per line; the first writes, all read (see 'openai-files storage rewrap'; "
        f"{KEY_FILE_VARIABLE})",
    )
    serve.add_argument(
        "--inline-max",
        type=int,
        default=int(environ["OPENAI_FILES_INLINE_MAX"] or 0)
        if "OPENAI_FILES_INLINE_MAX" in environ
        else None,
        metavar="BYTES",
        help="keep the bytes of files of up to BYTES (at most 262144) in the metadata database, "
        "in the commit of their record, instead of the storage: 0 for none (default 65536 on "
        "file:// and memory:// storage unless encrypting, else 0; OPENAI_FILES_INLINE_MAX)",
    )
    serve.add_argument(
        "--cache-dir",
        default=environ.get("OPENAI_FILES_CACHE_DIR") or None,
        metavar="DIR",
        help="keep recently read files in DIR, a hot tier on local disk in front of the "
        "storage (holding ciphertext when encrypting; OPENAI_FILES_CACHE_DIR)",
    )
    serve.add_argument(
        "--cache-size",
        type=int,
        default=int(environ.get("OPENAI_FILES_CACHE_SIZE") or DEFAULT_CACHE_SIZE),
        metavar="BYTES",
        help="most bytes the --cache-dir holds, least recently read evicted first "
        f"(default {DEFAULT_CACHE_SIZE}; OPENAI_FILES_CACHE_SIZE)",
    )


def wrap_storage(
    storage: Storage,
    args: argparse.Namespace,
    observe_tier: Callable[[str, TierStats], None] | None = None,
) -> Storage:
    """``storage`` behind the hot tier and the encryption ``args`` ask for (either, both or
    none), the hot tier's events told to ``observe_tier``; `ValueError` for a key file or
    cache setting that cannot be used, `ImportError` (one line naming the extra) without the
    ``cryptography`` package."""
    cache_dir = getattr(args, "cache_dir", None)
    key_file = getattr(args, "encryption_key_file", None)
    if cache_dir is not None:
        from ..storage.local import LocalStorage
        from ..storage.tiered import TieredStorage

        check_storage_flags(args)
        hot = LocalStorage(Path(cache_dir), fsync=False)  # a cache: the cold tier is durable
        storage = tiers = TieredStorage(hot, storage, max_bytes=args.cache_size)
        if observe_tier is not None:
            tiers.observe(observe_tier)
    if key_file is not None:
        from ..storage.encrypted import EncryptedStorage, Keyring

        storage = EncryptedStorage(storage, Keyring.from_file(key_file))
    return storage


def inline_max_for(args: argparse.Namespace, storage: str) -> int:
    """The service's ``inline_max`` for the storage URL ``storage``: ``--inline-max``, or by
    default `EMBEDDED_INLINE_MAX` on local disk or in memory unless encrypting, else 0."""
    from .._inline import EMBEDDED_INLINE_MAX  # not for the client's commands

    asked: int | None = getattr(args, "inline_max", None)
    if asked is not None:
        return asked
    local = storage.startswith(("file:", "memory:"))
    return EMBEDDED_INLINE_MAX if local and not getattr(args, "encryption_key_file", None) else 0


def check_storage_flags(args: argparse.Namespace) -> None:
    """`ValueError` (or `ImportError`) now, at start-up, for flags `wrap_storage` would refuse,
    and for an ``--inline-max`` the service would."""
    inline = getattr(args, "inline_max", None)
    if inline is not None:
        from .._pending_upload import RECORD_AFTER

        if not 0 <= inline <= RECORD_AFTER:
            raise ValueError(f"--inline-max must be 0 to {RECORD_AFTER} bytes, not {inline}")
        if inline and getattr(args, "encryption_key_file", None) is not None:
            raise ValueError(
                "--inline-max would keep small files unencrypted in the metadata database: "
                "leave it out (or give 0) with --encryption-key-file"
            )
    if getattr(args, "cache_dir", None) is not None and args.cache_size < 1:
        raise ValueError(f"--cache-size must be a positive number of bytes: {args.cache_size}")
    if getattr(args, "encryption_key_file", None) is not None:
        from ..storage.encrypted import Keyring

        Keyring.from_file(args.encryption_key_file)


def describe_storage(args: argparse.Namespace) -> str:
    """What ``serve`` puts around its storage, for the start-up log (no key, only ids)."""
    parts = []
    if getattr(args, "encryption_key_file", None) is not None:
        parts.append(f"encrypted (key file {args.encryption_key_file})")
    if getattr(args, "cache_dir", None) is not None:
        parts.append(f"hot tier {args.cache_dir} of {args.cache_size} bytes")
    return ", ".join(parts)


def add_rewrap_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``storage rewrap`` to ``commands``."""
    storage = commands.add_parser("storage", help="maintain the storage of a server")
    actions = storage.add_subparsers(dest="storage_command", required=True)
    rewrap = actions.add_parser(
        "rewrap",
        help="wrap every file's data key under the newest master key",
        description="Wrap the data key of every stored file under the first key of the key "
        "file, rewriting only each file's small header (the content is neither re-encrypted "
        "nor copied). Run it after adding a key at the top of the file; once it reports no "
        "failure, the older keys may be removed.",
    )
    rewrap.add_argument(
        "--storage",
        default=os.environ.get("OPENAI_FILES_STORAGE"),
        help="storage URL, as for serve (OPENAI_FILES_STORAGE; default file://DATA_DIR/files)",
    )
    rewrap.add_argument(
        "--data-dir", default=os.environ.get("OPENAI_FILES_DATA_DIR", "./data"), help="as serve"
    )
    rewrap.add_argument(
        "--encryption-key-file",
        default=os.environ.get(KEY_FILE_VARIABLE) or None,
        metavar="PATH",
        help=f"the key file, newest key first ({KEY_FILE_VARIABLE})",
    )
    rewrap.add_argument(
        "--concurrency", type=int, default=16, metavar="N", help="headers rewritten at once"
    )


def run_rewrap(args: argparse.Namespace) -> int:
    """``storage rewrap``: 0 when every file is under the newest key, 1 when some failed
    (each named on stderr), 2 for settings that cannot be used."""
    try:
        if args.encryption_key_file is None:
            raise ValueError(f"give the key file: --encryption-key-file or {KEY_FILE_VARIABLE}")
        url = args.storage or (Path(args.data_dir).resolve() / "files").as_uri()
        from ..backends import open_storage
        from ..storage.base import ListableStorage
        from ..storage.encrypted import EncryptedStorage, Keyring

        keyring = Keyring.from_file(args.encryption_key_file)
        inner = open_storage(url)
    except (ValueError, ImportError) as exc:
        print(f"openai-files storage rewrap: error: {exc}", file=sys.stderr)
        return 2
    if not isinstance(inner, ListableStorage):
        print("openai-files storage rewrap: error: the storage cannot list files", file=sys.stderr)
        return 2
    storage = EncryptedStorage(inner, keyring)
    counts = anyio.run(_rewrap_all, storage, max(1, args.concurrency))
    print(
        f"rewrapped {counts['rewrapped']}, already under {keyring.current.key_id!r} "
        f"{counts['current']}, failed {counts['failed']}"
    )
    status = 1 if counts["failed"] else 0
    if url.startswith("s3:"):
        # After a write, obstore's runtime threads may crash the interpreter as it finalizes
        # (SIGABRT or SIGBUS, the work done and reported): end the process here instead.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status


async def _rewrap_all(storage: EncryptedStorage, concurrency: int) -> dict[str, int]:
    """Re-wrap every file of ``storage``, ``concurrency`` at a time, counting the outcomes."""
    counts = {"rewrapped": 0, "current": 0, "failed": 0}
    send, receive = anyio.create_memory_object_stream[str](concurrency)

    async def rewrap(keys: anyio.abc.ObjectReceiveStream[str]) -> None:
        async with keys:
            async for key in keys:
                try:
                    counts["rewrapped" if await storage.rewrap(key) else "current"] += 1
                except BlobNotFound:
                    pass  # deleted meanwhile, or content without a header: not a file
                except OpenAIFilesError as exc:
                    counts["failed"] += 1
                    print(f"failed: {key}: {exc}", file=sys.stderr)

    try:
        async with anyio.create_task_group() as group:
            for _ in range(concurrency):
                group.start_soon(rewrap, receive.clone())
            receive.close()
            async with send:
                async for key in storage.iter_keys(modified_before=math.inf):
                    await send.send(key)
    finally:
        await storage.aclose()
    return counts

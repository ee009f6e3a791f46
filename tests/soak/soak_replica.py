"""One replica of the soak (``soak.py``): the Files API under uvicorn, on S3 and PostgreSQL,
with faults injected at random into its backends.

Storage faults strike ``put``, ``get`` and ``delete`` with ``--fault-probability``; metadata
faults, if ``--metadata-fault-probability`` is set, strike any call of the metadata store.
Both draw from RNGs seeded with ``--seed``, so a failing run can be replayed. Every fault
surfaces as `BackendUnavailable` (HTTP 503 ``backend_unavailable``, "injected fault" in the
message).

Besides the API, ``GET /_soak/faults`` answers how many faults each backend injected so far,
by operation.
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Sequence

import uvicorn
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files import FilesService, Policy, SQLMetadataStore, api_key_auth, create_app
from openai_files.metadata.base import MetadataStore, Quota
from openai_files.storage.s3 import S3Storage
from openai_files.testing import FaultyMetadataStore, FaultyStorage, RandomFaults

FAULTS_PATH = "/_soak/faults"
STORAGE_FAULTS = ("put", "get", "delete")
METADATA_SEED_OFFSET = 1_000_003
"""Added to ``--seed`` for the metadata RNG, so the two backends do not fail in lockstep."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--storage", required=True, help="s3://bucket/prefix?endpoint=...")
    parser.add_argument("--metadata", required=True, help="SQLAlchemy URL of PostgreSQL")
    parser.add_argument("--table-prefix", required=True)
    parser.add_argument("--fault-probability", type=float, default=0.02)
    parser.add_argument("--metadata-fault-probability", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-files", type=int, default=None, help="quota: files per owner")
    parser.add_argument("--max-bytes", type=int, default=None, help="quota: bytes per owner")
    parser.add_argument(
        "--key",
        action="append",
        default=[],
        metavar="KEY=OWNER",
        help="an API key and the owner it stands for (repeat for more)",
    )
    parser.add_argument("--sweep-interval", type=float, default=5.0)
    parser.add_argument("--log-level", default="warning")
    return parser


def parse_keys(pairs: Sequence[str]) -> dict[str, str]:
    keys = {}
    for pair in pairs:
        key, sep, owner = pair.partition("=")
        if not sep or not key or not owner:
            raise SystemExit(f"--key takes KEY=OWNER, not {pair!r}")
        keys[key] = owner
    if not keys:
        raise SystemExit("give at least one --key")
    return keys


def build_service(options: argparse.Namespace) -> FilesService:
    storage = FaultyStorage(
        S3Storage.from_url(options.storage),
        random_faults=RandomFaults(
            options.fault_probability, random.Random(options.seed), operations=STORAGE_FAULTS
        ),
    )
    metadata: MetadataStore = SQLMetadataStore(options.metadata, table_prefix=options.table_prefix)
    if options.metadata_fault_probability > 0:
        rng = random.Random(options.seed + METADATA_SEED_OFFSET)
        metadata = FaultyMetadataStore(
            metadata, random_faults=RandomFaults(options.metadata_fault_probability, rng)
        )
    quota = Quota(max_files=options.max_files, max_bytes=options.max_bytes)
    return FilesService(storage, metadata, policy=Policy(quota=quota))


def fault_counts(service: FilesService) -> dict[str, dict[str, int]]:
    """The faults each backend injected so far, by operation."""
    counts = {}
    for name, backend in (("storage", service.storage), ("metadata", service.metadata)):
        injected = getattr(backend, "injected", None)
        counts[name] = dict(injected) if injected is not None else {}
    return counts


def with_fault_counts(app: ASGIApp, service: FilesService) -> ASGIApp:
    """``app``, also answering `FAULTS_PATH` with `fault_counts`."""

    async def serve(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == FAULTS_PATH:
            await JSONResponse(fault_counts(service))(scope, receive, send)
            return
        await app(scope, receive, send)

    return serve


def main(argv: Sequence[str] | None = None) -> int:
    options = build_parser().parse_args(argv)
    logging.basicConfig(level=options.log_level.upper(), format="%(levelname)s: %(message)s")
    service = build_service(options)
    app = create_app(
        service,
        auth=api_key_auth(parse_keys(options.key)),
        sweep_interval=options.sweep_interval or None,
        close_service=True,
    )
    uvicorn.run(
        with_fault_counts(app, service),
        host=options.host,
        port=options.port,
        log_level=options.log_level.lower(),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

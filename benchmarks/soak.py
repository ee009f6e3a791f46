"""Soak under faults: two replicas on S3 and PostgreSQL, 32 clients for a bounded time, faults
injected at random into the replicas' backends; then a check that nothing was lost, corrupted,
leaked or over quota.

Run on purpose, not by ``make test``::

    .venv/bin/python benchmarks/soak.py            # 180 seconds of load
    .venv/bin/python benchmarks/soak.py --quick    # 20 seconds

What runs: moto's S3 server on a free loopback port with a bucket, tables with a fresh prefix in
the PostgreSQL of ``--postgres-url`` (dropped at the end), and two replicas
(``soak_replica.py``) sharing both. Their storage fails ``put``, ``get`` and ``delete`` with
``--fault-probability``, their metadata store any call with ``--metadata-fault-probability``.
32 clients (``--clients``), each with its own API key (some owners have two keys, so two
clients race for one quota), send requests to either replica at random: uploads of 0 to 2 MiB
(a few of several MiB, which cross S3 parts), lists paged with small limits, whole and ranged
downloads checked against the bytes sent, deletes, uploads sent twice at once with one
``Idempotency-Key`` (one copy to each replica) and once more after, and files sent in parts
through the Uploads API.

Every response is classified: success; an expected client error (``quota_exceeded``, 404 when
retrying a delete that failed, an upload no longer pending after a step of it failed); an
injected fault (503 ``backend_unavailable`` naming an injected fault); anything else is a
failure. While the clients run, each owner's usage is read from the database every second and
held against the quota, and each replica's RSS is sampled.

Then the replicas stop and the library, without faults, cancels the uploads left pending and
sweeps (``sweep(stale_after=0)``, ``sweep_orphans(grace=0)``). It checks that every file a
client saw created and did not delete is listed once and reads back with its SHA-256; that a
file whose creation or deletion failed, if it is there, is intact and its owner's; that no S3
object lacks a record and no record its object, nothing is stuck half-way and no multipart
upload is left incomplete; and that each owner's usage equals what it stores. The JSON goes to
``benchmarks/results/soak-*.json`` with the replicas' logs beside it. Exit status: 1 if a
target is missed, 2 if a service is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import itertools
import json
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from harness import (
    BENCHMARKS_DIR,
    S3_CREDENTIALS,
    S3_REGION,
    MiB,
    Server,
    add_allocator_option,
    add_postgres_option,
    allocator,
    allocator_name,
    create_bucket,
    moto_server,
    open_descriptors,
    peak_rss_bytes,
    postgres_missing,
    postgres_tables,
    rss_bytes,
    s3_server_missing,
    s3_storage_url,
)
from report import RESULTS_DIR, Target, machine, print_table, target_rows
from soak_replica import FAULTS_PATH
from sqlalchemy import func, select

from openai_files import FilesService, Policy, SQLMetadataStore
from openai_files.errors import OpenAIFilesError
from openai_files.metadata.base import Quota
from openai_files.storage.s3 import S3Storage

DEFAULT_DURATION = 180.0
QUICK_DURATION = 20.0
REPLICAS = 2
BUCKET = "openai-files-soak"
PREFIX = "soak"
PART_SIZE = 5 * MiB
"""The replicas' S3 part size (S3's least): files above it go up as multipart uploads."""
SMALL_MAX = 2 * MiB
LARGE_MAX = 2 * PART_SIZE + MiB
UPLOAD_API_MAX = 3 * MiB
LIST_LIMIT_MAX = 7
MAX_PAGES = 200
SWEEP_INTERVAL = 5.0
DRAIN_SECONDS = 120.0
"""How long clients may take to finish their last request after the deadline."""
SAMPLE_SECONDS = 1.0
SETTLE_SECONDS = 7.0
"""How long after the load the replicas are left to close idle connections before their
descriptors are counted."""
MAX_LATE_GROWTH_MIB = 64
"""RSS a replica may gain from a third of the way through the load to its end."""
MAX_EXAMPLES = 100
PURPOSES = ("assistants", "user_data")
WEIGHTS = {
    "create": 30,
    "list_files": 8,
    "retrieve": 8,
    "content": 16,
    "read_range": 10,
    "delete": 16,
    "idempotent": 6,
    "upload": 4,
}
"""How often a client picks each operation (a method of `Client`)."""
READS = {"retrieve", "content", "read_range"}
TIMEOUT = httpx.Timeout(120.0, connect=10.0)
LIMITS = httpx.Limits(keepalive_expiry=2.0)
"""Idle connections are dropped well before uvicorn's 5-second keep-alive timeout: reusing
one just as the server closes it fails in transport, a race of the client's making."""

# How a response is classified.
OK = "ok"
INJECTED = "injected 503"
QUOTA = "quota_exceeded"
NOT_FOUND = "404"
NOT_PENDING = "400 upload not pending"
FAILED = "failure"
INJECTED_MARK = "injected fault"
ORPHANS = "objects without a record"


@dataclass(frozen=True)
class Expected:
    """A file as a client sent it: ``size`` bytes drawn from ``random.Random(seed)``."""

    owner: str
    filename: str
    size: int
    seed: int
    sha256: str
    purpose: str

    def content(self) -> bytes:
        return random.Random(self.seed).randbytes(self.size)


@dataclass(frozen=True)
class Reply:
    response: httpx.Response | None
    outcome: str

    def json(self) -> Any:
        assert self.response is not None
        return self.response.json()


@dataclass
class Tally:
    """Every request by kind and outcome, the expected client errors, and the failures."""

    requests: Counter[tuple[str, str]] = field(default_factory=Counter)
    expected: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def fail(self, category: str, detail: str) -> None:
        self.failures[category] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{category}: {detail}")

    def by_kind(self) -> dict[str, dict[str, int]]:
        kinds: dict[str, dict[str, int]] = {}
        for (kind, outcome), count in sorted(self.requests.items()):
            kinds.setdefault(kind, {})[outcome] = count
        return kinds

    def outcomes(self) -> Counter[str]:
        totals: Counter[str] = Counter()
        for (_, outcome), count in self.requests.items():
            totals[outcome] += count
        return totals


def classify(response: httpx.Response) -> str:
    status = response.status_code
    if status < 300:
        return OK
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    code, message = error.get("code"), str(error.get("message", ""))
    if status == 503 and code == "backend_unavailable" and INJECTED_MARK in message:
        return INJECTED
    if status == 400 and code == "quota_exceeded":
        return QUOTA
    if status == 404:
        return NOT_FOUND
    if status == 400 and error.get("param") == "upload_id":
        return NOT_PENDING
    return f"HTTP {status}"


class Client:
    """One API key's client: a loop of random operations on its own files, spread over the
    replicas, that remembers what it created and deleted and checks what it reads back."""

    def __init__(
        self,
        number: int,
        key: str,
        owner: str,
        replicas: Sequence[str],
        tally: Tally,
        sent: dict[str, Expected],
        seed: int,
    ) -> None:
        self.number, self.key, self.owner = number, key, owner
        self.replicas = list(replicas)
        self.tally = tally
        self.sent = sent  # shared by every client: each file sent, by filename
        self.rng = random.Random(seed)
        self.alive: dict[str, Expected] = {}  # created (200) and not deleted, by file id
        self.doubtful: dict[str, Expected] = {}  # a delete failed: gone or not
        self.deleted: dict[str, Expected] = {}
        self.uncertain: set[str] = set()  # filenames whose creation failed: there or not
        self.quota_hit = False
        self.sequence = 0
        self.operations = 0
        self.http = httpx.AsyncClient(
            headers={"authorization": f"Bearer {key}"}, timeout=TIMEOUT, limits=LIMITS
        )

    async def run(self, deadline: float, max_operations: int) -> None:
        loop = asyncio.get_running_loop()
        operations = {name: getattr(self, name) for name in WEIGHTS}
        names, weights = list(WEIGHTS), list(WEIGHTS.values())
        try:
            while self.operations < max_operations and loop.time() < deadline:
                name = self.rng.choices(names, weights)[0]
                if self.quota_hit and self.alive:  # make room, as a client over quota would
                    name = "delete"
                self.quota_hit = False
                if name in READS and not self.alive:
                    name = "create"
                await operations[name]()
                self.operations += 1
        finally:
            await self.http.aclose()

    # -- requests ------------------------------------------------------------------------------

    async def call(
        self,
        kind: str,
        method: str,
        path: str,
        *,
        allowed: Iterable[str] = (),
        replica: str | None = None,
        **kwargs: Any,
    ) -> Reply:
        """One request; a response outside ``ok``, injected 503s and ``allowed`` is a failure."""
        url = (replica or self.rng.choice(self.replicas)) + path
        try:
            response = await self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            self.tally.requests[kind, FAILED] += 1
            self.tally.fail("transport error", f"{kind} {method} {path}: {exc!r}")
            return Reply(None, FAILED)
        outcome = classify(response)
        if outcome in {OK, INJECTED, *allowed}:
            self.tally.requests[kind, outcome] += 1
            if outcome == QUOTA:
                self.tally.expected[QUOTA] += 1
                self.quota_hit = True
            return Reply(response, outcome)
        self.tally.requests[kind, FAILED] += 1
        category = "5xx other than injected" if response.status_code >= 500 else "wrong status"
        detail = f"{kind} {method} {path} -> {response.status_code} {response.text[:300]}"
        self.tally.fail(category, detail)
        return Reply(response, FAILED)

    def wrong(self, kind: str, detail: str) -> None:
        self.tally.fail("wrong body", f"{kind} (client {self.number}): {detail}")

    def lost(self, kind: str, file_id: str) -> None:
        """A file this client created, and did not delete, is not found."""
        self.tally.fail("file lost", f"{kind}: {file_id} of {self.owner} answered 404")
        self.uncertain.add(self.alive.pop(file_id).filename)

    # -- files ---------------------------------------------------------------------------------

    def new_file(self, size: int) -> tuple[Expected, bytes]:
        self.sequence += 1
        seed = self.rng.getrandbits(64)
        data = random.Random(seed).randbytes(size)
        expected = Expected(
            owner=self.owner,
            filename=f"soak-c{self.number:02d}-{self.sequence:06d}.bin",
            size=size,
            seed=seed,
            sha256=hashlib.sha256(data).hexdigest(),
            purpose=self.rng.choice(PURPOSES),
        )
        self.sent[expected.filename] = expected
        return expected, data

    def file_size(self) -> int:
        roll = self.rng.random()
        if roll < 0.05:
            return 0
        if roll < 0.10:
            return self.rng.randint(PART_SIZE + 1, LARGE_MAX)
        return self.rng.randint(1, SMALL_MAX)

    def checked_file(self, kind: str, body: Any, expected: Expected) -> str | None:
        """The id in a file object, if the object describes ``expected``."""
        if not isinstance(body, dict) or not str(body.get("id", "")).startswith("file-"):
            self.wrong(kind, f"not a file object: {str(body)[:300]}")
            return None
        wanted = {
            "object": "file",
            "bytes": expected.size,
            "filename": expected.filename,
            "purpose": expected.purpose,
            "status": "processed",
        }
        differing = {
            name: body.get(name) for name, value in wanted.items() if body.get(name) != value
        }
        if differing:
            self.wrong(kind, f"{body['id']} ({expected.filename}): {differing}")
            return None
        return str(body["id"])

    def settle_create(self, kind: str, expected: Expected, replies: Sequence[Reply]) -> None:
        """Remember what one or more requests creating ``expected`` did."""
        ids = set()
        doubt = False
        for reply in replies:
            if reply.outcome == OK:
                file_id = self.checked_file(kind, reply.json(), expected)
                doubt |= file_id is None
                ids |= {file_id} if file_id else set()
            doubt |= reply.outcome in {INJECTED, FAILED}
        if len(ids) > 1:
            self.tally.fail("idempotency", f"{expected.filename} created as {sorted(ids)}")
        for file_id in ids:
            self.alive[file_id] = expected
        if doubt and not ids:
            self.uncertain.add(expected.filename)

    @staticmethod
    def form(expected: Expected, data: bytes) -> dict[str, Any]:
        return {
            "files": {"file": (expected.filename, data, "application/octet-stream")},
            "data": {"purpose": expected.purpose},
        }

    # -- operations ----------------------------------------------------------------------------

    async def create(self) -> None:
        size = self.file_size()
        kind = "create large" if size > PART_SIZE else "create"
        expected, data = self.new_file(size)
        reply = await self.call(
            kind, "POST", "/v1/files", allowed={QUOTA}, **self.form(expected, data)
        )
        self.settle_create(kind, expected, [reply])

    async def idempotent(self) -> None:
        """The same upload twice at once (one to each replica) and once more after, with one
        ``Idempotency-Key``: every success must name the same file."""
        expected, data = self.new_file(self.rng.randint(0, SMALL_MAX))
        headers = {"idempotency-key": f"soak-{secrets.token_hex(8)}"}
        form = self.form(expected, data)
        pair = await asyncio.gather(
            *(
                self.call(
                    "idempotent create",
                    "POST",
                    "/v1/files",
                    allowed={QUOTA},
                    replica=replica,
                    headers=headers,
                    **form,
                )
                for replica in self.replicas[:2]
            )
        )
        again = await self.call(
            "idempotent retry", "POST", "/v1/files", allowed={QUOTA}, headers=headers, **form
        )
        self.settle_create("idempotent create", expected, [*pair, again])

    async def list_files(self) -> None:
        """Page through the owner's files with a small limit: no file twice, in order, and
        every file of this client's among them."""
        order = self.rng.choice(("asc", "desc"))
        limit = self.rng.randint(2, LIST_LIMIT_MAX)
        mine = dict(self.alive)
        seen: set[str] = set()
        after: str | None = None
        last_time = "" if order == "asc" else "~"
        for _ in range(MAX_PAGES):
            params = {"limit": limit, "order": order, **({"after": after} if after else {})}
            reply = await self.call("list", "GET", "/v1/files", params=params)
            if reply.outcome != OK:
                return
            page = reply.json()
            for item in page["data"]:
                file_id = item["id"]
                if file_id in seen:
                    self.tally.fail("list", f"{file_id} listed twice ({order}, limit {limit})")
                seen.add(file_id)
                created = file_id[5:14]  # the creation time, fixed-width base62: sorts as text
                if (created < last_time) if order == "asc" else (created > last_time):
                    self.tally.fail("list", f"{file_id} out of {order} order")
                last_time = created
                if file_id in mine:
                    self.checked_file("list", item, mine[file_id])
            if not page["has_more"]:
                break
            after = page["last_id"]
        else:
            self.tally.fail("list", f"no end after {MAX_PAGES} pages of {limit}")
            return
        for file_id in sorted(set(mine) - seen):
            self.tally.fail("list", f"{file_id} of {self.owner} missing from a full listing")

    async def retrieve(self) -> None:
        file_id, expected = self.rng.choice(list(self.alive.items()))
        reply = await self.call("retrieve", "GET", f"/v1/files/{file_id}", allowed={NOT_FOUND})
        if reply.outcome == NOT_FOUND:
            self.lost("retrieve", file_id)
        elif reply.outcome == OK:
            self.checked_file("retrieve", reply.json(), expected)

    async def content(self) -> None:
        file_id, expected = self.rng.choice(list(self.alive.items()))
        path = f"/v1/files/{file_id}/content"
        reply = await self.call("content", "GET", path, allowed={NOT_FOUND})
        if reply.outcome == NOT_FOUND:
            self.lost("content", file_id)
        if reply.outcome != OK or reply.response is None:
            return
        body = reply.response.content
        if hashlib.sha256(body).hexdigest() != expected.sha256 or len(body) != expected.size:
            self.tally.fail("checksum", f"{file_id}: {len(body)} bytes, not {expected.filename}")
        etag = reply.response.headers.get("etag")
        if etag != f'"{expected.sha256}"':
            self.wrong("content", f"{file_id}: ETag {etag}")

    async def read_range(self) -> None:
        choices = [(i, e) for i, e in self.alive.items() if e.size > 0]
        if not choices:
            return await self.create()
        file_id, expected = self.rng.choice(choices)
        size = expected.size
        if self.rng.random() < 0.2:  # a suffix: the last n bytes
            first, last = size - self.rng.randint(1, size), size - 1
            asked = f"bytes=-{size - first}"
        else:
            first = self.rng.randrange(size)
            last = self.rng.randint(first, size - 1)
            asked = f"bytes={first}-{last}"
        path = f"/v1/files/{file_id}/content"
        reply = await self.call("range", "GET", path, allowed={NOT_FOUND}, headers={"range": asked})
        if reply.outcome == NOT_FOUND:
            self.lost("range", file_id)
        if reply.outcome != OK or reply.response is None:
            return
        response = reply.response
        wanted = f"bytes {first}-{last}/{size}"
        if response.status_code != 206 or response.headers.get("content-range") != wanted:
            got = f"{response.status_code} {response.headers.get('content-range')}"
            self.wrong("range", f"{file_id} {asked}: {got}, wanted 206 {wanted}")
        elif response.content != expected.content()[first : last + 1]:
            self.tally.fail("checksum", f"{file_id} {asked}: wrong bytes")

    async def delete(self) -> None:
        retry = bool(self.doubtful) and (not self.alive or self.rng.random() < 0.5)
        pool = self.doubtful if retry else self.alive
        if not pool:
            return await self.create()
        file_id = self.rng.choice(list(pool))
        reply = await self.call("delete", "DELETE", f"/v1/files/{file_id}", allowed={NOT_FOUND})
        if reply.outcome == OK:
            body = reply.json()
            if body != {"id": file_id, "object": "file", "deleted": True}:
                self.wrong("delete", f"{file_id}: {body}")
            self.deleted[file_id] = pool.pop(file_id)
        elif reply.outcome == NOT_FOUND and retry:
            self.tally.expected["404 retrying a failed delete"] += 1
            self.deleted[file_id] = pool.pop(file_id)
        elif reply.outcome == NOT_FOUND:
            self.lost("delete", file_id)
        elif not retry:
            self.doubtful[file_id] = pool.pop(file_id)

    async def upload(self) -> None:
        """A file sent in two or three parts through the Uploads API, with or without md5."""
        expected, data = self.new_file(self.rng.randint(1, UPLOAD_API_MAX))
        created = await self.call(
            "upload create",
            "POST",
            "/v1/uploads",
            allowed={QUOTA},
            json={
                "filename": expected.filename,
                "purpose": expected.purpose,
                "bytes": expected.size,
                "mime_type": "application/octet-stream",
            },
        )
        if created.outcome != OK:
            return
        upload_id = str(created.json().get("id"))
        if not upload_id.startswith("upload_"):
            return self.wrong("upload create", f"not an upload: {created.json()}")
        cuts = sorted(self.rng.sample(range(1, expected.size), min(2, expected.size - 1)))
        bounds = [0, *cuts, expected.size]
        part_ids = []
        for start, end in itertools.pairwise(bounds):
            part = await self.add_part(upload_id, data[start:end])
            if part is None:
                return await self.cancel(upload_id, failed_step=True)
            part_ids.append(part)
        request: dict[str, Any] = {"part_ids": part_ids}
        if self.rng.random() < 0.5:
            request["md5"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        path = f"/v1/uploads/{upload_id}/complete"
        replies = []
        for attempt in range(2):
            allowed = {QUOTA, NOT_PENDING} if attempt else {QUOTA}
            reply = await self.call("upload complete", "POST", path, allowed=allowed, json=request)
            replies.append(reply)
            if reply.outcome == NOT_PENDING:
                self.tally.expected[NOT_PENDING] += 1
            if reply.outcome not in {INJECTED, FAILED}:
                break
        final = replies[-1]
        file_id = None
        if final.outcome == OK:
            upload = final.json()
            if upload.get("status") != "completed":
                self.wrong("upload complete", f"{upload_id}: {str(upload)[:300]}")
            file_id = self.checked_file("upload complete", upload.get("file"), expected)
        if file_id is not None:
            self.alive[file_id] = expected
        elif any(reply.outcome != QUOTA for reply in replies):
            self.uncertain.add(expected.filename)  # a failed completion may have made it
        if final.outcome == QUOTA:
            await self.cancel(upload_id, failed_step=False)
        elif final.outcome in {INJECTED, FAILED}:
            await self.cancel(upload_id, failed_step=True)

    async def add_part(self, upload_id: str, data: bytes) -> str | None:
        files = {"data": ("part", data, "application/octet-stream")}
        for _ in range(2):
            path = f"/v1/uploads/{upload_id}/parts"
            reply = await self.call("upload part", "POST", path, files=files)
            if reply.outcome == OK:
                return str(reply.json()["id"])
        return None

    async def cancel(self, upload_id: str, *, failed_step: bool) -> None:
        path = f"/v1/uploads/{upload_id}/cancel"
        allowed = {NOT_PENDING} if failed_step else set()
        reply = await self.call("upload cancel", "POST", path, allowed=allowed)
        if reply.outcome == NOT_PENDING:
            self.tally.expected[NOT_PENDING] += 1


# -- while the clients run ----------------------------------------------------------------------


@dataclass
class Watch:
    """Samples, every second, each owner's usage against the quota and each replica's RSS."""

    store: SQLMetadataStore
    quota: Quota
    pids: dict[str, int]
    samples: int = 0
    violations: list[str] = field(default_factory=list)
    highest: dict[str, tuple[int, int]] = field(default_factory=dict)
    rss: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    descriptors: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    """Each replica's open (files, sockets), at each sample."""

    async def run(self, stop: asyncio.Event, started: float) -> None:
        while not stop.is_set():
            await self.sample(time.monotonic() - started)
            with suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)

    async def sample(self, elapsed: float) -> None:
        for name, pid in self.pids.items():
            self.rss.setdefault(name, []).append((elapsed, rss_bytes(pid)))
            self.descriptors.setdefault(name, []).append(open_descriptors(pid))
        usage, files = self.store.tables.usage, self.store.tables.files
        counted = (
            select(files.c.owner, func.count(), func.coalesce(func.sum(files.c.bytes), 0))
            .where(files.c.state.in_(("pending", "active")))
            .group_by(files.c.owner)
        )
        async with self.store.engine.connect() as connection:
            rows = [("usage row", *row) for row in (await connection.execute(select(usage)))]
            rows += [("records", *row) for row in (await connection.execute(counted))]
        self.samples += 1
        for source, owner, count, size in rows:
            if not self.quota.allows(int(count), int(size)):
                self.violations.append(f"{elapsed:.0f}s {owner} {source}: {count} files, {size} B")
            files_seen, bytes_seen = self.highest.get(owner, (0, 0))
            self.highest[owner] = (max(files_seen, int(count)), max(bytes_seen, int(size)))


# -- after the load: the library, without faults ------------------------------------------------


@dataclass
class Findings:
    """What the check after the load found."""

    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    sweep: dict[str, int] = field(default_factory=dict)
    before_orphan_sweep: dict[str, int] = field(default_factory=dict)
    after_orphan_sweep: dict[str, int] = field(default_factory=dict)
    orphans_removed: int = 0

    @property
    def leaked(self) -> int:
        """What the service's own sweep left behind: objects no record knows, records that
        point to nothing, records and uploads stuck half-way, incomplete multipart uploads."""
        return sum(self.before_orphan_sweep.values())

    @property
    def recorded_objects_removed(self) -> int:
        """Objects that ``sweep_orphans`` removed although a record knew them."""
        return self.orphans_removed - self.before_orphan_sweep.get(ORPHANS, 0)

    def add(self, category: str, detail: str) -> None:
        self.counts[category] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{category}: {detail}")


async def verify(
    service: FilesService, clients: Sequence[Client], s3: Any, sent: dict[str, Expected]
) -> Findings:
    findings = Findings()
    metadata = service.metadata
    assert isinstance(metadata, SQLMetadataStore)
    for upload_id, owner in await _pending_uploads(metadata):
        await service.uploads.cancel(owner, upload_id)
        findings.counts["uploads left pending, cancelled"] += 1
    await asyncio.sleep(1.1)  # the sweep takes what changed before the current second
    findings.sweep = vars(await service.sweep(stale_after=0))
    findings.before_orphan_sweep = await _accounting(metadata, s3, findings, "before sweep_orphans")
    findings.orphans_removed = await service.sweep_orphans(grace=0)
    findings.after_orphan_sweep = await _accounting(metadata, s3, findings, "after sweep_orphans")
    by_owner: dict[str, list[Client]] = {}
    for client in clients:
        by_owner.setdefault(client.owner, []).append(client)
    for owner, owned in sorted(by_owner.items()):
        await _check_owner(service, owner, owned, sent, findings)
    await _check_usage(metadata, service.policy.quota, findings)
    return findings


async def _pending_uploads(metadata: SQLMetadataStore) -> list[tuple[str, str]]:
    uploads = metadata.tables.uploads
    query = select(uploads.c.id, uploads.c.owner).where(uploads.c.state == "pending")
    async with metadata.engine.connect() as connection:
        return [(row.id, row.owner) for row in (await connection.execute(query)).all()]


async def _listing(service: FilesService, owner: str, order: str, findings: Findings) -> list[Any]:
    files: list[Any] = []
    after = None
    for _ in range(MAX_PAGES):
        page = await service.list(owner, limit=LIST_LIMIT_MAX, order=order, after=after)
        files += page.data
        if not page.has_more:
            return files
        after = page.last_id
    findings.add("listing", f"{owner}: no end after {MAX_PAGES} pages")
    return files


async def _check_owner(
    service: FilesService,
    owner: str,
    clients: Sequence[Client],
    sent: dict[str, Expected],
    findings: Findings,
) -> None:
    """Every file of ``owner`` the clients know alive is listed once, and every listed file is
    one a client sent, may exist and reads back intact."""
    listed = await _listing(service, owner, "asc", findings)
    backwards = await _listing(service, owner, "desc", findings)
    ids = [file.id for file in listed]
    if len(set(ids)) != len(ids) or ids != [file.id for file in reversed(backwards)]:
        findings.add("listing", f"{owner}: pages repeat or disagree between asc and desc")
    alive = {i: e for client in clients for i, e in client.alive.items()}
    doubtful = {i for client in clients for i in client.doubtful}
    deleted = {i for client in clients for i in client.deleted}
    uncertain = {name for client in clients for name in client.uncertain}
    first_of: dict[str, str] = {}
    quota = service.policy.quota
    findings.counts["files listed at the end"] += len(listed)
    if quota is not None and not quota.allows(len(listed), sum(f.bytes for f in listed)):
        findings.add("quota exceeded at the end", f"{owner}: {len(listed)} files")
    for file in listed:
        expected = sent.get(file.filename)
        if expected is None or expected.owner != owner:
            findings.add("unexpected file", f"{file.id} {file.filename!r} listed for {owner}")
            continue
        if file.filename in first_of:
            detail = f"{file.id} and {first_of[file.filename]}, both {file.filename} of {owner}"
            findings.add("duplicate file", detail)
        first_of.setdefault(file.filename, file.id)
        if file.id in deleted:
            findings.add("deleted file back", f"{file.id} {file.filename} of {owner}")
        elif file.id in alive:
            findings.counts["files alive, found"] += 1
        elif file.id in doubtful or file.filename in uncertain:
            findings.counts["files of failed requests, found intact"] += 1
        else:
            findings.add("unexpected file", f"{file.id} {file.filename}: no client saw it made")
        await _check_content(service, owner, file.id, expected, findings)
    for file_id in sorted(set(alive) - set(ids)):
        findings.add("file lost", f"{file_id} {alive[file_id].filename} of {owner}")


async def _check_content(
    service: FilesService, owner: str, file_id: str, expected: Expected, findings: Findings
) -> None:
    try:
        content = await service.content(owner, file_id)
    except OpenAIFilesError as exc:
        findings.add("file lost", f"{file_id} {expected.filename}: {exc!r}")
        return
    digest, size = hashlib.sha256(), 0
    async for chunk in content.chunks:
        digest.update(chunk)
        size += len(chunk)
    if digest.hexdigest() != expected.sha256 or size != expected.size:
        findings.add("file corrupted", f"{file_id} {expected.filename}: {size} bytes read")


async def _check_usage(metadata: SQLMetadataStore, quota: Quota | None, findings: Findings) -> None:
    """Each owner's usage row equals the files and bytes of its records that count."""
    usage, files = metadata.tables.usage, metadata.tables.files
    counted = (
        select(files.c.owner, func.count(), func.coalesce(func.sum(files.c.bytes), 0))
        .where(files.c.state.in_(("pending", "active")))
        .group_by(files.c.owner)
    )
    async with metadata.engine.connect() as connection:
        rows = {row[0]: (row[1], row[2]) for row in (await connection.execute(select(usage)))}
        records = {row[0]: (row[1], int(row[2])) for row in (await connection.execute(counted))}
    for owner in sorted(set(rows) | set(records)):
        if rows.get(owner, (0, 0)) != records.get(owner, (0, 0)):
            detail = f"{owner}: usage {rows.get(owner)}, records {records.get(owner)}"
            findings.add("usage drift", detail)
        if quota is not None and not quota.allows(*rows.get(owner, (0, 0))):
            findings.add("quota exceeded at the end", f"{owner}: usage {rows.get(owner)}")


async def _accounting(
    metadata: SQLMetadataStore, s3: Any, findings: Findings, stage: str
) -> dict[str, int]:
    """Objects against records: what is stored with nothing to know it, and the reverse;
    records and uploads stuck half-way; incomplete multipart uploads. A few of each go to the
    examples, marked with ``stage``."""
    tables = metadata.tables
    async with metadata.engine.connect() as connection:
        files = (await connection.execute(select(tables.files))).all()
        parts = (await connection.execute(select(tables.parts))).all()
        uploads = (await connection.execute(select(tables.uploads))).all()
    objects = _objects(s3)
    known = {row.storage_key for row in files} | {row.storage_key for row in parts}
    upload_state = {row.id: row.state for row in uploads}
    multipart = s3.list_multipart_uploads(Bucket=BUCKET, Prefix=f"{PREFIX}/")
    found = {
        ORPHANS: sorted(objects - known),
        "file records without an object": [
            f"{row.id} ({row.state})" for row in files if row.storage_key not in objects
        ],
        "part records without an object": [
            f"{row.id} of {row.upload_id}" for row in parts if row.storage_key not in objects
        ],
        "file records stuck pending or deleting": [
            f"{row.id} ({row.state})" for row in files if row.state in {"pending", "deleting"}
        ],
        "uploads stuck completing": [row.id for row in uploads if row.state == "completing"],
        "parts of finished uploads left": [
            f"{row.id} of {row.upload_id} ({upload_state.get(row.upload_id)})"
            for row in parts
            if upload_state.get(row.upload_id) != "pending"
        ],
        "incomplete multipart uploads": [item["Key"] for item in multipart.get("Uploads", [])],
    }
    for name, items in found.items():
        findings.examples += [f"{name} ({stage}): {item}" for item in items[:10]]
    return {name: len(items) for name, items in found.items()}


def _objects(s3: Any) -> set[str]:
    keys = set()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=f"{PREFIX}/"):
        keys |= {item["Key"].removeprefix(f"{PREFIX}/") for item in page.get("Contents", [])}
    return keys


# -- the run ------------------------------------------------------------------------------------


@dataclass
class Soak:
    """One run: what the clients saw, what the replicas injected, what the check found."""

    options: argparse.Namespace
    stamp: datetime
    tally: Tally
    clients: list[Client]
    sent: dict[str, Expected]
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    elapsed: float = 0.0
    watch: Watch | None = None
    faults: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)
    memory: dict[str, dict[str, float]] = field(default_factory=dict)
    leaks: dict[str, dict[str, int]] = field(default_factory=dict)
    """Each replica's open files and sockets as the load began and once it had ended and its
    connections closed, and the temporary files it left."""
    findings: Findings = field(default_factory=Findings)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--duration", type=float, default=DEFAULT_DURATION, help="seconds (180)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_DURATION:.0f} seconds")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--owners", type=int, default=20, help="fewer than clients: shared (20)")
    parser.add_argument("--fault-probability", type=float, default=0.02, help="storage (0.02)")
    parser.add_argument(
        "--metadata-fault-probability", type=float, default=0.005, help="metadata (0.005)"
    )
    parser.add_argument("--max-files", type=int, default=16, help="quota per owner (16)")
    parser.add_argument("--max-bytes", type=int, default=24 * MiB, help="quota (24 MiB)")
    parser.add_argument("--max-operations", type=int, default=100_000, help="per client")
    parser.add_argument("--seed", type=int, default=1)
    add_postgres_option(parser)
    add_allocator_option(parser)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    options = build_parser().parse_args(argv)
    if options.quick:
        options.duration = QUICK_DURATION
    return options


def replica(
    number: int,
    options: argparse.Namespace,
    storage_url: str,
    table_prefix: str,
    keys: dict[str, str],
    logs: Path,
) -> Server:
    """``soak_replica.py`` on a free port, its faults seeded from ``--seed`` and ``number``."""
    argv = [sys.executable, str(BENCHMARKS_DIR / "soak_replica.py"), "--port", "{port}"]
    argv += ["--storage", storage_url, "--metadata", options.postgres_url]
    argv += ["--table-prefix", table_prefix, "--seed", str(options.seed * 100 + number)]
    argv += ["--fault-probability", str(options.fault_probability)]
    argv += ["--metadata-fault-probability", str(options.metadata_fault_probability)]
    argv += ["--max-files", str(options.max_files), "--max-bytes", str(options.max_bytes)]
    argv += ["--sweep-interval", str(SWEEP_INTERVAL)]
    for key, owner in keys.items():
        argv += ["--key", f"{key}={owner}"]
    temp = logs / f"replica-{number}-tmp"  # empty: what is in it at the end was left behind
    temp.mkdir()
    env = {**allocator(options), **S3_CREDENTIALS, "TMPDIR": str(temp)}
    return Server(f"replica-{number}", argv, log=logs / f"replica-{number}.log", env=env)


def make_clients(soak: Soak) -> dict[str, str]:
    """The clients, each with its own API key; the owner of each key."""
    options, keys = soak.options, {}
    for number in range(options.clients):
        owner = f"owner-{number % options.owners:02d}"
        key = f"sk-soak-{number:02d}-{secrets.token_hex(8)}"
        keys[key] = owner
        seed = options.seed * 1000 + number
        soak.clients.append(Client(number, key, owner, [], soak.tally, soak.sent, seed))
    return keys


async def load(soak: Soak, table_prefix: str, servers: Sequence[Server]) -> None:
    """Warm the replicas up, then run the clients until the deadline and their last requests,
    sampling quotas and memory all along."""
    options, clients = soak.options, soak.clients
    for server in servers:
        await clients[0].call("warm-up", "GET", "/v1/files", replica=server.url)
    store = SQLMetadataStore(options.postgres_url, table_prefix=table_prefix)
    quota = Quota(max_files=options.max_files, max_bytes=options.max_bytes)
    soak.watch = watch = Watch(store, quota, {server.name: server.pid for server in servers})
    started = time.monotonic()
    stop = asyncio.Event()
    try:
        await watch.sample(0.0)
        watcher = asyncio.create_task(watch.run(stop, started))
        deadline = asyncio.get_running_loop().time() + options.duration
        runs = asyncio.gather(*(c.run(deadline, options.max_operations) for c in clients))
        try:
            await asyncio.wait_for(runs, options.duration + DRAIN_SECONDS)
        except TimeoutError:
            soak.tally.fail("clients hung", f"running {DRAIN_SECONDS:.0f} s after the deadline")
        stop.set()
        await watcher
        soak.elapsed = time.monotonic() - started
        await watch.sample(soak.elapsed)
    finally:
        await store.aclose()


def memory(watch: Watch, servers: Sequence[Server], elapsed: float) -> dict[str, dict[str, float]]:
    """Each replica's RSS when the load began, a third of the way through, at its end, and
    its highest since the replica started (VmHWM), in MiB."""
    figures = {}
    for server in servers:
        series = watch.rss[server.name]
        third = next(rss for t, rss in series if t >= elapsed / 3 or t == series[-1][0])
        peak = max(peak_rss_bytes(server.pid), *(rss for _, rss in series))
        figures[server.name] = {
            "start": series[0][1] / MiB,
            "third": third / MiB,
            "end": series[-1][1] / MiB,
            "peak": peak / MiB,
        }
    return figures


def leaks(watch: Watch, servers: Sequence[Server], scratch: Path) -> dict[str, dict[str, int]]:
    """Each replica's open files and sockets when the load began and after it, once the
    clients' connections have closed (uvicorn lets an idle one go after 5 s), and the files
    left in its temporary directory."""
    time.sleep(SETTLE_SECONDS)
    found = {}
    for server in servers:
        files, sockets = open_descriptors(server.pid)
        start_files, start_sockets = watch.descriptors[server.name][0]
        temp = scratch / f"{server.name}-tmp"
        found[server.name] = {
            "files at start": start_files,
            "files at end": files,
            "sockets at start": start_sockets,
            "sockets at end": sockets,
            "temporary files": sum(1 for path in temp.rglob("*") if path.is_file()),
        }
    return found


def s3_client(endpoint: str) -> Any:
    import boto3  # type: ignore[import-untyped]  # a dev dependency, as moto

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=S3_REGION,
        aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )


async def check_after(soak: Soak, endpoint: str, table_prefix: str) -> None:
    """The check after the load, through the library on the same S3 and tables, no faults."""
    options = soak.options
    quota = Quota(max_files=options.max_files, max_bytes=options.max_bytes)
    storage = S3Storage(
        BUCKET,
        prefix=PREFIX,
        endpoint=endpoint,
        region=S3_REGION,
        access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        allow_http=True,
    )
    service = FilesService(
        storage,
        SQLMetadataStore(options.postgres_url, table_prefix=table_prefix),
        policy=Policy(quota=quota),
    )
    async with service:
        soak.findings = await verify(service, soak.clients, s3_client(endpoint), soak.sent)


async def prepare_schema(url: str, table_prefix: str) -> None:
    """Create the tables once, before the replicas race to."""
    store = SQLMetadataStore(url, table_prefix=table_prefix)
    try:
        await store.create_schema()
    finally:
        await store.aclose()


def run(options: argparse.Namespace) -> Soak:
    soak = Soak(options, datetime.now(UTC), Tally(), [], {}, os.getloadavg())
    with tempfile.TemporaryDirectory(prefix="openai-files-soak-") as temp, ExitStack() as stack:
        scratch = Path(temp)
        moto = stack.enter_context(moto_server(scratch / "moto"))
        create_bucket(moto.url, BUCKET)
        table_prefix = stack.enter_context(postgres_tables(options.postgres_url, "soak"))
        asyncio.run(prepare_schema(options.postgres_url, table_prefix))
        storage_url = s3_storage_url(moto.url, BUCKET, PREFIX) + f"&part_size={PART_SIZE}"
        keys = make_clients(soak)
        servers = [
            stack.enter_context(replica(n, options, storage_url, table_prefix, keys, scratch))
            for n in range(1, REPLICAS + 1)
        ]
        for client in soak.clients:
            client.replicas = [server.url for server in servers]
        try:
            asyncio.run(load(soak, table_prefix, servers))
            soak.load_after = os.getloadavg()
            soak.faults = {server.name: fault_counts(server) for server in servers}
            assert soak.watch is not None
            soak.memory = memory(soak.watch, servers, soak.elapsed)
            soak.leaks = leaks(soak.watch, servers, scratch)
            for server in servers:  # before the check: no sweeper of theirs runs meanwhile
                server.__exit__(None, None, None)
            asyncio.run(check_after(soak, moto.url, table_prefix))
        finally:
            for server in servers:
                keep_log(soak, server)
    return soak


def fault_counts(server: Server) -> dict[str, dict[str, int]]:
    answer: dict[str, dict[str, int]] = httpx.get(server.url + FAULTS_PATH).json()
    return answer


def keep_log(soak: Soak, server: Server) -> None:
    RESULTS_DIR.mkdir(exist_ok=True)
    if server.log.exists():
        shutil.copyfile(server.log, RESULTS_DIR / f"{result_name(soak)}-{server.name}.log")


def result_name(soak: Soak) -> str:
    return f"soak-{soak.stamp:%Y%m%d-%H%M%S}{'-quick' if soak.options.quick else ''}"


# -- the results --------------------------------------------------------------------------------


def figures(soak: Soak) -> dict[str, int]:
    """The headline counts: what ran, what was injected, what went wrong."""
    failures, findings = soak.tally.failures, soak.findings
    counts, watch = findings.counts, soak.watch
    outcomes = soak.tally.outcomes()
    named = ("5xx other than injected", "transport error", "idempotency", "file lost", "checksum")
    return {
        "requests": sum(outcomes.values()),
        "faults injected by the replicas": sum(
            sum(ops.values()) for backends in soak.faults.values() for ops in backends.values()
        ),
        "injected 503s seen by clients": outcomes[INJECTED],
        "expected client errors": sum(soak.tally.expected.values()),
        "5xx other than injected 503s": failures["5xx other than injected"],
        "requests failed in transport": failures["transport error"],
        "idempotent uploads answered with two files": failures["idempotency"],
        "other failed requests": sum(failures.values()) - sum(failures[name] for name in named),
        "files lost": failures["file lost"] + counts["file lost"],
        "files corrupted": failures["checksum"] + counts["file corrupted"],
        "unexpected or duplicate files": counts["unexpected file"]
        + counts["duplicate file"]
        + counts["deleted file back"]
        + counts["listing"],
        "quota violations": len(watch.violations if watch else [])
        + counts["quota exceeded at the end"],
        "usage drift": counts["usage drift"],
        "leaked objects and records": findings.leaked,
        "recorded objects removed by sweep_orphans": findings.recorded_objects_removed,
        "open files leaked by the replicas": sum(
            max(0, leak["files at end"] - leak["files at start"]) for leak in soak.leaks.values()
        ),
        "temporary files left by the replicas": sum(
            leak["temporary files"] for leak in soak.leaks.values()
        ),
    }


INFORMATIONAL = (
    "requests",
    "faults injected by the replicas",
    "injected 503s seen by clients",
    "expected client errors",
)
"""The headline figures that are no failure; each of the others has the target 0."""


def targets(soak: Soak) -> list[Target]:
    """At least one injected fault seen (else the run proved nothing); none of the failures;
    each replica's RSS levelling off after the first third of the load."""
    headline = figures(soak)
    seen = "injected 503s seen by clients"
    found = [Target(seen, headline[seen], 1, "", at_least=True)]
    found += [
        Target(name, value, 0, "", at_least=False)
        for name, value in headline.items()
        if name not in INFORMATIONAL
    ]
    for name, rss in soak.memory.items():
        growth = rss["end"] - rss["third"]
        found.append(
            Target(f"{name} RSS growth after 1/3", growth, MAX_LATE_GROWTH_MIB, " MiB", False)
        )
    return found


def print_summary(soak: Soak, found: Sequence[Target]) -> None:
    options = soak.options
    print(
        f"\n== soak: {soak.elapsed:.0f} s of load, {options.clients} clients, "
        f"{options.owners} owners, storage faults p={options.fault_probability}, "
        f"metadata faults p={options.metadata_fault_probability}, seed {options.seed}"
    )
    print(f"load average before {_load(soak.load_before)}, after {_load(soak.load_after)}\n")
    by_kind = soak.tally.by_kind()
    columns = sorted({outcome for outcomes in by_kind.values() for outcome in outcomes})
    rows = [[kind, *(str(o.get(c, "")) for c in columns)] for kind, o in by_kind.items()]
    print_table(["requests", *columns], rows)
    print()
    rows = [
        [section, name, str(count)]
        for section, counts in (
            ("expected client error", soak.tally.expected),
            ("failure during the load", soak.tally.failures),
            ("check after the load", soak.findings.counts),
            ("before sweep_orphans", soak.findings.before_orphan_sweep),
            ("after sweep_orphans", soak.findings.after_orphan_sweep),
            ("removed by sweep_orphans", {"objects": soak.findings.orphans_removed}),
        )
        for name, count in sorted(counts.items())
    ]
    print_table(["", "", "count"], rows)
    print()
    rows = [
        [
            name,
            f"{rss['start']:.0f}",
            f"{rss['third']:.0f}",
            f"{rss['end']:.0f}",
            f"{rss['peak']:.0f}",
        ]
        for name, rss in soak.memory.items()
    ]
    print_table(["RSS (MiB)", "start", "1/3", "end", "peak"], rows)
    print()
    columns = ["files at start", "files at end", "sockets at start", "sockets at end"]
    columns.append("temporary files")
    rows = [[name, *(str(leak[c]) for c in columns)] for name, leak in soak.leaks.items()]
    print_table(["open descriptors", *columns], rows)
    for name, backends in soak.faults.items():
        print(f"{name} injected: {json.dumps(backends, sort_keys=True)}")
    print()
    print_table(["target", "measured", "bound", ""], target_rows(found))
    examples = soak.tally.examples + soak.findings.examples
    if examples:
        print("\nexamples:\n  " + "\n  ".join(examples[:20]))


def _load(average: Sequence[float]) -> str:
    return " ".join(f"{value:.2f}" for value in average)


def save(soak: Soak, found: Sequence[Target]) -> Path:
    options, watch = soak.options, soak.watch
    document = {
        "benchmark": "soak",
        "date": soak.stamp.isoformat(timespec="seconds"),
        "quick": options.quick,
        "duration_s": options.duration,
        "elapsed_s": round(soak.elapsed, 1),
        "settings": {
            "clients": options.clients,
            "owners": options.owners,
            "replicas": REPLICAS,
            "storage_fault_probability": options.fault_probability,
            "metadata_fault_probability": options.metadata_fault_probability,
            "quota": {"max_files": options.max_files, "max_bytes": options.max_bytes},
            "s3_part_size": PART_SIZE,
            "seed": options.seed,
            "malloc": allocator_name(options),
        },
        "machine": machine(),
        "load_average": {"before": soak.load_before, "after": soak.load_after},
        "figures": figures(soak),
        "operations": soak.tally.by_kind(),
        "faults_injected": soak.faults,
        "expected_client_errors": dict(soak.tally.expected),
        "failures": dict(soak.tally.failures),
        "failure_examples": soak.tally.examples,
        "quota": {
            "samples": watch.samples if watch else 0,
            "violations": (watch.violations if watch else [])[:MAX_EXAMPLES],
            "highest": {
                owner: {"files": files, "bytes": size}
                for owner, (files, size) in sorted((watch.highest if watch else {}).items())
            },
        },
        "check_after_load": {
            "counts": dict(soak.findings.counts),
            "sweep": soak.findings.sweep,
            "before_orphan_sweep": soak.findings.before_orphan_sweep,
            "removed_by_sweep_orphans": soak.findings.orphans_removed,
            "after_orphan_sweep": soak.findings.after_orphan_sweep,
            "examples": soak.findings.examples,
        },
        "memory_mib": soak.memory,
        "descriptors_and_temporary_files": soak.leaks,
        "targets": [{**asdict(target), "passed": target.passed} for target in found],
        "passed": all(target.passed for target in found),
    }
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"{result_name(soak)}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    return path


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    missing = s3_server_missing() or postgres_missing(options.postgres_url)
    if missing is not None:
        print(f"soak: cannot run: {missing}")
        return 2
    soak = run(options)
    found = targets(soak)
    print_summary(soak, found)
    print(f"\nresults: {save(soak, found)}")
    return 0 if all(target.passed for target in found) else 1


if __name__ == "__main__":
    sys.exit(main())

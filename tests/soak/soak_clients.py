"""The soak's clients (`soak.py`): each sends a random mix of requests to either replica and
keeps what it was told, and every response is classified (a success, an expected client error,
an injected fault, or a failure) and counted in a `Tally`."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import random
import secrets
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

MiB = 1024 * 1024
PART_SIZE = 5 * MiB
"""The replicas' S3 part size (S3's least): files above it go up as multipart uploads."""
SMALL_MAX = 2 * MiB
LARGE_MAX = 2 * PART_SIZE + MiB
UPLOAD_API_MAX = 3 * MiB
LIST_LIMIT_MAX = 7
MAX_PAGES = 200
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

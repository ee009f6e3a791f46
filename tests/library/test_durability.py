"""Durable by default: when a create answers 200, its bytes and its record are on the device.

A local blob is flushed (``fsync``) before it is renamed into place, its directory (and the
parent of each directory the put created) after, all before the record commits; SQLite commits
with ``synchronous=FULL``. The ordering is observed over HTTP by recording ``os.fsync`` and
``os.replace`` calls and the commits of a recording `FaultyMetadataStore`. ``--no-fsync`` (and
``LocalStorage(fsync=False)``, ``?synchronous=normal``) turns every flush off.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from openai_files import FilesService, LocalStorage, SQLMetadataStore, create_app, open_embedded
from openai_files._pending_upload import RECORD_AFTER
from openai_files.backends import open_metadata, open_service, open_storage
from openai_files.cli import build_parser
from openai_files.cli._serve_options import server_settings
from openai_files.metadata.base import (
    FileRecord,
    MetadataStore,
    PartOutcome,
    PartRecord,
    Quota,
)
from openai_files.storage.local import FLUSH_STEP
from openai_files.testing.faults import FaultyMetadataStore

from ..support import serve

Event = tuple[str, str]
"""``("fsync", path)``, ``("fdatasync", path)``, ``("rename", target)``, ``("commit", storage
key)`` or ``("add_part", storage key)``, in the order they happened."""


class Recorder:
    """Records, from every thread, the flushes and renames of files and the record commits."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self._lock = threading.Lock()

    def add(self, kind: str, what: str) -> None:
        with self._lock:
            self.events.append((kind, what))

    def index(self, event: Event) -> int:
        return self.events.index(event)

    def fsyncs(self) -> list[str]:
        return [what for kind, what in self.events if kind in {"fsync", "fdatasync"}]


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """``os.fsync`` and ``os.replace`` recorded (and still carried out)."""
    recorder = Recorder()
    real_fsync, real_fdatasync, real_replace = os.fsync, os.fdatasync, os.replace

    def fsync(descriptor: int) -> None:
        recorder.add("fsync", os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fsync(descriptor)

    def fdatasync(descriptor: int) -> None:
        recorder.add("fdatasync", os.readlink(f"/proc/self/fd/{descriptor}"))
        real_fdatasync(descriptor)

    def replace(source: str | os.PathLike[str], target: str | os.PathLike[str]) -> None:
        real_replace(source, target)
        recorder.add("rename", os.fspath(target))

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "fdatasync", fdatasync)
    monkeypatch.setattr(os, "replace", replace)
    return recorder


class RecordingMetadata(FaultyMetadataStore):
    """The fault-injection wrapper, with no fault switched on, recording each commit of a file
    record (a pending record's commit, or the insert of an ``active`` one: a small file
    recorded in one step) and of an Uploads API part when it has taken effect."""

    def __init__(self, inner: MetadataStore, recorder: Recorder) -> None:
        super().__init__(inner)
        self.recorder = recorder

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        created = await super().insert(
            record, quota=quota, idempotency_key=idempotency_key, key_since=key_since
        )
        if record.state == "active":
            self.recorder.add("commit", record.storage_key)
        return created

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        created = await super().commit(record, idempotency_key=idempotency_key, key_since=key_since)
        self.recorder.add("commit", record.storage_key)
        return created

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        outcome = await super().add_part(part, reserved=reserved, max_parts=max_parts)
        self.recorder.add("add_part", part.storage_key)
        return outcome


@pytest.fixture
def durable_server(tmp_path: Path, sqlite_url: str, recorder: Recorder) -> Iterator[httpx.Client]:
    """A server over the default stores (local disk, SQLite) with recorded commits."""
    metadata = RecordingMetadata(SQLMetadataStore(sqlite_url), recorder)
    service = FilesService(LocalStorage(tmp_path / "files"), metadata)
    app = create_app(service, close_service=True)
    with serve(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        yield http


def storage_key_of(recorder: Recorder) -> str:
    commits = [what for kind, what in recorder.events if kind == "commit"]
    assert len(commits) == 1, recorder.events
    return commits[0]


def assert_flushed_before(
    recorder: Recorder, path: Path, commit: Event, *, written_as: str | None = None
) -> None:
    """The blob at ``path`` was flushed (under the hidden name it was written as, by default
    a put's temporary file), then renamed into place, then its directory flushed, in that
    order, all before ``commit``."""
    renamed = recorder.index(("rename", str(path)))
    committed = recorder.index(commit)
    prefix = written_as or f".{path.name}."
    flushed = [
        n
        for n, (kind, what) in enumerate(recorder.events)
        if kind == "fsync" and Path(what).name.startswith(prefix)
    ]
    assert flushed, recorder.events
    assert flushed[-1] < renamed, recorder.events
    assert ("fsync", str(path.parent)) in recorder.events[renamed:committed], recorder.events


@pytest.mark.parametrize(
    "size",
    [900, RECORD_AFTER + 900],
    ids=["small, recorded in one step", "larger, streamed with a pending record"],
)
def test_a_created_file_is_flushed_renamed_and_its_directories_flushed_before_it_commits(
    durable_server: httpx.Client, recorder: Recorder, tmp_path: Path, size: int
) -> None:
    data = b'{"a": 1}\n' * (size // 9)
    response = durable_server.post(
        "/v1/files", files={"file": ("a.jsonl", data)}, data={"purpose": "user_data"}
    )
    assert response.status_code == 200, response.text
    root = (tmp_path / "files").resolve()
    key = storage_key_of(recorder)
    path = root / key
    assert path.read_bytes() == data
    assert_flushed_before(recorder, path, ("commit", key))
    # The put created the shard directories: each one's parent was flushed too (up to the
    # root), after the rename and before the commit, so their entries are on the device.
    renamed, committed = recorder.index(("rename", str(path))), recorder.index(("commit", key))
    between = recorder.events[renamed:committed]
    shards = [d for d in path.parents if d.is_relative_to(root) and d != root]
    assert shards
    for directory in shards:
        assert ("fsync", str(directory.parent)) in between, (directory, recorder.events)


def test_uploads_api_appended_parts_and_the_sealed_file_are_flushed_before_they_commit(
    durable_server: httpx.Client, recorder: Recorder, tmp_path: Path
) -> None:
    parts = [b"x" * 1000, b"y" * 500]
    upload = durable_server.post(
        "/v1/uploads",
        json={
            "filename": "a.bin",
            "purpose": "user_data",
            "bytes": 1500,
            "mime_type": "application/octet-stream",
        },
    ).json()
    part_ids = []
    for part in parts:
        answer = durable_server.post(
            f"/v1/uploads/{upload['id']}/parts", files={"data": ("blob", part)}
        )
        assert answer.status_code == 200, answer.text
        part_ids.append(answer.json()["id"])
    done = durable_server.post(f"/v1/uploads/{upload['id']}/complete", json={"part_ids": part_ids})
    assert done.status_code == 200, done.text
    # Parts sent in order are appended to one hidden file: each append is flushed before
    # its part's record commits.
    events = recorder.events
    parts_added = [n for n, (kind, _) in enumerate(events) if kind == "add_part"]
    assert len(parts_added) == 2
    growing = [n for n, (kind, what) in enumerate(events) if what.endswith(".growing.part")]
    assert [kind for n, (kind, _) in enumerate(events) if n in growing] == ["fsync"] * 3
    assert growing[0] < parts_added[0] < growing[1] < parts_added[1] < growing[2], events
    # The file is sealed from it: flushed, renamed into place, its directories flushed, then
    # the record commits.
    root = (tmp_path / "files").resolve()
    key = storage_key_of(recorder)
    assert (root / key).read_bytes() == b"".join(parts)
    assert_flushed_before(recorder, root / key, ("commit", key), written_as=".appended.growing")


@pytest.mark.anyio
async def test_parts_composed_out_of_order_are_flushed_before_compose_returns(
    tmp_path: Path, recorder: Recorder
) -> None:
    storage = LocalStorage(tmp_path / "files")

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    await storage.put("up/b", one(b"second"))
    await storage.put("up/a", one(b"first "))
    recorder.add("composing", "")
    await storage.compose("ab/cd/whole", ["up/a", "up/b"])
    recorder.add("returned", "")
    path = storage.path_for("ab/cd/whole")
    assert path.read_bytes() == b"first second"
    assert recorder.index(("composing", "")) < recorder.index(("rename", str(path)))
    assert_flushed_before(recorder, path, ("returned", ""))


@pytest.mark.anyio
async def test_a_large_put_flushes_as_it_goes_so_the_last_flush_waits_for_the_tail_only(
    tmp_path: Path, recorder: Recorder
) -> None:
    storage = LocalStorage(tmp_path / "files")
    block = os.urandom(1024 * 1024)
    size = 3 * FLUSH_STEP

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(size // len(block)):
            yield block

    await storage.put("ab/cd/large", chunks())
    path = storage.path_for("ab/cd/large")
    assert path.stat().st_size == size
    renamed = recorder.index(("rename", str(path)))
    early = [n for n, (kind, _) in enumerate(recorder.events) if kind == "fdatasync"]
    assert early, recorder.events  # flushed while the bytes were still arriving
    assert early[-1] < renamed
    last = [n for n, (kind, what) in enumerate(recorder.events) if what.endswith(".part")]
    assert recorder.events[last[-1]][0] == "fsync"  # and once more, whole, before the rename
    assert last[-1] < renamed
    assert ("fsync", str(path.parent)) in recorder.events[renamed:]


def test_no_fsync_turns_every_flush_off(tmp_path: Path, recorder: Recorder) -> None:
    args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), "--no-fsync"])
    storage_url, metadata_url, _ = server_settings(args, {})
    opened = open_service(storage_url, metadata_url)
    service = FilesService(opened.storage, RecordingMetadata(opened.metadata, recorder))
    with (
        serve(create_app(service, close_service=True)) as server,
        httpx.Client(base_url=server.url, timeout=30) as http,
    ):
        response = http.post(
            "/v1/files", files={"file": ("a.txt", b"hello")}, data={"purpose": "user_data"}
        )
        assert response.status_code == 200, response.text
    key = storage_key_of(recorder)
    assert (tmp_path / "files" / key).read_bytes() == b"hello"
    assert recorder.fsyncs() == []


def test_the_serve_flag_and_its_variable_ask_for_no_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def settings(*argv: str) -> tuple[str, str]:
        args = build_parser().parse_args(["serve", "--data-dir", str(tmp_path), *argv])
        storage, metadata, _ = server_settings(args, {})
        return storage, metadata

    storage, metadata = settings()
    assert isinstance(durable := open_storage(storage), LocalStorage)
    assert durable.fsync is True
    assert "synchronous" not in metadata
    storage, metadata = settings("--no-fsync")
    assert storage.endswith("?fsync=false")
    assert metadata.endswith("?synchronous=normal")
    assert isinstance(fast := open_storage(storage), LocalStorage)
    assert fast.fsync is False
    monkeypatch.setenv("OPENAI_FILES_FSYNC", "false")
    assert settings() == (storage, metadata)


# -- SQLite's synchronous setting ------------------------------------------------------------

FULL, NORMAL = 2, 1
"""What ``PRAGMA synchronous`` answers."""


async def synchronous_settings(store: SQLMetadataStore, connections: int = 3) -> set[int]:
    """``PRAGMA synchronous`` on ``connections`` connections of the store's engine at once."""
    await store.create_schema()
    opened = [await store.engine.connect() for _ in range(connections)]
    try:
        return {(await c.execute(text("PRAGMA synchronous"))).scalar_one() for c in opened}
    finally:
        for connection in opened:
            await connection.close()


@pytest.mark.anyio
async def test_sqlite_commits_are_synchronous_full_by_default(sqlite_url: str) -> None:
    store = SQLMetadataStore(sqlite_url)
    try:
        assert await synchronous_settings(store) == {FULL}
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_sqlite_synchronous_normal_is_an_option_of_the_url(sqlite_url: str) -> None:
    store = open_metadata(f"{sqlite_url}?synchronous=normal")
    assert isinstance(store, SQLMetadataStore)
    try:
        assert await synchronous_settings(store) == {NORMAL}
        assert "synchronous" not in store.engine.url.query  # not handed on to the driver
    finally:
        await store.aclose()


@pytest.mark.anyio
async def test_the_embedded_service_is_durable_unless_asked_otherwise(tmp_path: Path) -> None:
    for durable, setting in ((True, FULL), (False, NORMAL)):
        async with open_embedded(tmp_path / str(durable), durable=durable) as service:
            assert isinstance(service.storage, LocalStorage)
            assert service.storage.fsync is durable
            assert isinstance(service.metadata, SQLMetadataStore)
            assert await synchronous_settings(service.metadata) == {setting}


def test_an_unknown_durability_option_is_refused_with_what_to_write(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous=full"):
        open_metadata(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}?synchronous=off")
    with pytest.raises(ValueError, match="fsync=false"):
        open_storage(f"{tmp_path.as_uri()}?fsync=maybe")
    with pytest.raises(ValueError, match="fsync=false"):
        open_service(f"{tmp_path.as_uri()}?fsnyc=false", "memory://")

"""Backends that fail on command: `FaultyStorage` and `FaultyMetadataStore` wrap a real backend
and raise `BackendUnavailable` where a test asks them to, as a backend that is down would.

Each wrapper forwards every call to the backend it wraps, except the calls it is told to fail::

    storage = FaultyStorage(LocalStorage(root))
    metadata = FaultyMetadataStore(SQLMetadataStore(url))
    storage.fail_put_at_chunk = 3   # every put fails when its 3rd chunk arrives
    metadata.fail_commit = 1        # the next commit fails, later ones succeed
    metadata.down = True            # every call fails: an outage
    storage.heal()                  # every switch off again

A switch named ``fail_<operation>`` takes a `Trigger`: ``True`` fails every call until the
switch is turned off, an integer n fails the next n calls and then turns itself off. A failing
call normally has no effect on the backend; name the operation in ``lost_replies`` to have the
backend carry the call out first and only its answer lost, as when a database commits a
transaction but the connection breaks before the reply arrives.

For soak tests, `RandomFaults` fails calls at random with a given probability, from a seeded
`random.Random` so that a failing run can be replayed. Every fault raised is counted in
``injected``, by operation.
"""

from __future__ import annotations

import builtins
import functools
import random
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Collection
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

from ..errors import BackendUnavailable
from ..metadata.base import (
    Cursor,
    FileRecord,
    MetadataStore,
    OffsetPaging,
    Order,
    PartOutcome,
    PartRecord,
    Quota,
    StatusUpdates,
    UploadRecord,
    UploadState,
    Usage,
)
from ..storage.base import Storage, StoredBlob, store_unhashed

__all__ = ["FaultyMetadataStore", "FaultyStorage", "RandomFaults", "Trigger"]

_T = TypeVar("_T")

Trigger = bool | int
"""When a switched operation fails: ``True`` on every call until switched off, an ``int`` n on
the next n calls (counting down to 0, which is off), ``False`` never."""

RANDOM_PUT_CHUNKS = 4
"""A put that `RandomFaults` dooms fails when one of its first this many chunks arrives
(chosen at random), or after its last chunk if it has fewer."""


@dataclass
class RandomFaults:
    """Fail each call of one of ``operations`` (every operation, if None) with ``probability``,
    drawing from ``rng``: the same seed and the same calls fail the same way again."""

    probability: float
    rng: random.Random = field(default_factory=lambda: random.Random(0))
    operations: Collection[str] | None = None

    def strikes(self, operation: str) -> bool:
        """Whether this call of ``operation`` fails."""
        if self.operations is not None and operation not in self.operations:
            return False
        return self.rng.random() < self.probability


class _Switchboard:
    """The switches and the bookkeeping that both wrappers share."""

    def __init__(self, backend: str, random_faults: RandomFaults | None) -> None:
        self.down = False
        self.random_faults = random_faults
        self.lost_replies: set[str] = set()
        self.injected: Counter[str] = Counter()
        self._backend = backend

    def heal(self) -> None:
        """Turn every switch off: no outage, no ``fail_*`` switch, no random faults."""
        self.down = False
        self.random_faults = None
        self._switches_off()

    def _switches_off(self) -> None:
        raise NotImplementedError

    def _take(self, operation: str) -> bool:
        """Whether the ``fail_<operation>`` switch fails this call (counting it down)."""
        name = f"fail_{operation}"
        trigger = vars(self).get(name, False)
        if isinstance(trigger, bool):
            return trigger
        if isinstance(trigger, int) and trigger > 0:
            setattr(self, name, trigger - 1)
            return True
        return False

    def _random(self, operation: str) -> bool:
        return self.random_faults is not None and self.random_faults.strikes(operation)

    def _fails(self, operation: str) -> bool:
        """Whether this call of ``operation`` fails, by outage, switch or chance."""
        return self.down or self._take(operation) or self._random(operation)

    def _fault(self, operation: str, where: str = "") -> BackendUnavailable:
        self.injected[operation] += 1
        detail = f" {where}" if where else ""
        return BackendUnavailable(
            f"{self._backend} is unavailable: injected fault in {operation}{detail}."
        )

    async def _call(self, operation: str, call: Callable[[], Awaitable[_T]]) -> _T:
        """Run ``call`` unless this call of ``operation`` fails; a failure in
        ``lost_replies`` runs it first and raises after."""
        if not self._fails(operation):
            return await call()
        if operation in self.lost_replies:
            await call()
        raise self._fault(operation)


class FaultyStorage(_Switchboard):
    """A `Storage` that forwards to ``inner`` and fails where it is told to.

    Switches (see `Trigger`): ``fail_put`` fails a put after its last chunk has arrived, as
    when the backend's final commit fails; ``fail_put_at_chunk`` (an int k, or None) fails
    every put as its k-th chunk arrives, until set back to None; ``fail_get`` fails opening a
    download, ``fail_read_at_chunk`` (k or None) breaks every download as its k-th chunk is
    read; ``fail_head`` and ``fail_delete`` fail those calls. ``down`` fails every call.

    A put fails by raising from the chunks it hands to ``inner``, so the inner backend's own
    clean-up on a failed put is exercised, not bypassed. Optional capabilities (listing,
    composing, presigned URLs, ``path_for``...) are those of ``inner``, forwarded without
    faults, except ``append`` (`AppendableStorage`), which fails as a put does, and
    ``put_unhashed`` (`UnhashedPuts`), offered whatever ``inner`` is, which fails as a put does.
    """

    def __init__(self, inner: Storage, *, random_faults: RandomFaults | None = None) -> None:
        self.inner = inner
        super().__init__("Storage", random_faults)
        self._switches_off()

    def _switches_off(self) -> None:
        self.fail_put: Trigger = False
        self.fail_put_at_chunk: int | None = None
        self.fail_get: Trigger = False
        self.fail_read_at_chunk: int | None = None
        self.fail_head: Trigger = False
        self.fail_delete: Trigger = False

    def __repr__(self) -> str:
        return f"FaultyStorage({self.inner!r})"

    def __getattr__(self, name: str) -> Any:
        inner = self.__dict__.get("inner")
        if inner is None or name.startswith("__"):
            raise AttributeError(name)
        if name == "append" and hasattr(inner, "append"):
            return self._append
        return getattr(inner, name)

    async def _append(
        self, key: str, chunks: AsyncIterable[bytes], *, offset: int
    ) -> StoredBlob | None:
        """The inner storage's ``append``, failing where a put would (``fail_put``,
        ``fail_put_at_chunk``, ``down``); a lost reply is not simulated."""
        if self.down:
            raise self._fault("put")
        at_chunk, at_end = self.fail_put_at_chunk, self._take("put")
        if at_chunk is None and not at_end and self._random("put"):
            assert self.random_faults is not None
            at_end, at_chunk = True, self.random_faults.rng.randint(1, RANDOM_PUT_CHUNKS)
        inner: Any = self.inner
        if at_chunk is None and not at_end:
            return cast("StoredBlob | None", await inner.append(key, chunks, offset=offset))
        failing = _counted(chunks, at_chunk, self, fail_at_end=at_end)
        return cast("StoredBlob | None", await inner.append(key, failing, offset=offset))

    async def put(self, key: str, chunks: AsyncIterable[bytes]) -> StoredBlob:
        return await self._put(key, chunks, self.inner.put)

    async def put_unhashed(self, key: str, chunks: AsyncIterable[bytes]) -> int:
        """The inner storage's put without a hash (`UnhashedPuts`; its `Storage.put` when it
        has none), failing as `put` does."""
        return await self._put(key, chunks, functools.partial(store_unhashed, self.inner))

    async def _put(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        store: Callable[[str, AsyncIterable[bytes]], Awaitable[_T]],
    ) -> _T:
        if self.down:
            raise self._fault("put")
        at_chunk, at_end = self.fail_put_at_chunk, self._take("put")
        lost = "put" in self.lost_replies
        if at_chunk is None and not at_end and self._random("put"):
            assert self.random_faults is not None
            at_end = True
            if not lost:
                at_chunk = self.random_faults.rng.randint(1, RANDOM_PUT_CHUNKS)
        if at_end and lost:
            await store(key, _counted(chunks, at_chunk, self))
            raise self._fault("put", "after the object was stored")
        if at_chunk is None and not at_end:
            return await store(key, chunks)
        return await store(key, _counted(chunks, at_chunk, self, fail_at_end=at_end))

    async def get(
        self, key: str, *, start: int = 0, end: int | None = None
    ) -> AsyncIterator[bytes]:
        if self._fails("get"):  # a lost reply would leak an open stream: there is none
            raise self._fault("get")
        stream = await self.inner.get(key, start=start, end=end)
        if self.fail_read_at_chunk is None:
            return stream
        return _broken_stream(stream, self.fail_read_at_chunk, self)

    async def head(self, key: str) -> int:
        return await self._call("head", lambda: self.inner.head(key))

    async def delete(self, key: str) -> None:
        await self._call("delete", lambda: self.inner.delete(key))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _counted(
    chunks: AsyncIterable[bytes],
    fail_at: int | None,
    faults: FaultyStorage,
    *,
    fail_at_end: bool = False,
) -> AsyncIterator[bytes]:
    """``chunks``, failing as chunk number ``fail_at`` arrives, or after the last one."""
    count = 0
    async for chunk in chunks:
        count += 1
        if count == fail_at:
            raise faults._fault("put", f"at chunk {count}")
        yield chunk
    if fail_at_end:
        raise faults._fault("put", f"after the last chunk ({count})")


async def _broken_stream(
    stream: AsyncIterator[bytes], fail_at: int, faults: FaultyStorage
) -> AsyncIterator[bytes]:
    """``stream``, breaking as chunk number ``fail_at`` is read; closes ``stream`` however
    it ends."""
    try:
        count = 0
        async for chunk in stream:
            count += 1
            if count == fail_at:
                raise faults._fault("get", f"while reading chunk {count}")
            yield chunk
    finally:
        closer = getattr(stream, "aclose", None)
        if closer is not None:
            await closer()


class FaultyMetadataStore(_Switchboard):
    """A `MetadataStore` that forwards to ``inner`` and fails where it is told to.

    Switches (see `Trigger`): ``fail_insert``, ``fail_commit``, ``fail_get``, ``fail_list``,
    ``fail_begin_delete``, ``fail_remove`` and ``fail_claim_for_sweep``. ``down`` fails every
    call but `aclose`, and `RandomFaults` may fail any call by its method's name.
    """

    def __init__(self, inner: MetadataStore, *, random_faults: RandomFaults | None = None) -> None:
        self.inner = inner
        super().__init__("The metadata store", random_faults)
        self._switches_off()

    def _switches_off(self) -> None:
        self.fail_insert: Trigger = False
        self.fail_commit: Trigger = False
        self.fail_get: Trigger = False
        self.fail_list: Trigger = False
        self.fail_begin_delete: Trigger = False
        self.fail_remove: Trigger = False
        self.fail_claim_for_sweep: Trigger = False

    def __repr__(self) -> str:
        return f"FaultyMetadataStore({self.inner!r})"

    async def insert(
        self,
        record: FileRecord,
        *,
        quota: Quota | None = None,
        idempotency_key: str | None = None,
        key_since: int = 0,
    ) -> str:
        return await self._call(
            "insert",
            lambda: self.inner.insert(
                record, quota=quota, idempotency_key=idempotency_key, key_since=key_since
            ),
        )

    async def reserve(self, owner: str, file_id: str, size: int, *, quota: Quota | None) -> bool:
        return await self._call(
            "reserve", lambda: self.inner.reserve(owner, file_id, size, quota=quota)
        )

    async def commit(
        self, record: FileRecord, *, idempotency_key: str | None = None, key_since: int = 0
    ) -> str:
        return await self._call(
            "commit",
            lambda: self.inner.commit(record, idempotency_key=idempotency_key, key_since=key_since),
        )

    async def idempotent_file(self, owner: str, key: str, *, since: int) -> str | None:
        return await self._call(
            "idempotent_file", lambda: self.inner.idempotent_file(owner, key, since=since)
        )

    async def get(
        self, owner: str, file_id: str, *, now: int, include_deleted: bool = False
    ) -> FileRecord | None:
        return await self._call(
            "get",
            lambda: self.inner.get(owner, file_id, now=now, include_deleted=include_deleted),
        )

    async def list(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        after: Cursor | None = None,
        limit: int,
        order: Order = "desc",
    ) -> builtins.list[FileRecord]:
        return await self._call(
            "list",
            lambda: self.inner.list(
                owner, now=now, purpose=purpose, after=after, limit=limit, order=order
            ),
        )

    async def usage(self, owner: str) -> Usage:
        return await self._call("usage", lambda: self.inner.usage(owner))

    async def set_status(
        self, owner: str, file_id: str, *, status: str, details: str | None, now: int
    ) -> FileRecord | None:
        inner = self.inner
        if not isinstance(inner, StatusUpdates):
            raise TypeError(f"{inner!r} cannot record a status (it is no StatusUpdates store)")
        return await self._call(
            "set_status",
            lambda: inner.set_status(owner, file_id, status=status, details=details, now=now),
        )

    async def count(self, owner: str, *, now: int, purpose: str | None = None) -> int:
        inner = _offset_paging(self.inner)
        return await self._call("count", lambda: inner.count(owner, now=now, purpose=purpose))

    async def list_at(
        self,
        owner: str,
        *,
        now: int,
        purpose: str | None = None,
        offset: int,
        limit: int,
        order: Order = "desc",
    ) -> builtins.list[FileRecord]:
        inner = _offset_paging(self.inner)
        return await self._call(
            "list_at",
            lambda: inner.list_at(
                owner, now=now, purpose=purpose, offset=offset, limit=limit, order=order
            ),
        )

    async def begin_delete(self, owner: str, file_id: str, *, now: int) -> FileRecord | None:
        return await self._call(
            "begin_delete", lambda: self.inner.begin_delete(owner, file_id, now=now)
        )

    async def remove(self, owner: str, file_id: str, *, keep_record: bool = False) -> None:
        await self._call(
            "remove", lambda: self.inner.remove(owner, file_id, keep_record=keep_record)
        )

    async def hold(self, owner: str, file_id: str, holder: str, *, now: int) -> bool:
        return await self._call("hold", lambda: self.inner.hold(owner, file_id, holder, now=now))

    async def release(self, owner: str, file_id: str, holder: str) -> bool:
        return await self._call("release", lambda: self.inner.release(owner, file_id, holder))

    async def claim_for_sweep(
        self, *, now: int, stale_before: int, limit: int
    ) -> builtins.list[FileRecord]:
        return await self._call(
            "claim_for_sweep",
            lambda: self.inner.claim_for_sweep(now=now, stale_before=stale_before, limit=limit),
        )

    async def existing_keys(self, keys: builtins.list[str]) -> set[str]:
        return await self._call("existing_keys", lambda: self.inner.existing_keys(keys))

    async def create_upload(self, upload: UploadRecord, *, max_open: int | None = None) -> None:
        await self._call(
            "create_upload", lambda: self.inner.create_upload(upload, max_open=max_open)
        )

    async def get_upload(self, owner: str, upload_id: str) -> UploadRecord | None:
        return await self._call("get_upload", lambda: self.inner.get_upload(owner, upload_id))

    async def move_upload(
        self,
        owner: str,
        upload_id: str,
        *,
        from_states: tuple[UploadState, ...],
        to: UploadState,
        file_id: str | None = None,
    ) -> bool:
        return await self._call(
            "move_upload",
            lambda: self.inner.move_upload(
                owner, upload_id, from_states=from_states, to=to, file_id=file_id
            ),
        )

    async def reserve_upload(
        self, owner: str, upload_id: str, size: int, *, quota: Quota | None
    ) -> bool:
        return await self._call(
            "reserve_upload",
            lambda: self.inner.reserve_upload(owner, upload_id, size, quota=quota),
        )

    async def release_upload(self, owner: str, upload_id: str, size: int) -> None:
        await self._call(
            "release_upload", lambda: self.inner.release_upload(owner, upload_id, size)
        )

    async def add_part(
        self, part: PartRecord, *, reserved: int = 0, max_parts: int | None = None
    ) -> PartOutcome:
        return await self._call(
            "add_part", lambda: self.inner.add_part(part, reserved=reserved, max_parts=max_parts)
        )

    async def get_parts(self, owner: str, upload_id: str) -> builtins.list[PartRecord]:
        return await self._call("get_parts", lambda: self.inner.get_parts(owner, upload_id))

    async def expire_uploads(self, *, now: int) -> int:
        return await self._call("expire_uploads", lambda: self.inner.expire_uploads(now=now))

    async def finished_parts(self, *, limit: int) -> builtins.list[PartRecord]:
        return await self._call("finished_parts", lambda: self.inner.finished_parts(limit=limit))

    async def remove_part(self, part_id: str) -> None:
        await self._call("remove_part", lambda: self.inner.remove_part(part_id))

    async def aclose(self) -> None:
        await self.inner.aclose()


def _offset_paging(store: MetadataStore) -> OffsetPaging:
    if not isinstance(store, OffsetPaging):
        raise TypeError(f"{store!r} cannot page by offset (it is no OffsetPaging store)")
    return store

"""One page of an owner's files, by cursor (``after``) or, under `Policy.list_offset`, by
``offset`` with the ``total``; read from the store a batch at a time (`ListedBatches`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio.lowlevel

from ._checks import checked_owner
from ._core import Core, file_object
from .errors import InvalidRequest, shown
from .ids import parse_file_id
from .inputs import MAX_PURPOSE_LENGTH, unsafe_character
from .metadata.base import Cursor, FileRecord, OffsetPaging, Order
from .models import FileList, FileObject
from .policy import Policy

__all__ = ["LIST_BATCH", "ListedBatches", "list_in_batches"]

LIST_BATCH = 200
"""How many files of a list page are fetched from the store, and sent, at a time."""

Fetch = Callable[[Cursor | None, int], Awaitable[list[FileRecord]]]
"""Fetches the files after a cursor (None: the first batch), ``wanted`` and one more."""


class ListedBatches:
    """A page of the files list, read from the store a batch at a time
    (`FilesService.list_in_batches`).

    Iterate `batches` once: each batch is a list of `FileObject`; between two batches the
    event loop runs other tasks. Once they are all read, `has_more` says whether the list goes
    on past the page; ``total`` is the number of files in the list under `Policy.list_offset`.
    """

    def __init__(
        self,
        fetch: Fetch,
        first: list[FileRecord],
        *,
        page_size: int,
        batch: int,
        total: int | None,
    ) -> None:
        self._fetch = fetch
        self._first = first
        self._page_size = page_size
        self._batch = batch
        self.total = total
        self.has_more = False

    @property
    def single(self) -> bool:
        """True when the first batch is the whole page: nothing more is fetched."""
        return self._page_size <= self._batch or len(self._first) <= self._batch

    @property
    def batches(self) -> AsyncIterator[list[FileObject]]:
        return self._batches()

    async def page(self) -> FileList:
        """Every batch, read now into one `FileList`."""
        data = [file async for batch in self.batches for file in batch]
        return FileList(
            data=data,
            first_id=data[0].id if data else None,
            last_id=data[-1].id if data else None,
            has_more=self.has_more,
            total=self.total,
        )

    async def _batches(self) -> AsyncIterator[list[FileObject]]:
        records, sent = self._first, 0
        while True:
            wanted = min(self._batch, self._page_size - sent)
            batch = records[:wanted]
            sent += len(batch)
            more = len(records) > wanted
            yield [file_object(record) for record in batch]
            if not more or sent >= self._page_size:
                self.has_more = more
                return
            await anyio.lowlevel.checkpoint()  # let other requests run between two batches
            last = batch[-1]
            records = await self._fetch(
                (last.created_us, last.id), min(self._batch, self._page_size - sent)
            )


async def list_in_batches(
    core: Core,
    owner: str,
    *,
    purpose: str | None,
    limit: int | None,
    order: str,
    after: str | None,
    offset: int | None,
    batch: int,
) -> ListedBatches:
    """A page of the owner's files (see `FilesService.list_in_batches`)."""
    policy = core.policy
    page_size = _page_size(policy, limit)
    direction = _direction(order)
    if purpose is not None:
        _check_purpose_filter(purpose)
    cursor = _cursor(after)
    _check_offset(policy, offset, after)
    owner, now = checked_owner(owner), core.now()
    total = None
    if policy.list_offset:
        total = await _offset_paging(core).count(owner, now=now, purpose=purpose)

    async def fetch(cursor: Cursor | None, wanted: int) -> list[FileRecord]:
        """``wanted`` files after ``cursor`` (the first batch: after ``offset``), and one
        more when there is one, which says whether the list goes on."""
        if offset and cursor is None:
            return await _offset_paging(core).list_at(
                owner, now=now, purpose=purpose, offset=offset, limit=wanted + 1, order=direction
            )
        return await core.metadata.list(
            owner, now=now, purpose=purpose, after=cursor, limit=wanted + 1, order=direction
        )

    first = await fetch(cursor, min(batch, page_size))
    return ListedBatches(fetch, first, page_size=page_size, batch=batch, total=total)


def _page_size(policy: Policy, limit: int | None) -> int:
    page_size = policy.list_limit_default if limit is None else limit
    if not 1 <= page_size <= policy.list_limit_max:
        raise InvalidRequest(
            f"limit must be between 1 and {policy.list_limit_max}; got {page_size}.",
            param="limit",
        )
    return page_size


def _direction(order: str) -> Order:
    if order not in ("asc", "desc"):
        raise InvalidRequest(f"order must be 'asc' or 'desc'; got {shown(order)}.", param="order")
    return "asc" if order == "asc" else "desc"


def _check_purpose_filter(purpose: str) -> None:
    """`InvalidRequest` for a ``purpose`` filter no file can have: longer than a purpose can be,
    or holding a control character or a lone surrogate."""
    if len(purpose) > MAX_PURPOSE_LENGTH or unsafe_character(purpose) is not None:
        raise InvalidRequest(
            f"purpose must be a purpose of at most {MAX_PURPOSE_LENGTH} characters, without "
            f"control characters; got {shown(purpose)}.",
            param="purpose",
        )


def _cursor(after: str | None) -> tuple[int, str] | None:
    """The (creation time, id) position to list from: ids carry their creation time, so a
    cursor stays valid when its file is deleted between two pages."""
    if after is None:
        return None
    created_us = parse_file_id(after)
    if created_us is None:
        raise InvalidRequest(
            f"after must be a file id from a previous page; got {shown(after)}.",
            param="after",
        )
    return (created_us, after)


def _check_offset(policy: Policy, offset: int | None, after: str | None) -> None:
    """`InvalidRequest` for an ``offset`` the policy does not take, or cannot be used."""
    if offset is None:
        return
    if not policy.list_offset:
        raise InvalidRequest(
            "offset is not accepted here: page with after=<file id>.", param="offset"
        )
    if after is not None:
        raise InvalidRequest("Give after or offset, not both.", param="offset")
    if offset < 0:
        raise InvalidRequest(f"offset must be 0 or more; got {offset}.", param="offset")
    if policy.list_offset_max is not None and offset > policy.list_offset_max:
        raise InvalidRequest(
            f"offset must be at most {policy.list_offset_max}; got {offset}. To read further, "
            "page on with after=<the last_id of a page> (its order and purpose unchanged).",
            param="offset",
        )


def _offset_paging(core: Core) -> OffsetPaging:
    """The metadata store, to page by offset and count (`Policy.list_offset`)."""
    assert isinstance(core.metadata, OffsetPaging)  # checked when the service was made
    return core.metadata

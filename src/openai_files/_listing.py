"""One page of an owner's files, by cursor (``after``) or, under `Policy.list_offset`, by
``offset`` with the ``total``."""

from __future__ import annotations

from ._checks import checked_owner
from ._core import Core, file_object
from .errors import InvalidRequest
from .ids import parse_file_id
from .metadata.base import OffsetPaging, Order
from .models import FileList
from .policy import Policy

__all__ = ["list_files"]


async def list_files(
    core: Core,
    owner: str,
    *,
    purpose: str | None,
    limit: int | None,
    order: str,
    after: str | None,
    offset: int | None,
) -> FileList:
    """A page of the owner's files (see `FilesService.list`)."""
    policy = core.policy
    page_size = _page_size(policy, limit)
    direction = _direction(order)
    cursor = _cursor(after)
    _check_offset(policy, offset, after)
    owner, now = checked_owner(owner), core.now()
    total = None
    if policy.list_offset:
        total = await _offset_paging(core).count(owner, now=now, purpose=purpose)
    if offset:
        records = await _offset_paging(core).list_at(
            owner, now=now, purpose=purpose, offset=offset, limit=page_size + 1, order=direction
        )
    else:
        records = await core.metadata.list(
            owner, now=now, purpose=purpose, after=cursor, limit=page_size + 1, order=direction
        )
    data = [file_object(record) for record in records[:page_size]]
    return FileList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=len(records) > page_size,
        total=total,
    )


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
        raise InvalidRequest(f"order must be 'asc' or 'desc'; got {order!r}.", param="order")
    return "asc" if order == "asc" else "desc"


def _cursor(after: str | None) -> tuple[int, str] | None:
    """The (creation time, id) position to list from: ids carry their creation time, so a
    cursor stays valid when its file is deleted between two pages."""
    if after is None:
        return None
    created_us = parse_file_id(after)
    if created_us is None:
        raise InvalidRequest(
            f"after must be a file id from a previous page; got {after[:100]!r}.",
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


def _offset_paging(core: Core) -> OffsetPaging:
    """The metadata store, to page by offset and count (`Policy.list_offset`)."""
    assert isinstance(core.metadata, OffsetPaging)  # checked when the service was made
    return core.metadata

"""What owners store, for billing and support: one owner's usage, or a page of every owner's
(`FilesService.usage`, `FilesService.list_usage`)."""

from __future__ import annotations

from ._checks import checked_owner
from .metadata.base import MetadataStore, Usage, UsageListing
from .models import OwnerUsage, UsageList

__all__ = ["USAGE_PAGE_MAX", "list_usage", "owner_usage"]

USAGE_PAGE_MAX = 1000
"""The most owners one page of `FilesService.list_usage` holds."""


def _row(owner: str, usage: Usage) -> OwnerUsage:
    return OwnerUsage(
        owner=owner, files=usage.files, bytes=usage.bytes, open_uploads=usage.open_uploads
    )


async def owner_usage(metadata: MetadataStore, owner: str) -> OwnerUsage:
    """The usage of ``owner`` (zeros for an owner who stores nothing)."""
    return _row(owner, await metadata.usage(checked_owner(owner)))


async def list_usage(metadata: MetadataStore, *, after: str | None, limit: int) -> UsageList:
    """A page of ``limit`` owners after ``after``; `ValueError` for a limit out of range,
    `TypeError` for a store that cannot list usage."""
    if not 1 <= limit <= USAGE_PAGE_MAX:
        raise ValueError(f"limit is 1 to {USAGE_PAGE_MAX}, not {limit}")
    if not isinstance(metadata, UsageListing):
        raise TypeError(f"{metadata!r} cannot list usage (it is no UsageListing store)")
    rows = await metadata.list_usage(after=after, limit=limit + 1)
    return UsageList(data=[_row(o, u) for o, u in rows[:limit]], has_more=len(rows) > limit)

"""The metadata conformance cases of the `UsageListing` capability: every owner's usage, paged."""

from __future__ import annotations

import pytest

from ..metadata.base import MetadataStore, Usage, UsageListing
from ._records import NOW, make_record, make_upload

__all__ = ["UsageListingConformance"]


def _listing(metadata: MetadataStore) -> UsageListing:
    if not isinstance(metadata, UsageListing):
        pytest.skip(f"{type(metadata).__name__} does not list usage (optional)")
    return metadata


class UsageListingConformance:
    """`UsageListing.list_usage`: the figures of `MetadataStore.usage`, for every owner."""

    async def test_usage_listing_shows_each_owner_s_files_bytes_and_open_uploads(
        self, metadata: MetadataStore
    ) -> None:
        listing = _listing(metadata)
        assert await listing.list_usage(limit=10) == []
        await metadata.insert(make_record("alice"))
        await metadata.insert(make_record("alice", state="pending").replace(bytes=30))
        await metadata.insert(make_record("bob"))
        await metadata.create_upload(make_upload("carol"))
        assert await listing.list_usage(limit=10) == [
            ("alice", Usage(files=2, bytes=42)),
            ("bob", Usage(files=1, bytes=12)),
            ("carol", Usage(files=0, bytes=0, open_uploads=1)),
        ]

    async def test_usage_listing_leaves_out_owners_who_store_nothing_any_more(
        self, metadata: MetadataStore
    ) -> None:
        listing = _listing(metadata)
        kept, gone = make_record("alice"), make_record("bob")
        await metadata.insert(kept)
        await metadata.insert(gone)
        assert await metadata.begin_delete("bob", gone.id, now=NOW) is not None
        await metadata.remove("bob", gone.id)
        assert await listing.list_usage(limit=10) == [("alice", Usage(files=1, bytes=12))]

    async def test_usage_pages_neither_skip_nor_repeat_an_owner(
        self, metadata: MetadataStore
    ) -> None:
        listing = _listing(metadata)
        owners = [f"owner-{n:03d}" for n in range(25)]
        for owner in owners:
            await metadata.insert(make_record(owner))
        seen: list[str] = []
        after: str | None = None
        while True:
            page = await listing.list_usage(after=after, limit=7)
            seen += [owner for owner, _ in page]
            if len(page) < 7:
                break
            after = page[-1][0]
        assert seen == owners
        assert await listing.list_usage(after="owner-020", limit=2) == [
            ("owner-021", Usage(files=1, bytes=12)),
            ("owner-022", Usage(files=1, bytes=12)),
        ]
        assert await listing.list_usage(after="owner-024", limit=5) == []

"""The metadata conformance cases about the part numbers an upload's parts claim in the
storage's multipart upload (`MetadataStore.claim_part_numbers`)."""

from __future__ import annotations

import anyio

from ..metadata.base import MetadataStore
from ._records import make_upload

__all__ = ["PartNumberConformance"]


class PartNumberConformance:
    """Claims of part numbers: the first claim sets the multipart upload, no number is
    claimed twice, and nothing is claimed past the limit or once the upload is not pending."""

    async def test_claims_take_numbers_in_turn_and_keep_the_first_multipart(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        fresh = await metadata.get_upload("alice", upload.id)
        assert fresh is not None
        assert (fresh.multipart, fresh.part_numbers) == (None, 0)
        first = await metadata.claim_part_numbers("alice", upload.id, 3, multipart="k a", limit=10)
        assert first == ("k a", 1)
        second = await metadata.claim_part_numbers("alice", upload.id, 2, multipart="j b", limit=10)
        assert second == ("k a", 4)  # another request's multipart came first: it stays
        assert (
            await metadata.claim_part_numbers("alice", upload.id, 6, multipart="k a", limit=10)
            is None
        )
        assert (
            await metadata.claim_part_numbers("bob", upload.id, 1, multipart="k a", limit=10)
            is None
        )
        last = await metadata.claim_part_numbers("alice", upload.id, 5, multipart="k a", limit=10)
        assert last == ("k a", 6)
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert (found.multipart, found.part_numbers) == ("k a", 10)

    async def test_claims_made_at_once_never_share_a_number(self, metadata: MetadataStore) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        firsts: list[int] = []

        async def claim() -> None:
            claimed = await metadata.claim_part_numbers(
                "alice", upload.id, 4, multipart="k a", limit=10_000
            )
            assert claimed is not None
            firsts.append(claimed[1])

        async with anyio.create_task_group() as group:
            for _ in range(8):
                group.start_soon(claim)
        assert sorted(firsts) == list(range(1, 33, 4))

    async def test_an_upload_that_is_not_pending_claims_nothing(
        self, metadata: MetadataStore
    ) -> None:
        upload = make_upload(size=100)
        await metadata.create_upload(upload)
        assert await metadata.move_upload(
            "alice", upload.id, from_states=("pending",), to="completing"
        )
        assert (
            await metadata.claim_part_numbers("alice", upload.id, 1, multipart="k a", limit=10)
            is None
        )
        found = await metadata.get_upload("alice", upload.id)
        assert found is not None
        assert (found.multipart, found.part_numbers) == (None, 0)

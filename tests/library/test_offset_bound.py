"""`Policy.list_offset_max`: an offset deeper than the bound is refused with a message that
says how to read on (a cursor), since a database skips an offset's files one by one."""

from __future__ import annotations

import pytest

from openai_files import FilesService, InvalidRequest, MemoryMetadataStore, MemoryStorage, Policy
from openai_files.http._openapi import openapi_document

pytestmark = pytest.mark.anyio


async def test_an_offset_past_the_bound_is_refused_saying_to_page_with_after() -> None:
    policy = Policy(list_offset=True, list_offset_max=1_000)
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy) as service:
        at_bound = await service.list("alice", offset=1_000)
        with pytest.raises(InvalidRequest) as refused:
            await service.list("alice", offset=1_001)
    assert at_bound.data == []
    assert at_bound.total == 0
    assert refused.value.param == "offset"
    assert str(refused.value) == (
        "offset must be at most 1000; got 1001. To read further, page on with "
        "after=<the last_id of a page> (its order and purpose unchanged)."
    )


async def test_no_bound_takes_any_offset() -> None:
    policy = Policy(list_offset=True, list_offset_max=None)
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=policy) as service:
        page = await service.list("alice", offset=10**9)
    assert page.data == []


def test_the_bound_is_checked_and_documented() -> None:
    with pytest.raises(ValueError, match="list_offset_max must be 0 or more"):
        Policy(list_offset_max=-1)
    for bound in (1_000, None):
        document = openapi_document(Policy(list_offset=True, list_offset_max=bound), ("/v1",))
        schema = document["components"]["parameters"]["ListOffset"]["schema"]
        assert schema.get("maximum") == bound

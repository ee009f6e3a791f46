"""The storage conformance suite over `DictStorage`, as a backend's own tests run it.

    pytest examples/test_dict_storage.py

Every test of `StorageConformance` runs against the ``storage`` fixture; `leftovers` tells the
suite what the backend holds, so it can check that failed and cancelled puts leave nothing.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from dict_storage import DictStorage  # examples/dict_storage.py

from openai_files.storage.base import Storage
from openai_files.testing import StorageConformance


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# --8<-- [start:suite]
class TestDictStorage(StorageConformance):
    @pytest.fixture
    async def storage(self) -> AsyncIterator[DictStorage]:
        store = DictStorage()
        yield store
        await store.aclose()

    async def leftovers(self, storage: Storage) -> list[str]:
        assert isinstance(storage, DictStorage)
        return [*storage.objects, *storage.staging]  # every object and partial put


# --8<-- [end:suite]

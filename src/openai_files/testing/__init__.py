"""Conformance suites for third-party backends, in the manner of fsspec's.

Subclass a suite in your own tests and provide the fixture it names::

    from openai_files.testing import StorageConformance

    class TestMyStorage(StorageConformance):
        @pytest.fixture
        async def storage(self):
            store = MyStorage(...)
            yield store
            await store.aclose()

        async def leftovers(self, storage):
            return [...every object and partial upload the backend holds...]

The suites use pytest with anyio's plugin (installed with anyio). A backend's known deviation
is declared by overriding one test with a reason, never by branching inside shared tests.

`ManualClock` is a clock for `FilesService(clock=...)` that stands still until a test moves
it.

`FaultyStorage` and `FaultyMetadataStore` wrap any backend and fail on command (or at random,
with `RandomFaults`), to test what a service does when a backend goes down
(`openai_files.testing.faults`).
"""

from __future__ import annotations

from .._clock import ManualClock
from .faults import FaultyMetadataStore, FaultyStorage, RandomFaults, Trigger
from .metadata import MetadataConformance, make_record
from .storage import StorageConformance

__all__ = [
    "FaultyMetadataStore",
    "FaultyStorage",
    "ManualClock",
    "MetadataConformance",
    "RandomFaults",
    "StorageConformance",
    "Trigger",
    "make_record",
]

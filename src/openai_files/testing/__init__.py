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
"""

from __future__ import annotations

from .metadata import MetadataConformance, make_record
from .storage import StorageConformance

__all__ = ["MetadataConformance", "StorageConformance", "make_record"]

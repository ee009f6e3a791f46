"""The conformance suites call every method of every protocol they hold backends to.

Each suite runs, in a pytest session of its own, over a memory backend wrapped in a proxy that
notes which protocol methods the cases call. The methods are found by reading the protocol
classes, so a method added to a protocol later fails here until a case calls it.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from openai_files import MemoryMetadataStore, MemoryStorage
from openai_files.metadata.base import (
    InlineFiles,
    MetadataStore,
    OffsetPaging,
    PartBatches,
    StatusUpdates,
    UsageListing,
)
from openai_files.storage.base import (
    ComposableStorage,
    ListableStorage,
    MappedReads,
    PresignedURLs,
    Storage,
    UnhashedPuts,
)

METADATA_PROTOCOLS: tuple[type, ...] = (
    MetadataStore,
    InlineFiles,
    OffsetPaging,
    PartBatches,
    StatusUpdates,
    UsageListing,
)
STORAGE_PROTOCOLS: tuple[type, ...] = (
    Storage,
    PresignedURLs,
    ListableStorage,
    ComposableStorage,
    MappedReads,
    UnhashedPuts,
)


def protocol_methods(*protocols: type) -> set[str]:
    """Every public method the protocol classes declare."""
    return {
        name
        for protocol in protocols
        for name, value in vars(protocol).items()
        if not name.startswith("_") and callable(value)
    }


class CallRecorder:
    """Makes proxies that forward the protocols' methods to a backend, noting each call."""

    def __init__(self, factory: Callable[[], object], protocols: tuple[type, ...]) -> None:
        self.factory = factory
        self.methods = protocol_methods(*protocols)
        self.calls: set[str] = set()

    def proxy(self, inner: object) -> Any:
        """A proxy with exactly the protocol methods ``inner`` has, so that the suite's
        capability checks (``isinstance`` against the protocols) see what they would see."""

        def forward(name: str) -> Callable[..., object]:
            def method(self: object, *args: object, **kwargs: object) -> object:
                recorder.calls.add(name)
                return getattr(inner, name)(*args, **kwargs)

            return method

        recorder = self
        namespace: dict[str, object] = {
            name: forward(name) for name in self.methods if hasattr(inner, name)
        }
        namespace["inner"] = inner
        return type(f"Recording{type(inner).__name__}", (), namespace)()

    @pytest.fixture
    def recorded(self) -> Any:
        """The suite's backend, behind a recording proxy (a memory backend needs no closing)."""
        return self.proxy(self.factory())


class CapableMemoryStorage(MemoryStorage):
    """`MemoryStorage` with the two capabilities it lacks, so their cases run here too:
    composing by reading the sources, and "presigned" URLs that carry the bytes (``data:``)."""

    async def compose(self, key: str, sources: list[str]) -> int:
        data = b"".join([await self._read(source) for source in sources])
        return (await self.put(key, _once(data))).size

    async def presigned_url(self, key: str, *, expires_in: int) -> str:
        data = await self._read(key)
        return "data:application/octet-stream;base64," + base64.b64encode(data).decode()

    async def _read(self, key: str) -> bytes:
        return b"".join([chunk async for chunk in await self.get(key)])


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


SUITES = {
    "metadata": """
import pytest
from openai_files.testing import MetadataConformance


@pytest.fixture
def anyio_backend():
    return "asyncio"


class TestRecorded(MetadataConformance):
    @pytest.fixture
    def metadata(self, recorded):
        return recorded
""",
    "storage": """
import pytest
from openai_files.testing import StorageConformance


@pytest.fixture
def anyio_backend():
    return "asyncio"


class TestRecorded(StorageConformance):
    @pytest.fixture
    def storage(self, recorded):
        return recorded

    async def leftovers(self, storage):
        return storage.inner.keys()
""",
}


def run_suite(tmp_path: Path, suite: str, recorder: CallRecorder) -> None:
    """Run ``suite``'s cases in-process over ``recorder``'s backend; every case must pass."""
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    module = tmp_path / f"test_recorded_{suite}.py"
    module.write_text(SUITES[suite])
    args = [str(module), "-c", str(tmp_path / "pytest.ini"), "--rootdir", str(tmp_path)]
    args += ["-q", "-p", "no:cacheprovider", "--import-mode=importlib"]
    args += ["-W", "ignore::pytest.PytestAssertRewriteWarning"]  # anyio is imported already
    assert pytest.main(args, plugins=[recorder]) == pytest.ExitCode.OK


def test_the_protocols_are_found_by_introspection() -> None:
    assert {"insert", "create_upload", "remove_part", "aclose"} <= protocol_methods(MetadataStore)
    assert protocol_methods(ComposableStorage) == {"compose"}
    assert protocol_methods(ListableStorage) == {"iter_keys", "remove_partials"}


def test_the_recording_proxy_has_the_capabilities_of_its_backend_only() -> None:
    recorder = CallRecorder(MemoryStorage, STORAGE_PROTOCOLS)
    plain = recorder.proxy(MemoryStorage())
    assert isinstance(plain, Storage)
    assert isinstance(plain, ListableStorage)
    assert not isinstance(plain, ComposableStorage)
    assert not isinstance(plain, PresignedURLs)
    assert isinstance(recorder.proxy(CapableMemoryStorage()), ComposableStorage)


def test_the_metadata_suite_calls_every_method_of_every_metadata_protocol(
    tmp_path: Path,
) -> None:
    recorder = CallRecorder(MemoryMetadataStore, METADATA_PROTOCOLS)
    run_suite(tmp_path, "metadata", recorder)
    missing = sorted(recorder.methods - recorder.calls)
    assert not missing, f"no conformance case calls {missing}: add one to the suite"


def test_the_storage_suite_calls_every_method_of_every_storage_protocol(tmp_path: Path) -> None:
    recorder = CallRecorder(CapableMemoryStorage, STORAGE_PROTOCOLS)
    run_suite(tmp_path, "storage", recorder)
    missing = sorted(recorder.methods - recorder.calls)
    assert not missing, f"no conformance case calls {missing}: add one to the suite"

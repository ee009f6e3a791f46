"""Generated requests against the app's own ``/openapi.json``: whatever a client sends, valid or
not, authenticated or not, the answer is never a server error and always one the document
describes (a documented status, its media type, a body of its schema and the headers it names).

Every operation gets a bounded number of examples, derandomized so that every run sends the
same requests. Some of them name files and an upload that exist (one file held by a batch), so
that the answers for existing resources are checked too, not only 404s.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.specs.openapi.schemas import OpenApiSchema

from openai_files import (
    FilesService,
    LocalStorage,
    Policy,
    SQLMetadataStore,
    api_key_auth,
    create_app,
)
from openai_files.http._openapi import OPENAPI_PATH, openapi_document
from openai_files.http.app import DEFAULT_PREFIXES

from ..support import BATCH_LINE

API_KEY = "sk-fuzz-0123456789abcdef0123456789"
OWNER = "fuzz-owner"
POLICY = Policy()
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]
OPERATIONS = [
    (path, method.upper())
    for path, item in openapi_document(POLICY, DEFAULT_PREFIXES)["paths"].items()
    for method in item
]


def examples(count: int) -> hypothesis.settings:
    return hypothesis.settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        print_blob=False,
        suppress_health_check=list(hypothesis.HealthCheck),
        phases=[hypothesis.Phase.generate],
    )


# Valid and invalid requests with the key (invalid ones may also drop the Authorization header),
# then valid requests with a wrong key, which must all be a documented 401.
PASSES = {
    "valid": (GenerationMode.POSITIVE, f"Bearer {API_KEY}", examples(25)),
    "invalid": (GenerationMode.NEGATIVE, f"Bearer {API_KEY}", examples(25)),
    "wrong-key": (GenerationMode.POSITIVE, "Bearer sk-wrong", examples(5)),
}


def service_over(root: Path) -> FilesService:
    return FilesService(
        LocalStorage(root / "blobs"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{root / 'files.db'}"),
        policy=POLICY,
    )


@dataclass(frozen=True)
class Seeded:
    """Ids of existing resources, by the path parameter that names them."""

    ids: dict[str, list[str]]


async def one_chunk(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def seed(root: Path) -> Seeded:
    """A plain file, a file held by a batch and a pending upload with one part, created through
    the library (in its own event loop) before the app starts."""
    async with service_over(root) as service:
        plain = await service.create(OWNER, file=b"plain", filename="a.txt", purpose="user_data")
        held = await service.create(OWNER, file=BATCH_LINE, filename="b.jsonl", purpose="batch")
        await service.hold(OWNER, held.id, "batch_fuzz")
        upload = await service.uploads.create(
            OWNER, filename="c.txt", purpose="user_data", bytes=4, mime_type="text/plain"
        )
        await service.uploads.add_part(OWNER, upload.id, one_chunk(b"data"))
    return Seeded({"file_id": [plain.id, held.id], "upload_id": [upload.id]})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[OpenApiSchema, Seeded]]:
    """The schema the app serves, loaded from the app, which serves the generated requests."""
    seeded = anyio.run(seed, tmp_path)
    app = create_app(
        service_over(tmp_path),
        auth=api_key_auth({API_KEY: OWNER}),
        openapi=True,
        close_service=True,
    )
    try:
        yield schemathesis.openapi.from_asgi(OPENAPI_PATH, app), seeded
    finally:
        # Ends the app's lifespan in schemathesis's event loop, which closes the service.
        shutdown_lifespans()


def requests_to(
    schema: OpenApiSchema, path: str, method: str, mode: GenerationMode, seeded: Seeded
) -> st.SearchStrategy[Any]:
    """Generated requests to one operation; those with an id name an existing resource as
    often as a generated id."""
    operation = schema[path][method]
    named = [name for name in seeded.ids if "{" + name + "}" in path]
    existing = [
        operation.as_strategy(mode, path_parameters={name: value})
        for name in named
        for value in seeded.ids[name]
    ]
    return st.one_of(operation.as_strategy(mode), *existing)


def test_every_documented_operation_is_fuzzed(api: tuple[OpenApiSchema, Seeded]) -> None:
    schema, _ = api
    served = set()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        served.add((result.ok().path, result.ok().method.upper()))
    assert served == set(OPERATIONS)


@pytest.mark.parametrize("run", PASSES.values(), ids=list(PASSES))
@pytest.mark.parametrize(("path", "method"), OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_every_answer_is_documented_and_none_is_a_server_error(
    api: tuple[OpenApiSchema, Seeded],
    path: str,
    method: str,
    run: tuple[GenerationMode, str, hypothesis.settings],
) -> None:
    schema, seeded = api
    mode, authorization, settings = run

    @settings
    @hypothesis.given(case=requests_to(schema, path, method, mode, seeded))
    def answer_is_documented(case: Any) -> None:
        response = case.call_and_validate(headers={"Authorization": authorization}, checks=CHECKS)
        if authorization != f"Bearer {API_KEY}":
            assert response.status_code == 401

    answer_is_documented()

"""The OpenAPI document: valid OpenAPI 3.1, exactly the routes the app serves, every documented
answer met in reality, and in agreement with OpenAI's published schemas."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Mount, Route

from openai_files import (
    BackendUnavailable,
    FilesService,
    MemoryMetadataStore,
    MemoryStorage,
    Policy,
    api_key_auth,
    create_app,
)
from openai_files.http import FormLimits
from openai_files.http._openapi import OPENAPI_PATH, openapi_document
from openai_files.http._uploads_api import completion_body_limit
from openai_files.policy import PURPOSE_PATTERN

pytestmark = pytest.mark.anyio

JSON = dict[str, Any]
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PREFIX_SETS = [("", "/v1"), ("/v1",), ("/api/v2/",), ("", "/openai", "/openai/v1")]
OPENAI_UPLOAD_PURPOSES = ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


def operations(document: JSON) -> Iterator[tuple[str, str, JSON]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def resolve(document: JSON, schema: JSON) -> JSON:
    """``schema``, or the component its local ``$ref`` names."""
    while "$ref" in schema:
        node: Any = document
        for key in schema["$ref"].removeprefix("#/").split("/"):
            node = node[key]
        schema = node
    return schema


def app_routes(app: Starlette) -> set[tuple[str, str]]:
    return {
        (route.path, method.lower())
        for route in app.routes
        if isinstance(route, Route) and route.path != OPENAPI_PATH
        for method in route.methods or ()
    }


@pytest.fixture
async def service() -> AsyncIterator[FilesService]:
    async with FilesService(MemoryStorage(), MemoryMetadataStore()) as service:
        yield service


# --- The document is valid OpenAPI 3.1 ----------------------------------------------------


@pytest.mark.parametrize("prefixes", PREFIX_SETS)
@pytest.mark.parametrize("redirects", [False, True])
def test_the_document_is_valid_openapi_3_1(prefixes: tuple[str, ...], redirects: bool) -> None:
    policy = Policy(upload_purposes=("batch", "custom"), keep_media_type=redirects)
    document = openapi_document(policy, prefixes, download_redirects=redirects)
    assert document["openapi"] == "3.1.0"
    validate(document, cls=OpenAPIV31SpecValidator)
    for schema in document["components"]["schemas"].values():
        Draft202012Validator.check_schema(schema)
    ids = [operation["operationId"] for _, _, operation in operations(document)]
    assert len(ids) == len(set(ids))
    assert document["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "The API key, as `Authorization: Bearer <key>`.",
    }
    assert document["security"] == [{"bearer": []}]


# --- Exactly the routes the app serves ------------------------------------------------------


@pytest.mark.parametrize("prefixes", PREFIX_SETS)
async def test_the_paths_are_exactly_the_routes_the_app_serves(
    service: FilesService, prefixes: tuple[str, ...]
) -> None:
    app = create_app(service, prefixes=prefixes, openapi=True)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://files.test"
    ) as client:
        response = await client.get(OPENAPI_PATH)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    document = response.json()
    assert document == json.loads(json.dumps(openapi_document(service.policy, prefixes)))
    documented = {(path, method) for path, method, _ in operations(document)}
    assert documented == app_routes(app)
    # Both prefixes come from the same definitions: the same operations, only the ids differ.
    relative = [
        {
            path.removeprefix(prefix.rstrip("/")): {
                method: {**op, "operationId": None} for method, op in item.items()
            }
            for path, item in document["paths"].items()
            if re.fullmatch(re.escape(prefix.rstrip("/")) + r"/(files|uploads)(/.*)?", path)
        }
        for prefix in prefixes
    ]
    assert all(item == relative[0] for item in relative)
    assert len(relative[0]) == 7


async def test_without_the_uploads_api_its_paths_are_neither_served_nor_documented(
    service: FilesService,
) -> None:
    app = create_app(service, openapi=True, uploads_api=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://files.test"
    ) as client:
        document = (await client.get(OPENAPI_PATH)).json()
        refused = await client.post("/v1/uploads", json={"purpose": "batch"})
        listed = await client.get("/v1/files")
    assert refused.status_code == 404
    assert refused.json()["error"]["message"] == "Unknown path: /v1/uploads."
    assert listed.status_code == 200
    documented = {(path, method) for path, method, _ in operations(document)}
    assert documented == app_routes(app)
    assert not [path for path, _ in documented if "uploads" in path]
    assert {path for path, _ in documented} == {
        f"{prefix}/files{rest}"
        for prefix in ("", "/v1")
        for rest in ("", "/{file_id}", "/{file_id}/content")
    }
    assert [tag["name"] for tag in document["tags"]] == ["Files"]


async def test_the_document_is_served_only_when_asked_for(service: FilesService) -> None:
    app = create_app(service)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://files.test"
    ) as client:
        assert (await client.get(OPENAPI_PATH)).status_code == 404
        assert (await client.get("/v1" + OPENAPI_PATH)).status_code == 404


async def test_a_mounted_app_names_its_mount_point_as_the_server(service: FilesService) -> None:
    host = Starlette(routes=[Mount("/gateway", app=create_app(service, openapi=True))])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=host), base_url="http://files.test"
    ) as client:
        document = (await client.get("/gateway" + OPENAPI_PATH)).json()
        listed = await client.get(document["servers"][0]["url"] + "/v1/files")
    assert document["servers"] == [{"url": "/gateway"}]
    assert listed.status_code == 200


# --- What each operation documents --------------------------------------------------------

# The error statuses each operation can answer with (401, 429 and 503: every operation).
EXPECTED_ERRORS = {
    ("/files", "post"): {400, 408, 409, 413},
    ("/files", "get"): {400},
    ("/files/{file_id}", "get"): {404},
    ("/files/{file_id}", "delete"): {404, 409},
    ("/files/{file_id}/content", "get"): {404, 416},
    ("/uploads", "post"): {400, 408, 413},
    ("/uploads/{upload_id}/parts", "post"): {400, 404, 408, 413},
    ("/uploads/{upload_id}/complete", "post"): {400, 404, 408, 409, 413},
    ("/uploads/{upload_id}/cancel", "post"): {400, 404},
}


def test_every_operation_lists_its_errors_in_openais_error_shape() -> None:
    document = openapi_document(Policy(), ("", "/v1"))
    for path, method, operation in operations(document):
        relative = path.removeprefix("/v1")
        get = "get" if method == "head" else method
        errors = {int(status) for status in operation["responses"] if int(status) >= 400}
        assert errors == EXPECTED_ERRORS[relative, get] | {401, 429, 503}, (path, method)
        for status, response in operation["responses"].items():
            if int(status) >= 400 and method != "head":
                assert response["content"] == {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                }
            if method == "head":
                assert "content" not in response


def test_downloads_are_binary_and_the_requests_are_described() -> None:
    policy = Policy(list_limit_default=20, list_limit_max=500)
    document = openapi_document(policy, ("/v1",))
    content = document["paths"]["/v1/files/{file_id}/content"]
    for status in ("200", "206"):
        assert content["get"]["responses"][status]["content"] == {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}
        }
    assert "Content-Range" in content["get"]["responses"]["206"]["headers"]
    assert "307" not in content["get"]["responses"]
    headers = {resolve(document, p)["name"] for p in content["get"]["parameters"]}
    assert headers == {"file_id", "Range", "If-Range", "If-None-Match", "If-Modified-Since"}

    listing = [resolve(document, p) for p in document["paths"]["/v1/files"]["get"]["parameters"]]
    by_name = {p["name"]: p for p in listing}
    assert set(by_name) == {"purpose", "limit", "order", "after"}
    assert all(p["in"] == "query" for p in listing)
    assert by_name["limit"]["schema"] == {
        "type": "integer",
        "minimum": 1,
        "maximum": 500,
        "default": 20,
    }
    assert by_name["order"]["schema"] == {
        "type": "string",
        "enum": ["asc", "desc"],
        "default": "desc",
    }

    create = document["paths"]["/v1/files"]["post"]
    assert [resolve(document, p)["name"] for p in create["parameters"]] == ["Idempotency-Key"]
    form = resolve(document, create["requestBody"]["content"]["multipart/form-data"]["schema"])
    assert (form["properties"]["file"]["type"], form["properties"]["file"]["format"]) == (
        "string",
        "binary",
    )
    assert form["properties"]["expires_after[anchor]"]["enum"] == ["created_at"]
    seconds = form["properties"]["expires_after[seconds]"]
    assert (seconds["type"], seconds["minimum"], seconds["maximum"]) == ("integer", 3600, 2592000)
    assert form["required"] == ["file", "purpose"]

    parts = document["paths"]["/v1/uploads/{upload_id}/parts"]["post"]["requestBody"]
    part = resolve(document, parts["content"]["multipart/form-data"]["schema"])
    assert part["properties"]["data"]["format"] == "binary"
    assert part["required"] == ["data"]
    for path in ("/v1/uploads", "/v1/uploads/{upload_id}/complete"):
        body = document["paths"][path]["post"]["requestBody"]
        assert set(body["content"]) == {"application/json"}
    assert "requestBody" not in document["paths"]["/v1/uploads/{upload_id}/cancel"]["post"]


@pytest.mark.parametrize(
    "policy", [Policy(), Policy(upload_purposes=("batch", "user_data", "reports"))]
)
def test_the_purposes_on_upload_are_the_policys(policy: Policy) -> None:
    assert policy.upload_purposes is not None
    document = openapi_document(policy, ("", "/v1"))
    for prefix in ("", "/v1"):
        create = document["paths"][f"{prefix}/files"]["post"]["requestBody"]["content"]
        form = resolve(document, create["multipart/form-data"]["schema"])
        assert form["properties"]["purpose"]["enum"] == list(policy.upload_purposes)
        start = document["paths"][f"{prefix}/uploads"]["post"]["requestBody"]["content"]
        body = resolve(document, start["application/json"]["schema"])
        assert body["properties"]["purpose"]["enum"] == list(policy.upload_purposes)


# --- Every documented answer is met in reality --------------------------------------------

SMALL = Policy(max_file_size=1024, max_part_size=1024, max_upload_size=4096)
ALICE = {"authorization": "Bearer sk-alice"}

# Answers the document lists that no test here provokes, and why.
UNPROVOKED = {
    # Only when the sweeper reclaims an upload's pending record while it is still streaming.
    ("/v1/files", "post", 409),
    ("/v1/uploads/{upload_id}/complete", "post", 409),
}


def _template(document: JSON, path: str) -> str:
    for template in document["paths"]:
        if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), path):
            return str(template)
    raise AssertionError(f"{path} matches no documented path")


@dataclass
class Checked:
    """A client that checks every answer against the document and remembers what it saw."""

    client: httpx.AsyncClient
    document: JSON
    seen: set[tuple[str, str, int]] = field(default_factory=set)

    async def __call__(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        kwargs.setdefault("headers", ALICE)
        response = await self.client.request(method, url, **kwargs)
        template = _template(self.document, response.request.url.path)
        operation = self.document["paths"][template][method.lower()]
        status = response.status_code
        documented = operation["responses"].get(str(status))
        assert documented is not None, f"{method} {url}: {status} is not documented"
        self.seen.add((template, method.lower(), status))
        for name in documented.get("headers", {}):
            assert name.lower() in response.headers, f"{method} {url} {status}: no {name}"
        content = documented.get("content")
        if method == "HEAD" or content is None:
            return response
        media_type = response.headers["content-type"].split(";")[0]
        if "application/json" in content:
            assert media_type == "application/json"
            schema = {
                **content["application/json"]["schema"],
                "components": self.document["components"],
            }
            Draft202012Validator(schema).validate(response.json())
        else:
            assert media_type in content or "*/*" in content
        return response


IDLE = 0.2


async def _stalled(first: bytes) -> AsyncIterator[bytes]:
    """A request body that stops after its first chunk for longer than the idle timeout."""
    yield first
    await anyio.sleep(IDLE * 5)
    yield b"--"


_KEYS = api_key_auth({"sk-alice": "alice", "sk-limited": "limited"})


def _refusing_auth(request: Request) -> Awaitable[str] | str:
    """Owners by key; ``sk-down`` meets a store that cannot be reached (503)."""
    if request.headers.get("authorization") == "Bearer sk-down":
        raise BackendUnavailable("The metadata store cannot be reached.")
    return _KEYS(request)


def _limiter(owner: str, request: Request) -> float | None:
    return 5.0 if owner == "limited" else None


@pytest.fixture
async def checked() -> AsyncIterator[tuple[Checked, FilesService]]:
    async with FilesService(MemoryStorage(), MemoryMetadataStore(), policy=SMALL) as service:
        app = create_app(
            service,
            auth=_refusing_auth,
            rate_limiter=_limiter,
            form_limits=FormLimits(idle_timeout=IDLE),
            openapi=True,
        )
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://files.test"
        ) as client:
            document = (await client.get(OPENAPI_PATH)).json()
            yield Checked(client, document), service


async def test_every_documented_answer_is_met_and_matches_its_schema(
    checked: tuple[Checked, FilesService],
) -> None:
    call, service = checked
    v1 = "/v1"

    # Files: upload, list, retrieve, download (whole, range, not modified, unsatisfiable).
    data = bytes(range(256)) * 2
    created = (
        await call(
            "POST", f"{v1}/files", data={"purpose": "user_data"}, files={"file": ("a.bin", data)}
        )
    ).json()
    await call("POST", "/files", data={"purpose": "assistants"}, files={"file": ("b.txt", b"hi")})
    await call("POST", f"{v1}/files", data={"purpose": "nope"}, files={"file": ("c.bin", b"x")})
    await call(
        "POST", f"{v1}/files", data={"purpose": "user_data"}, files={"file": ("d", data * 3)}
    )
    file_url = f"{v1}/files/{created['id']}"
    for method in ("GET", "HEAD"):
        await call(method, f"{v1}/files")
        await call(method, "/files", params={"order": "asc", "limit": 1})
        await call(method, f"{v1}/files", params={"limit": 0})
        await call(method, file_url)
        await call(method, f"{v1}/files/file-missing")
        whole = await call(method, f"{file_url}/content")
        if method == "GET":
            assert whole.content == data
        ranged = await call(method, f"{file_url}/content", headers={**ALICE, "range": "bytes=0-9"})
        assert ranged.status_code == 206
        current = {**ALICE, "if-none-match": whole.headers["etag"]}
        assert (await call(method, f"{file_url}/content", headers=current)).status_code == 304
        past_end = {**ALICE, "range": "bytes=5000-"}
        assert (await call(method, f"{file_url}/content", headers=past_end)).status_code == 416
        await call(method, f"{v1}/files/file-missing/content")

    # Deletes: held (409), done, then gone.
    await service.hold("alice", created["id"], "batch_1")
    assert (await call("DELETE", file_url)).status_code == 409
    await service.release("alice", created["id"], "batch_1")
    assert (await call("DELETE", file_url)).json()["deleted"] is True
    assert (await call("DELETE", file_url)).status_code == 404

    # Uploads: create, parts, complete, cancel, and their refusals.
    start = {"filename": "big.bin", "purpose": "user_data", "bytes": 1500, "mime_type": "x/y"}
    upload = (await call("POST", f"{v1}/uploads", json=start)).json()
    await call("POST", f"{v1}/uploads", json={"filename": "big.bin"})
    await call("POST", f"{v1}/uploads", content=json.dumps({"filename": "x" * 70_000}))
    parts_url = f"{v1}/uploads/{upload['id']}/parts"
    first = (await call("POST", parts_url, files={"data": ("upload", b"a" * 1000)})).json()
    second = (await call("POST", parts_url, files={"data": ("upload", b"b" * 500)})).json()
    await call("POST", parts_url, files={"data": ("upload", b"c" * 1100)})
    await call("POST", parts_url, files={"other": ("upload", b"c")})
    await call("POST", f"{v1}/uploads/upload_missing/parts", files={"data": ("upload", b"c")})
    complete_url = f"{v1}/uploads/{upload['id']}/complete"
    await call("POST", complete_url, json={"part_ids": ["part_missing"]})
    too_long = "x" * completion_body_limit(service.policy)  # a body past the limit: 413
    await call("POST", complete_url, json={"part_ids": [too_long]})
    await call("POST", f"{v1}/uploads/upload_missing/complete", json={"part_ids": ["p"]})
    done = (await call("POST", complete_url, json={"part_ids": [first["id"], second["id"]]})).json()
    assert done["status"] == "completed"
    assert done["file"]["bytes"] == 1500
    other = (await call("POST", f"{v1}/uploads", json=start)).json()
    await call("POST", f"{v1}/uploads/{other['id']}/cancel")
    await call("POST", f"{v1}/uploads/{other['id']}/cancel")
    await call("POST", f"{v1}/uploads/upload_missing/cancel")

    # A body that stalls (408), on every operation that reads one.
    form = {**ALICE, "content-type": "multipart/form-data; boundary=b"}
    start_form = b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch'
    for url, headers in [
        (f"{v1}/files", form),
        (f"{v1}/uploads", ALICE),
        (f"{v1}/uploads/{upload['id']}/parts", form),
        (complete_url, ALICE),
    ]:
        stalled = await call("POST", url, headers=headers, content=_stalled(start_form))
        assert stalled.status_code == 408, url

    # No key (401), a refused rate (429), an unreachable store (503): on every operation.
    for path, method, _ in operations(call.document):
        if path.startswith(v1):
            url = re.sub(r"\{[^/]+\}", "some-id", path)
            for headers in (
                {},
                {"authorization": "Bearer sk-limited"},
                {"authorization": "Bearer sk-down"},
            ):
                await call(method.upper(), url, headers=headers)

    documented = {
        (path, method, int(status))
        for path, method, operation in operations(call.document)
        if path.startswith(v1)
        for status in operation["responses"]
    }
    assert {seen for seen in call.seen if seen[0].startswith(v1)} <= documented
    assert documented - call.seen == UNPROVOKED


class SigningStorage(MemoryStorage):
    """Memory storage that signs URLs, as object stores do."""

    async def presigned_url(self, key: str, *, expires_in: int) -> str:
        return f"https://bucket.test/{key}?expires={expires_in}"


def test_a_policy_answering_400_for_files_too_large_documents_no_413() -> None:
    with pytest.warns(DeprecationWarning, match="file_too_large_status"):
        policy = Policy(file_too_large_status=400)
    document = openapi_document(policy, ("/v1",))
    assert '"413"' not in json.dumps(document)
    upload = document["paths"]["/v1/files"]["post"]["responses"]["400"]["description"]
    assert "passed its maximum size" in upload
    default = openapi_document(Policy(), ("/v1",))["paths"]["/v1/files"]["post"]["responses"]
    assert "413" in default


def test_a_policy_of_any_purpose_documents_the_purpose_pattern() -> None:
    schemas = openapi_document(Policy(upload_purposes=None), ("/v1",))["components"]["schemas"]
    for name in ("CreateFileRequest", "CreateUploadRequest"):
        purpose = schemas[name]["properties"]["purpose"]
        assert purpose["pattern"] == PURPOSE_PATTERN
        assert "enum" not in purpose


def test_offset_and_total_are_documented_only_under_list_offset() -> None:
    for list_offset in (True, False):
        document = openapi_document(Policy(list_offset=list_offset), ("/v1",))
        parameters = document["paths"]["/v1/files"]["get"]["parameters"]
        offset = {"$ref": "#/components/parameters/ListOffset"}
        assert (offset in parameters) is list_offset
        file_list = document["components"]["schemas"]["FileList"]
        assert ("total" in file_list["properties"]) is list_offset
        assert "total" not in file_list["required"]


def test_download_media_types_are_documented_for_the_content() -> None:
    policy = Policy(download_media_types={".jsonl": "application/jsonl"})
    document = openapi_document(policy, ("/v1",))
    answers = document["paths"]["/v1/files/{file_id}/content"]["get"]["responses"]
    assert set(answers["200"]["content"]) == {"application/octet-stream", "application/jsonl"}
    plain = openapi_document(Policy(), ("/v1",))["paths"]["/v1/files/{file_id}/content"]
    assert set(plain["get"]["responses"]["200"]["content"]) == {"application/octet-stream"}


async def test_presigned_downloads_are_documented_as_redirects() -> None:
    async with FilesService(SigningStorage(), MemoryMetadataStore()) as service:
        app = create_app(service, presigned_downloads=60, openapi=True)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://files.test"
        ) as client:
            call = Checked(client, (await client.get(OPENAPI_PATH)).json())
            created = await call(
                "POST", "/v1/files", data={"purpose": "user_data"}, files={"file": ("a", b"xy")}
            )
            url = f"/v1/files/{created.json()['id']}/content"
            assert (await call("GET", url)).status_code == 307
            assert (await call("HEAD", url)).status_code == 200
    content = call.document["paths"]["/v1/files/{file_id}/content"]
    assert "307" in content["get"]["responses"]
    assert "307" not in content["head"]["responses"]


# --- Agreement with OpenAI's published schemas --------------------------------------------

# OpenAI's published schemas, from openai/openai-openapi `openapi.yaml`, spec version 2.3.0
# (commit f85dbe2): OpenAIFile (L44860), ListFilesResponse (L42852), DeleteFileResponse
# (L37838), CreateFileRequest (L34959) with FileExpirationAfter (L39751), and the Uploads API
# schemas (L21633-21920): Upload, UploadPart, CreateUploadRequest, AddUploadPartRequest,
# CompleteUploadRequest. References name a schema of this table.
OPENAI: dict[str, JSON] = {
    "OpenAIFile": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "bytes": {"type": "integer"},
            "created_at": {"type": "integer", "format": "unixtime"},
            "expires_at": {"type": "integer", "format": "unixtime"},
            "filename": {"type": "string"},
            "object": {"type": "string", "enum": ["file"]},
            "purpose": {
                "type": "string",
                "enum": [
                    "assistants",
                    "assistants_output",
                    "batch",
                    "batch_output",
                    "fine-tune",
                    "fine-tune-results",
                    "vision",
                    "user_data",
                ],
            },
            "status": {"type": "string", "enum": ["uploaded", "processed", "error"]},
            "status_details": {"type": "string"},
        },
        "required": ["id", "object", "bytes", "created_at", "filename", "purpose", "status"],
    },
    "ListFilesResponse": {
        "type": "object",
        "properties": {
            "object": {"type": "string"},
            "data": {"type": "array", "items": {"$ref": "OpenAIFile"}},
            "first_id": {"type": "string"},
            "last_id": {"type": "string"},
            "has_more": {"type": "boolean"},
        },
        "required": ["object", "data", "first_id", "last_id", "has_more"],
    },
    "DeleteFileResponse": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string", "enum": ["file"]},
            "deleted": {"type": "boolean"},
        },
        "required": ["id", "object", "deleted"],
    },
    "Upload": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "integer", "format": "unixtime"},
            "filename": {"type": "string"},
            "bytes": {"type": "integer"},
            "purpose": {"type": "string"},
            "status": {
                "type": "string",
                "enum": ["pending", "completed", "cancelled", "expired"],
            },
            "expires_at": {"type": "integer", "format": "unixtime"},
            "object": {"type": "string", "enum": ["upload"]},
            "file": {"anyOf": [{"$ref": "OpenAIFile"}, {"type": "null"}]},
        },
        "required": ["bytes", "created_at", "expires_at", "filename", "id", "purpose", "status"],
    },
    "UploadPart": {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "created_at": {"type": "integer", "format": "unixtime"},
            "upload_id": {"type": "string"},
            "object": {"type": "string", "enum": ["upload.part"]},
        },
        "required": ["created_at", "id", "object", "upload_id"],
    },
    "FileExpirationAfter": {
        "type": "object",
        "properties": {
            "anchor": {"type": "string", "enum": ["created_at"]},
            "seconds": {"type": "integer", "format": "int64", "minimum": 3600, "maximum": 2592000},
        },
        "required": ["anchor", "seconds"],
    },
    "CreateFileRequest": {
        "type": "object",
        "properties": {
            "file": {"type": "string", "format": "binary"},
            "purpose": {"type": "string", "enum": OPENAI_UPLOAD_PURPOSES},
            "expires_after": {"$ref": "FileExpirationAfter"},
        },
        "required": ["file", "purpose"],
    },
    "CreateUploadRequest": {
        "type": "object",
        "properties": {
            "filename": {"type": "string"},
            "purpose": {"type": "string", "enum": ["assistants", "batch", "fine-tune", "vision"]},
            "bytes": {"type": "integer"},
            "mime_type": {"type": "string"},
            "expires_after": {"$ref": "FileExpirationAfter"},
        },
        "required": ["filename", "purpose", "bytes", "mime_type"],
    },
    "AddUploadPartRequest": {
        "type": "object",
        "properties": {"data": {"type": "string", "format": "binary"}},
        "required": ["data"],
    },
    "CompleteUploadRequest": {
        "type": "object",
        "properties": {
            "part_ids": {"type": "array", "items": {"type": "string"}},
            "md5": {"type": "string"},
        },
        "required": ["part_ids"],
    },
}

# Where our responses send null and OpenAI's schema does not declare it. OpenAI's own API
# sends these keys as null too (`status_details`, `expires_at` of a file that never expires;
# `first_id`/`last_id` of an empty page), and its SDKs type them as optional.
NULLABLE_BEYOND_OPENAI = {
    ("OpenAIFile", "expires_at"),
    ("OpenAIFile", "status_details"),
    ("ListFilesResponse", "first_id"),
    ("ListFilesResponse", "last_id"),
}


def _openai(schema: JSON) -> tuple[str | None, JSON]:
    if "$ref" in schema:
        return schema["$ref"], OPENAI[schema["$ref"]]
    return None, schema


def _branches(schema: JSON, resolve_ref: Any) -> list[JSON]:
    """The alternatives of a schema (its anyOf branches, or itself), references resolved."""
    schema = resolve_ref(schema)
    if "anyOf" in schema:
        return [resolve_ref(branch) for branch in schema["anyOf"]]
    return [schema]


def _types(branches: list[JSON]) -> set[str]:
    types: set[str] = set()
    for branch in branches:
        kind = branch.get("type")
        if kind is None and "const" in branch:
            kind = "string" if isinstance(branch["const"], str) else type(branch["const"]).__name__
        if kind is None and "properties" in branch:
            kind = "object"
        types.update([kind] if isinstance(kind, str) else kind or [])
    return types


def _values(branches: list[JSON]) -> set[Any] | None:
    """The values an enum or const allows, or None when any value of the type goes."""
    values: set[Any] = set()
    for branch in branches:
        if branch.get("type") == "null":
            continue
        if "enum" in branch:
            values.update(branch["enum"])
        elif "const" in branch:
            values.add(branch["const"])
        else:
            return None
    return values


@dataclass
class Comparison:
    """Compares one of our schemas with one of OpenAI's, property by property."""

    document: JSON
    request: bool  # a request body: we must accept what OpenAI's clients send
    nullable: set[tuple[str, str]] = field(default_factory=set)

    def ours(self, schema: JSON) -> JSON:
        return resolve(self.document, schema)

    def compare(self, ours: JSON, name: str) -> None:
        ours, theirs = self.ours(ours), OPENAI[name]
        for prop, their_prop in theirs["properties"].items():
            where = f"{name}.{prop}"
            assert prop in ours["properties"], f"{where}: missing from ours"
            our_branches = _branches(ours["properties"][prop], self.ours)
            their_branches = [_openai(b)[1] for b in _branches(their_prop, lambda s: s)]
            our_types, their_types = _types(our_branches), _types(their_branches)
            assert our_types - {"null"} == their_types - {"null"}, where
            if "null" in our_types and "null" not in their_types and not self.request:
                self.nullable.add((name, prop))
            if "null" in their_types:
                assert "null" in our_types, f"{where}: OpenAI allows null, ours does not"
            ours_allowed, theirs_allowed = _values(our_branches), _values(their_branches)
            if theirs_allowed is not None and ours_allowed is not None:
                assert theirs_allowed <= ours_allowed, f"{where}: {theirs_allowed - ours_allowed}"
            for their_branch, our_branch in zip(
                [b for b in _branches(their_prop, lambda s: s) if b.get("type") != "null"],
                [b for b in our_branches if b.get("type") != "null"],
                strict=True,
            ):
                self._nested(their_branch, our_branch, where)
            if self.request:
                self._bounds(ours["properties"][prop], their_prop, where)
        if self.request:
            # Everything OpenAI's clients may leave out, we do not require.
            assert set(ours.get("required", ())) <= set(theirs["required"]), name
        else:
            # Everything OpenAI's clients may count on, we always send.
            assert set(theirs["required"]) <= set(ours["required"]), name

    def _nested(self, theirs: JSON, ours: JSON, where: str) -> None:
        reference, _ = _openai(theirs)
        if reference is not None:
            self.compare(ours, reference)
        elif theirs.get("type") == "array":
            item_ref, item = _openai(theirs["items"])
            if item_ref is not None:
                self.compare(ours["items"], item_ref)
            else:
                assert _types([self.ours(ours["items"])]) == _types([item]), where

    def _bounds(self, ours: JSON, theirs: JSON, where: str) -> None:
        ours = self.ours(ours)
        if "minimum" in theirs and "minimum" in ours:
            assert ours["minimum"] <= theirs["minimum"], where
        if "maximum" in theirs and "maximum" in ours:
            assert ours["maximum"] >= theirs["maximum"], where


def _response(document: JSON, path: str, method: str) -> JSON:
    schema: JSON = document["paths"][path][method]["responses"]["200"]["content"][
        "application/json"
    ]["schema"]
    return schema


def _request(document: JSON, path: str) -> JSON:
    content = document["paths"][path]["post"]["requestBody"]["content"]
    schema: JSON = next(iter(content.values()))["schema"]
    return schema


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_our_responses_agree_with_openais_published_schemas(prefix: str) -> None:
    document = openapi_document(Policy(), ("", "/v1"))
    compare = Comparison(document, request=False)
    files = f"{prefix}/files"
    compare.compare(_response(document, files, "post"), "OpenAIFile")
    compare.compare(_response(document, files + "/{file_id}", "get"), "OpenAIFile")
    compare.compare(_response(document, files, "get"), "ListFilesResponse")
    compare.compare(_response(document, files + "/{file_id}", "delete"), "DeleteFileResponse")
    for action in ("", "/{upload_id}/complete", "/{upload_id}/cancel"):
        compare.compare(_response(document, f"{prefix}/uploads{action}", "post"), "Upload")
    parts = f"{prefix}/uploads/{{upload_id}}/parts"
    compare.compare(_response(document, parts, "post"), "UploadPart")
    assert compare.nullable == NULLABLE_BEYOND_OPENAI


@pytest.mark.parametrize("prefix", ["", "/v1"])
def test_we_accept_every_request_openais_schemas_allow(prefix: str) -> None:
    document = openapi_document(Policy(), ("", "/v1"))
    compare = Comparison(document, request=True)
    compare.compare(_request(document, f"{prefix}/files"), "CreateFileRequest")
    compare.compare(_request(document, f"{prefix}/uploads"), "CreateUploadRequest")
    compare.compare(
        _request(document, f"{prefix}/uploads/{{upload_id}}/parts"), "AddUploadPartRequest"
    )
    complete = _request(document, f"{prefix}/uploads/{{upload_id}}/complete")
    compare.compare(complete, "CompleteUploadRequest")


def test_the_comparison_catches_a_disagreement() -> None:
    document = openapi_document(Policy(), ("/v1",))
    file_schema = document["components"]["schemas"]["FileObject"]
    broken = json.loads(json.dumps(document))
    broken["components"]["schemas"]["FileObject"] = {
        **file_schema,
        "required": [name for name in file_schema["required"] if name != "status"],
    }
    with pytest.raises(AssertionError, match="OpenAIFile"):
        Comparison(broken, request=False).compare(
            _response(broken, "/v1/files", "post"), "OpenAIFile"
        )
    broken["components"]["schemas"]["FileObject"] = {
        **file_schema,
        "properties": {
            **file_schema["properties"],
            "status": {"type": "string", "enum": ["processed", "error"]},
        },
    }
    with pytest.raises(AssertionError, match="uploaded"):
        Comparison(broken, request=False).compare(
            _response(broken, "/v1/files", "post"), "OpenAIFile"
        )

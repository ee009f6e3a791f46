"""The official `openai` SDK, sync and async, against the app served by uvicorn on loopback."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import openai
import pytest

from openai_files import FilesService, MetadataStore, Storage, api_key_auth, create_app

from ..support import BATCH_LINE, ServerThread, serve


@pytest.fixture
def server(backends: tuple[Storage, MetadataStore]) -> Iterator[ServerThread]:
    service = FilesService(*backends)
    app = create_app(
        service, auth=api_key_auth({"sk-alice": "alice", "sk-bob": "bob"}), close_service=True
    )
    with serve(app) as running:
        yield running


def client(server: ServerThread, prefix: str = "/v1", key: str = "sk-alice") -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + prefix, api_key=key, max_retries=0)


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_sdk_round_trip_create_retrieve_content_list_delete(
    server: ServerThread, prefix: str
) -> None:
    sdk = client(server, prefix)
    data = os.urandom(3 * 1024 * 1024 + 5)
    created = sdk.files.create(file=("data.bin", data), purpose="assistants")
    assert created.object == "file"
    assert (created.bytes, created.filename) == (len(data), "data.bin")
    assert created.purpose == "assistants"
    assert created.status == "processed"
    assert created.status_details is None
    assert created.expires_at is None
    assert sdk.files.retrieve(created.id) == created
    content = sdk.files.content(created.id).content
    assert hashlib.sha256(content).hexdigest() == hashlib.sha256(data).hexdigest()
    assert [f.id for f in sdk.files.list()] == [created.id]
    deleted = sdk.files.delete(created.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (created.id, True, "file")
    with pytest.raises(openai.NotFoundError) as caught:
        sdk.files.retrieve(created.id)
    assert caught.value.body == {
        "message": f"No such File object: {created.id}",
        "type": "invalid_request_error",
        "param": "id",
        "code": "file_not_found",
    }
    with pytest.raises(openai.NotFoundError):
        sdk.files.content(created.id)
    with pytest.raises(openai.NotFoundError):
        sdk.files.delete(created.id)


def test_sdk_sends_expires_after_and_gets_expires_at(server: ServerThread) -> None:
    sdk = client(server)
    created = sdk.files.create(
        file=("notes.txt", b"hello"),
        purpose="user_data",
        expires_after={"anchor": "created_at", "seconds": 7200},
    )
    assert created.expires_at == created.created_at + 7200
    batch = sdk.files.create(file=("in.jsonl", BATCH_LINE), purpose="batch")
    assert batch.expires_at == batch.created_at + 30 * 24 * 3600
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.files.create(
            file=("x.txt", b"x"),
            purpose="user_data",
            expires_after={"anchor": "created_at", "seconds": 60},
        )
    assert caught.value.param == "expires_after[seconds]"


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_sdk_auto_pagination_returns_every_file_once_in_order(
    server: ServerThread, order: str
) -> None:
    sdk = client(server)
    created = [
        sdk.files.create(file=(f"f{index}.txt", b"x"), purpose="assistants").id
        for index in range(250)
    ]
    seen = [f.id for f in sdk.files.list(limit=7, order=order)]  # type: ignore[arg-type]
    assert seen == (created if order == "asc" else created[::-1])


def test_sdk_list_filters_by_purpose_and_pages_report_has_more(server: ServerThread) -> None:
    sdk = client(server)
    batch = [
        sdk.files.create(file=(f"b{i}.jsonl", BATCH_LINE), purpose="batch").id for i in range(3)
    ]
    sdk.files.create(file=("v.png", b"png"), purpose="vision")
    assert [f.id for f in sdk.files.list(purpose="batch", order="asc")] == batch
    page = sdk.files.list(limit=2, order="asc")
    assert page.has_more is True
    assert [f.id for f in page.data] == batch[:2]


def test_two_owners_never_see_each_others_files(server: ServerThread) -> None:
    alice, bob = client(server, key="sk-alice"), client(server, key="sk-bob")
    secret = alice.files.create(file=("secret.txt", b"alice only"), purpose="assistants")
    assert list(bob.files.list()) == []
    for call in (bob.files.retrieve, bob.files.content, bob.files.delete):
        with pytest.raises(openai.NotFoundError) as caught:
            call(secret.id)
        assert caught.value.body["message"] == f"No such File object: {secret.id}"  # type: ignore[index]
    assert alice.files.content(secret.id).content == b"alice only"


def test_unknown_api_key_is_401_in_openai_shape(server: ServerThread) -> None:
    with pytest.raises(openai.AuthenticationError) as caught:
        client(server, key="sk-wrong").files.list()
    assert caught.value.body == {
        "message": "Incorrect API key provided.",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


@pytest.mark.anyio
async def test_async_sdk_round_trip(server: ServerThread) -> None:
    sdk = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="sk-alice", max_retries=0)
    async with sdk:
        created = await sdk.files.create(file=("a.jsonl", BATCH_LINE), purpose="batch")
        assert (await sdk.files.retrieve(created.id)).id == created.id
        assert (await sdk.files.content(created.id)).content == BATCH_LINE
        assert [f.id async for f in sdk.files.list(limit=1)] == [created.id]
        assert (await sdk.files.delete(created.id)).deleted is True
        with pytest.raises(openai.NotFoundError):
            await sdk.files.retrieve(created.id)

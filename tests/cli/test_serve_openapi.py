"""``openai-files serve`` answers ``/openapi.json`` with the document of exactly what it serves,
and the configuration page lists every option of `create_app`."""

from __future__ import annotations

import inspect
from pathlib import Path

import httpx

from openai_files import create_app

from ..support import server_process

ROOT = Path(__file__).resolve().parents[2]


def test_serve_answers_openapi_json_with_the_routes_it_serves(tmp_path: Path) -> None:
    with server_process(tmp_path, "--data-dir", str(tmp_path / "data")) as server:
        document = httpx.get(server.url + "/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert {"/v1/files", "/v1/files/{file_id}/content", "/v1/uploads"} <= set(document["paths"])


def test_without_the_uploads_api_its_paths_are_not_in_the_document(tmp_path: Path) -> None:
    args = ["--data-dir", str(tmp_path / "data"), "--no-uploads-api"]
    with server_process(tmp_path, *args) as server:
        document = httpx.get(server.url + "/openapi.json").json()
    assert "/v1/files" in document["paths"]
    assert not [path for path in document["paths"] if "uploads" in path]


def test_the_configuration_page_lists_every_create_app_option() -> None:
    page = (ROOT / "docs" / "configuration.md").read_text()
    options = [
        name
        for name, parameter in inspect.signature(create_app).parameters.items()
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY
    ]
    assert options
    missing = [name for name in options if f"| `create_app` | `{name}` |" not in page]
    assert missing == []

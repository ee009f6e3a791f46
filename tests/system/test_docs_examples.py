"""Every example in the docs is a file in ``examples/`` that runs here.

The doc pages include their code from ``examples/`` (pymdownx.snippets, a whole file or a
``# --8<-- [start:NAME]`` ... ``[end:NAME]`` section of one); README.md, which GitHub renders
without includes, holds copies of example code. The first tests keep it that way; the others run
the examples the pages show and check what they do.
"""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from openai_files import FilesService, LocalStorage, SQLMetadataStore, api_key_auth, create_app
from openai_files.events import FileEvent
from openai_files.metadata.base import Quota
from openai_files.testing import StorageConformance

from ..support import BATCH_LINE, load_module, serve

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
DOCS = sorted((ROOT / "docs").glob("*.md"))

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})[ \t]*(?P<info>[^`\n]*)$")
INCLUDE = re.compile(r'^[ \t]*-{1,}8<-{1,}[ \t]+"(?P<target>[^"]+)"[ \t]*$')
MARKER = re.compile(r"-{1,}8<-{1,}[ \t]+\[[ \t]*(?P<kind>start|end)[ \t]*:[ \t]*(?P<name>[\w-]+)")
PYTHON = {"python", "py", "python3", "py3", "pycon"}


@dataclasses.dataclass
class CodeBlock:
    source: str
    line: int
    language: str
    lines: list[str]


def code_blocks(path: Path) -> Iterator[CodeBlock]:
    """The fenced code blocks of a Markdown file, with their language."""
    fence: str | None = None
    block: CodeBlock | None = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = FENCE.match(line)
        if fence is None:
            if match:
                fence = match["fence"]
                info = match["info"].strip().lstrip("{").lstrip(".")
                language = re.split(r"[\s}]", info, maxsplit=1)[0].lower() if info else ""
                block = CodeBlock(path.name, number, language, [])
        elif match and match["fence"].startswith(fence) and not match["info"].strip():
            assert block is not None
            yield block
            fence = block = None
        else:
            assert block is not None
            block.lines.append(line)
    assert fence is None, f"{path.name}: a code block is never closed"


def python_blocks(path: Path) -> list[CodeBlock]:
    return [block for block in code_blocks(path) if block.language in PYTHON]


def without_markers(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not MARKER.search(line))


def section(path: Path, name: str) -> str:
    """The lines between the file's start and end markers named ``name``; fails unless both
    appear exactly once, in that order, around some code."""
    lines = path.read_text().splitlines()
    marks = {
        kind: [
            i
            for i, line in enumerate(lines)
            if (m := MARKER.search(line)) and m.groups() == (kind, name)
        ]
        for kind in ("start", "end")
    }
    assert len(marks["start"]) == 1, f"{path.name}: [start:{name}] at lines {marks['start']}"
    assert len(marks["end"]) == 1, f"{path.name}: [end:{name}] at lines {marks['end']}"
    (start,), (end,) = marks["start"], marks["end"]
    body = without_markers("\n".join(lines[start + 1 : end]))
    assert body.strip(), f"{path.name}:{name} is empty"
    return textwrap.dedent(body)


def includes() -> list[tuple[str, str]]:
    """Every snippet include in the docs: (page, target)."""
    found = []
    for page in DOCS:
        for line in page.read_text().splitlines():
            if match := INCLUDE.match(line):
                found.append((page.name, match["target"]))
    return found


# -- the docs show example files ----------------------------------------------------------


def test_the_docs_build_fails_on_a_missing_example_or_section() -> None:
    config = (ROOT / "mkdocs.yml").read_text()
    snippets = config[config.index("- pymdownx.snippets:") :]
    assert re.search(r"\n\s+check_paths: true\n", snippets)
    assert "base_path: !relative $config_dir" in snippets


def test_no_doc_page_has_python_code_of_its_own() -> None:
    inline = [
        f"{block.source}:{block.line}"
        for page in DOCS
        for block in python_blocks(page)
        if any(line.strip() and not INCLUDE.match(line) for line in block.lines)
        or not any(INCLUDE.match(line) for line in block.lines)
    ]
    assert inline == [], "python blocks must include a file of examples/ (--8<-- ...)"
    # Every include sits in a python block: none is left in prose, and none was missed above.
    in_blocks = sum(
        1
        for page in DOCS
        for block in python_blocks(page)
        for line in block.lines
        if INCLUDE.match(line)
    )
    assert in_blocks == len(includes()) > 0


def test_every_include_names_an_example_file_and_section_that_exist() -> None:
    for page, target in includes():
        path, _, name = target.partition(":")
        assert re.fullmatch(r"examples/[\w/]+\.py", path), f"{page}: {target}"
        assert (ROOT / path).is_file(), f"{page}: {path} does not exist"
        if name:
            assert re.fullmatch(r"[a-z][-_0-9a-z]*", name), f"{page}: {target}"
            section(ROOT / path, name)  # exactly one start and one end, around some code


def test_every_section_marker_in_the_examples_is_paired() -> None:
    for path in sorted(EXAMPLES.rglob("*.py")):
        lines = path.read_text().splitlines()
        for name in {m["name"] for line in lines if (m := MARKER.search(line))}:
            section(path, name)  # one start, then one end


def test_the_readme_python_is_copied_from_the_examples() -> None:
    examples = [
        f"\n{without_markers(path.read_text())}\n" for path in sorted(EXAMPLES.rglob("*.py"))
    ]
    blocks = python_blocks(ROOT / "README.md")
    assert len(blocks) >= 2
    for block in blocks:
        code = textwrap.dedent("\n".join(block.lines)).strip("\n")
        # Whole lines, at any indentation: a block may be the body of a function.
        indented = [f"\n{textwrap.indent(code, ' ' * width)}\n" for width in range(0, 13, 4)]
        assert any(text in example for text in indented for example in examples), (
            f"README.md:{block.line} is not a copy of code in examples/:\n{code}"
        )


# -- the examples run ---------------------------------------------------------------------


def load_example(name: str) -> ModuleType:
    return load_module(EXAMPLES / f"{name}.py")


def run_example(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **(env or {}), "PYTHONDONTWRITEBYTECODE": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result


class Requests:
    """Counts the requests an ASGI app answers, by the last segment of the path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.seen: Counter[str] = Counter()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen[f"{scope['method']} {scope['path'].rsplit('/', 1)[-1]}"] += 1
        await self.app(scope, receive, send)


@pytest.fixture
def files_server(tmp_path: Path) -> Iterator[tuple[str, list[FileEvent], Requests]]:
    """A Files API on a free port with one key, ``sk-docs`` (owner ``docs``): its base URL, the
    events of its service and the requests it answered."""
    events: list[FileEvent] = []
    service = FilesService(
        LocalStorage(tmp_path / "files"),
        SQLMetadataStore(f"sqlite+aiosqlite:///{tmp_path / 'files.db'}"),
        events=[events.append],
    )
    app = Requests(create_app(service, auth=api_key_auth({"sk-docs": "docs"}), close_service=True))
    with serve(app) as server:
        yield f"{server.url}/v1", events, app


def test_the_quickstart_uploads_lists_downloads_and_deletes_with_the_sdk(
    files_server: tuple[str, list[FileEvent], Requests],
) -> None:
    base_url, events, requests = files_server
    result = run_example(
        str(EXAMPLES / "quickstart.py"),
        env={"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-docs"},
    )
    assert [(event.kind, event.owner) for event in events] == [
        ("created", "docs"),
        ("deleted", "docs"),
    ]
    file = events[0].file
    assert (file.filename, file.purpose, file.status) == ("requests.jsonl", "batch", "processed")
    assert file.expires_at == file.created_at + 86400
    listed, summary = result.stdout.splitlines()
    assert listed == f"{file.id} requests.jsonl {file.bytes}"
    assert summary == f"downloaded {file.id} intact; deleted it"
    assert requests.seen["GET content"] == 1
    assert (
        httpx.get(f"{base_url}/files", headers={"Authorization": "Bearer sk-docs"}).json()["data"]
        == []
    )


def test_the_uploads_example_sends_a_file_in_parts_through_the_uploads_api(
    files_server: tuple[str, list[FileEvent], Requests],
) -> None:
    base_url, events, requests = files_server
    result = run_example(
        str(EXAMPLES / "uploads_client.py"),
        env={"OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "sk-docs"},
    )
    ((event,),) = [events]
    file = event.file
    assert (event.kind, file.filename, file.purpose) == ("created", "train.jsonl", "fine-tune")
    assert file.status == "processed"  # validated as fine-tune JSONL on the way in
    assert 3 * 1024 * 1024 <= file.bytes < 3 * 1024 * 1024 + 1024
    assert result.stdout.splitlines() == [
        f"completed {file.id}",
        f"train.jsonl: {file.bytes} bytes, purpose fine-tune, intact",
    ]
    assert requests.seen["POST uploads"] == 1
    assert requests.seen["POST parts"] == 4  # 1 MiB parts: three full ones and the rest
    assert requests.seen["POST complete"] == 1
    assert requests.seen["POST files"] == 0


def test_the_starlette_example_serves_its_own_route_beside_the_files_api(tmp_path: Path) -> None:
    app: Starlette = load_example("starlette_app").build_app(tmp_path)
    with serve(app) as server:
        health = httpx.get(f"{server.url}/health")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert httpx.get(f"{server.url}/v1/files").status_code == 401
        with httpx.Client(
            base_url=f"{server.url}/v1", headers={"Authorization": "Bearer sk-team-a"}
        ) as files:
            upload = files.post(
                "/files", data={"purpose": "batch"}, files={"file": ("a.jsonl", BATCH_LINE)}
            )
            assert upload.status_code == 200, upload.text
            file_id = upload.json()["id"]
            assert [f["id"] for f in files.get("/files").json()["data"]] == [file_id]
            assert files.get(f"/files/{file_id}/content").content == BATCH_LINE
    with sqlite3.connect(tmp_path / "files.db") as database:  # small: kept with its record
        kept = database.execute("SELECT data FROM openai_files_file_bytes").fetchall()
    assert kept == [(BATCH_LINE,)]


@asynccontextmanager
async def asgi_client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://files.test/v1"
        ) as client,
    ):
        yield client


@pytest.mark.anyio
async def test_the_batch_only_policy_example_refuses_all_but_batch_jsonl(tmp_path: Path) -> None:
    example = load_example("batch_only_policy")
    assert example.POLICY.quota == Quota(max_files=1000)

    async def upload(
        client: httpx.AsyncClient, name: str, body: bytes, purpose: str
    ) -> httpx.Response:
        return await client.post("/files", data={"purpose": purpose}, files={"file": (name, body)})

    async with asgi_client(example.build_app(tmp_path / "data")) as files:
        wrong_purpose = await upload(files, "a.jsonl", BATCH_LINE, "assistants")
        assert (wrong_purpose.status_code, wrong_purpose.json()["error"]["param"]) == (
            400,
            "purpose",
        )
        wrong_type = await upload(files, "a.txt", BATCH_LINE, "batch")
        assert wrong_type.json()["error"]["code"] == "unsupported_file_type"
        not_batch = await upload(files, "a.jsonl", b'{"hello": "world"}\n', "batch")
        assert not_batch.json()["error"]["code"] == "invalid_file"
        batch = await upload(files, "a.jsonl", BATCH_LINE, "batch")
        assert batch.status_code == 200, batch.text
        assert batch.json()["expires_at"] == batch.json()["created_at"] + 7 * 86400
    # The quota is per owner and counts stored files; here with a smaller limit.
    policy = dataclasses.replace(example.POLICY, quota=Quota(max_files=1))
    async with asgi_client(example.build_app(tmp_path / "small", policy)) as files:
        assert (await upload(files, "a.jsonl", BATCH_LINE, "batch")).status_code == 200
        second = await upload(files, "b.jsonl", BATCH_LINE, "batch")
        assert (second.status_code, second.json()["error"]["code"]) == (400, "quota_exceeded")


def test_the_conformance_suite_passes_over_the_example_backend() -> None:
    result = run_example(
        "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLES / "test_dict_storage.py")
    )
    tests = [name for name in dir(StorageConformance) if name.startswith("test_")]
    assert len(tests) >= 10
    # A capability the example lacks (presigned URLs, listing, composing) is skipped, as optional.
    summary = re.search(r"^(\d+) passed, (\d+) skipped in ", result.stdout, re.MULTILINE)
    assert summary, result.stdout
    assert int(summary[1]) + int(summary[2]) == len(tests)
    skips = re.findall(r"^SKIPPED .*$", result.stdout, re.MULTILINE)
    assert skips, result.stdout
    assert all(skip.endswith("(optional)") for skip in skips), skips
    assert "failed" not in result.stdout
    assert "error" not in result.stdout


def test_the_fault_injection_example_keeps_every_promise() -> None:
    result = run_example(str(EXAMPLES / "fault_injection.py"))
    out = result.stdout
    assert "1. upload refused: Storage is unavailable: injected fault in put at chunk 3." in out
    assert "   nothing listed, nothing on disk" in out
    assert "   a sweep removed 1; 0 left on disk" in out
    (created, refused) = map(
        int, re.findall(r"under random faults: (\d+) uploads created, (\d+) refused", out)[0]
    )
    assert created + refused == 40
    assert created > 0
    injected = ast.literal_eval(re.findall(r"injected: (\{.*\})", out)[0])
    assert sum(injected.values()) >= refused
    assert f"   {created} files listed, each with all its bytes; no bytes without a record" in out

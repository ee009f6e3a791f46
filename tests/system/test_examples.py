"""The examples run as documented, and the batch worker holds its input while it works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import openai
import pytest

from openai_files import (
    Conflict,
    FileContent,
    FilesService,
    FileStat,
    MemoryMetadataStore,
    MemoryStorage,
)

from ..support import BATCH_LINE, free_port

EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("script", ["library.py", "batch_worker.py"])
def test_example_script_runs_to_completion(script: str) -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / script)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert "deleted" in result.stdout


@pytest.fixture
def batch_worker(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    import batch_worker

    return batch_worker


@pytest.mark.anyio
async def test_the_batch_worker_holds_its_input_and_writes_one_answer_a_line(
    batch_worker: ModuleType,
) -> None:
    async with FilesService(MemoryStorage(), MemoryMetadataStore()) as files:
        lines = [BATCH_LINE.replace(b"request-1", f"r{i}".encode()) for i in range(3)]
        source = await files.create(
            "team", file=b"".join(lines), filename="in.jsonl", purpose="batch"
        )
        refusals: list[str] = []
        original = files.content

        async def slow_content(
            owner: str,
            file_id: str,
            *,
            start: int = 0,
            end: int | None = None,
            stat: FileStat | None = None,
        ) -> FileContent:
            try:  # while the batch holds the input, a delete is refused
                await files.delete(owner, file_id)
            except Conflict as exc:
                refusals.append(exc.code)
            return await original(owner, file_id, start=start, end=end, stat=stat)

        files.content = slow_content  # type: ignore[method-assign]
        output_id = await batch_worker.run_batch(files, "team", source.id, "batch_9")
        files.content = original  # type: ignore[method-assign]
        assert refusals == ["conflict"]
        content = await files.content("team", output_id)
        written = b"".join([chunk async for chunk in content.chunks])
        answers = [json.loads(line) for line in written.splitlines()]
        assert [a["custom_id"] for a in answers] == ["r0", "r1", "r2"]
        assert (await files.retrieve("team", output_id)).purpose == "batch_output"
        assert (await files.delete("team", source.id)).deleted


def test_the_standalone_example_serves_the_sdk(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "OPENAI_FILES_DATA_DIR": str(tmp_path), "OPENAI_FILES_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "standalone.py")],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-local", max_retries=5
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                created = client.files.create(file=("a.jsonl", BATCH_LINE), purpose="batch")
                break
            except openai.APIConnectionError:
                assert time.monotonic() < deadline, "the example server did not start"
                time.sleep(0.2)
        assert client.files.content(created.id).content == BATCH_LINE
        assert (tmp_path / "files.db").exists()
    finally:
        process.terminate()
        process.wait(timeout=20)

"""The load: curl as the client, and the files and request bodies it sends.

curl streams files from disk and reports its own timings: a 256 MiB upload costs it about a
quarter of the CPU time that the fastest server spends.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import MiB

CURL = shutil.which("curl") or "/usr/bin/curl"
MULTIPART_BOUNDARY = "openai-files-benchmark-boundary"
_WRITE_OUT = "%{http_code} %{time_total} %{size_upload} %{size_download}\\n"


@dataclass(frozen=True)
class Transfer:
    """One request as curl saw it: status, total seconds, bytes sent and received."""

    status: int
    seconds: float
    uploaded: int
    downloaded: int

    @classmethod
    def parse(cls, line: str) -> Transfer:
        status, seconds, uploaded, downloaded = line.split()
        return cls(int(status), float(seconds), int(uploaded), int(downloaded))


def curl(url: str, *args: str, output: Path | None = None) -> Transfer:
    """One request; the response body goes to ``output`` (default: discarded)."""
    argv = [CURL, "-sS", "-H", "Expect:", "-o", str(output or os.devnull), "-w", _WRITE_OUT]
    completed = subprocess.run([*argv, *args, url], capture_output=True, text=True, check=True)
    return Transfer.parse(completed.stdout)


def curl_many(urls: Sequence[str]) -> list[Transfer]:
    """Requests one after the other on one kept-alive connection, bodies discarded."""
    argv = [CURL, "-sS", "-w", _WRITE_OUT]
    for url in urls:
        argv += ["-o", os.devnull, url]
    completed = subprocess.run(argv, capture_output=True, text=True, check=True)
    return [Transfer.parse(line) for line in completed.stdout.splitlines()]


def post_file(url: str, body: Path, content_type: str, *, output: Path | None = None) -> Transfer:
    """POST a file streamed from disk as the request body (curl ``-T``)."""
    return curl(
        url, "-X", "POST", "-H", f"Content-Type: {content_type}", "-T", str(body), output=output
    )


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def expect(transfer: Transfer, *, status: int = 200, downloaded: int | None = None) -> Transfer:
    """``transfer``, after checking that it succeeded; a failed request stops the benchmark."""
    if transfer.status != status:
        raise RuntimeError(f"expected HTTP {status}, got {transfer}")
    if downloaded is not None and transfer.downloaded != downloaded:
        raise RuntimeError(f"expected {downloaded} bytes, got {transfer}")
    return transfer


# -- test data ---------------------------------------------------------------------------------


def _random_blocks(size: int) -> Iterator[bytes]:
    """``size`` incompressible bytes: one random MiB, repeated."""
    block = os.urandom(MiB)
    for offset in range(0, size, MiB):
        yield block[: min(MiB, size - offset)]


def make_file(path: Path, size: int) -> Path:
    """A file of ``size`` incompressible bytes."""
    with path.open("wb") as handle:
        handle.writelines(_random_blocks(size))
    return path


def make_multipart_body(
    path: Path, size: int, *, purpose: str = "assistants", content: Path | None = None
) -> str:
    """Write a ``multipart/form-data`` upload of a ``size``-byte file to ``path``; return its
    Content-Type. The file's bytes are those of ``content`` when given (``size`` is then its
    size), else random.

    Built once, so that every contender receives byte for byte the same request, which curl
    streams from disk like any file.
    """
    dash = f"--{MULTIPART_BOUNDARY}"
    head = (
        f'{dash}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
        f'{dash}\r\nContent-Disposition: form-data; name="file"; filename="data.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    )
    with path.open("wb") as body:
        body.write(head.encode())
        if content is None:
            body.writelines(_random_blocks(size))
        else:
            with content.open("rb") as source:
                shutil.copyfileobj(source, body, MiB)
        body.write(f"\r\n{dash}--\r\n".encode())
    return f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"

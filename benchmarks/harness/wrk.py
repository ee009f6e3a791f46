"""Small requests at a steady rate: wrk (``apt-get install wrk``) as the client, and the Lua
scripts that give it a multipart body to upload or many paths to spread its requests over.

wrk is written in C and sends thousands of requests per second from one thread, so the server,
not the client, is what a run measures. Its Lua scripts build every request once, in ``init``,
and only hand a prepared one back per request.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

WRK = "wrk"
BOUNDARY = "openai-files-small-requests"


def wrk_missing() -> str | None:
    """Why wrk cannot run here, or None."""
    if shutil.which(WRK) is None:
        return "wrk is not installed (apt-get install -y wrk)"
    return None


@dataclass(frozen=True)
class WrkRun:
    """What one wrk run measured: requests per second, requests sent, mean latency."""

    rate: float
    requests: int
    latency_ms: float


def wrk(
    url: str,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    script: Path | None = None,
    prefix: Sequence[str] = (),
) -> WrkRun:
    """Run wrk against ``url`` (its scheme, host and port; ``script`` may choose the paths);
    ``prefix`` goes before the command (``taskset -c 0``). Fails on any error answer or socket
    error, with wrk's output."""
    argv = [*prefix, WRK, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "30s"]
    if script is not None:
        argv += ["-s", str(script)]
    completed = subprocess.run([*argv, url], capture_output=True, text=True, check=False)
    out = completed.stdout
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} {url} failed:\n{out}{completed.stderr}")
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"errors from {url}:\n{out}")
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    count = re.search(r"(\d+) requests in", out)
    latency = re.search(r"Latency\s+([\d.]+)(us|ms|s)\b", out)
    if rate is None or count is None or latency is None:
        raise RuntimeError(f"no figure from wrk:\n{out}")
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[latency[2]]
    return WrkRun(float(rate[1]), int(count[1]), float(latency[1]) * scale)


def multipart_body(content: bytes, *, filename: str, purpose: str) -> str:
    """A ``multipart/form-data`` body (boundary `BOUNDARY`) of ``purpose`` and one file;
    ``content`` must be ASCII."""
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n{purpose}\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: text/plain\r\n\r\n{content.decode('ascii')}\r\n--{BOUNDARY}--\r\n"
    )


_UPLOAD = """
wrk.method = "POST"
wrk.path = {path}
wrk.headers["Content-Type"] = "multipart/form-data; boundary={boundary}"
wrk.body = {body}
"""


def upload_script(
    path: Path, content: bytes, *, filename: str, purpose: str, url_path: str = "/v1/files"
) -> Path:
    """Write to ``path`` a wrk script that POSTs one file (``content``) to ``url_path``."""
    body = multipart_body(content, filename=filename, purpose=purpose)
    script = _UPLOAD.format(path=json.dumps(url_path), boundary=BOUNDARY, body=json.dumps(body))
    path.write_text(script)
    return path


_SPREAD = """
local paths = {{{paths}}}
local requests = {{}}
local next_request = 0

function init(args)
  for i, path in ipairs(paths) do
    requests[i] = wrk.format("GET", path)
  end
  -- each thread starts at its own place in the list
  next_request = math.random(#requests) - 1
end

function request()
  next_request = next_request % #requests + 1
  return requests[next_request]
end
"""


def spread_script(path: Path, url_paths: Sequence[str]) -> Path:
    """Write to ``path`` a wrk script whose GET requests go to ``url_paths`` in turn."""
    if not url_paths:
        raise ValueError("spread_script needs at least one path")
    path.write_text(_SPREAD.format(paths=", ".join(json.dumps(p) for p in url_paths)))
    return path

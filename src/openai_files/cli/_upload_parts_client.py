"""``openai-files upload`` through the Uploads API: the file sent in parts, several at once,
then assembled by the server; an interrupted upload is resumed from the parts already sent.

OpenAI's Uploads API has no call that lists an upload's parts, so the client keeps a resume
record beside the file, ``FILE.upload.json``: the server, the upload id, what the file was when
it started (size and modification time) and the id of every part sent. Run again, the command
sends only the parts the record lacks; once the upload is complete the record is removed. The
record holds no key. An upload the server no longer knows (expired, cancelled) starts over.
"""

from __future__ import annotations

import json
import mimetypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ._api_client import Advance, APIError, ClientError, FilesClient, JSONObject, MultipartBody

__all__ = [
    "AUTO_THRESHOLD",
    "DEFAULT_PART_SIZE",
    "PARALLEL_PARTS",
    "RESUME_SUFFIX",
    "PartsUpload",
    "upload_in_parts",
]

AUTO_THRESHOLD = 512 * 1024 * 1024
"""Files larger than this go through the Uploads API without ``--uploads-api``: OpenAI's
single-request limit, and this server's default."""
DEFAULT_PART_SIZE = 64 * 1024 * 1024
"""OpenAI's largest part, and this server's default ``max_part_size``."""
PARALLEL_PARTS = 4
RESUME_SUFFIX = ".upload.json"
MAX_PARTS = 10_000


@dataclass
class PartsUpload:
    """The resume record of one file's upload in parts."""

    base_url: str
    upload_id: str
    size: int
    mtime_ns: int
    part_size: int
    purpose: str
    parts: dict[str, str] = field(default_factory=dict)
    """Part number (from 0, as a string: JSON keys) -> the server's part id."""

    def matches(self, other: PartsUpload) -> bool:
        """Whether this record is of the same file, server, purpose and part size."""
        mine, theirs = asdict(self), asdict(other)
        ignored = ("upload_id", "parts")
        return all(mine[k] == theirs[k] for k in mine if k not in ignored)


def resume_record(path: Path) -> Path:
    return path.with_name(path.name + RESUME_SUFFIX)


def _load(record: Path) -> PartsUpload | None:
    try:
        data = json.loads(record.read_text())
        return PartsUpload(**data)
    except (OSError, ValueError, TypeError):
        return None


class _Record:
    """The resume record on disk, rewritten (atomically) as each part is sent."""

    def __init__(self, path: Path, upload: PartsUpload) -> None:
        self.path = path
        self.upload = upload
        self._lock = threading.Lock()
        self.save()

    def add(self, number: int, part_id: str) -> None:
        with self._lock:
            self.upload.parts[str(number)] = part_id
            self.save()

    def save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(asdict(self.upload)))
            os.replace(temporary, self.path)
        except OSError as exc:
            raise ClientError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def upload_in_parts(
    client: FilesClient,
    path: Path,
    purpose: str,
    *,
    expires_after: int | None = None,
    part_size: int = DEFAULT_PART_SIZE,
    parallel: int = PARALLEL_PARTS,
    progress: Callable[[int, int], Advance],
    note: Callable[[str], None],
) -> JSONObject:
    """Upload the file at ``path`` in parts of ``part_size`` bytes, ``parallel`` at a time, and
    give the file object the completed upload made; ``progress(total, done)`` gives the
    callback told of each part's bytes, ``note`` says what is resumed."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    count = max(1, -(-stat.st_size // part_size))
    if count > MAX_PARTS:
        raise ClientError(
            f"{path.name} would take {count} parts of {part_size} bytes, more than the "
            f"{MAX_PARTS} an upload may hold: pass a larger --part-size"
        )
    wanted = PartsUpload(
        client.connection.base_url, "", stat.st_size, stat.st_mtime_ns, part_size, purpose
    )
    record_path = resume_record(path)
    earlier = _load(record_path)
    if earlier is not None and earlier.matches(wanted):
        note(f"resuming upload {earlier.upload_id}: {len(earlier.parts)} of {count} parts sent")
        try:
            return _send(client, path, _Record(record_path, earlier), count, parallel, progress)
        except APIError as exc:
            if exc.status != 404:
                raise
            note(f"the server no longer has upload {earlier.upload_id}: starting over")
    media_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    fields: JSONObject = {
        "filename": path.name,
        "purpose": purpose,
        "bytes": stat.st_size,
        "mime_type": media_type,
    }
    if expires_after is not None:
        fields["expires_after"] = {"anchor": "created_at", "seconds": expires_after}
    created = client.create_upload(fields)
    wanted.upload_id = str(created.get("id"))
    return _send(client, path, _Record(record_path, wanted), count, parallel, progress)


def _send(
    client: FilesClient,
    path: Path,
    record: _Record,
    count: int,
    parallel: int,
    progress: Callable[[int, int], Advance],
) -> JSONObject:
    upload = record.upload
    missing = [n for n in range(count) if str(n) not in upload.parts]
    done = sum(_length(upload, n) for n in range(count) if str(n) in upload.parts)
    advance = progress(upload.size, done)

    def send(number: int) -> None:
        length = _length(upload, number)
        with path.open("rb") as file:
            file.seek(number * upload.part_size)
            body = MultipartBody({}, file, path.name, length, name="data")
            part = client.add_part(upload.upload_id, body, advance)
        record.add(number, str(part.get("id")))

    pool = ThreadPoolExecutor(max_workers=max(1, parallel))
    try:
        for sent in [pool.submit(send, n) for n in missing]:
            sent.result()
    except Exception:
        # The first failure stops the command: parts on their way finish and are recorded,
        # the others are not started.
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    except BaseException:  # Ctrl-C: stop at once; the record has every part finished so far
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    part_ids = [upload.parts[str(n)] for n in range(count)]
    completed = client.complete_upload(upload.upload_id, part_ids)
    record.remove()
    file = completed.get("file")
    if not isinstance(file, dict):
        raise ClientError(f"upload {upload.upload_id} completed without a file object")
    return file


def _length(upload: PartsUpload, number: int) -> int:
    return min(upload.part_size, upload.size - number * upload.part_size)

"""Where ``openai-files download`` writes: the final path and its two side files.

A download never touches a file it did not create. The bytes go to ``PATH.part``, beside a
record, ``PATH.part.json``, of the file id, its size and the server's ETag; only a later
download of the same id continues that part. ``PATH`` itself is taken in one step once the
part holds every byte, and an existing ``PATH`` is replaced only under ``force``. No name is
followed if it is a symbolic link: the side files are opened with ``O_NOFOLLOW`` and created
with ``O_EXCL``, and the final name is taken by ``link`` (which fails if it exists) or, under
``force``, by ``rename`` (which replaces a link rather than its target).
"""

from __future__ import annotations

import errno
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ._api_client import ClientError

__all__ = ["PART_SUFFIX", "RECORD_SUFFIX", "DownloadTarget", "Resume"]

PART_SUFFIX = ".part"
RECORD_SUFFIX = ".part.json"
RECORD_MAX_BYTES = 64 * 1024

_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_BINARY = getattr(os, "O_BINARY", 0)
# link() not offered by the file system: the final name is then checked, then renamed to.
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK}


@dataclass(frozen=True)
class Resume:
    """Where a download starts: ``offset`` bytes are already in the part, and ``etag`` is the
    server's tag for them (sent as ``If-Range``), None when it sent none."""

    offset: int = 0
    etag: str | None = None


class DownloadTarget:
    """The download of file ``file_id`` (``size`` bytes) to ``path``.

    Use: `prepare` (checks, and says where to start), then `open` with the start the server
    agreed to and its ETag, write, then `commit`. Every failure is a `ClientError` that names
    the path and what to do.
    """

    def __init__(self, path: Path, file_id: str, size: int, *, force: bool = False) -> None:
        self.path = path
        self.part = path.with_name(path.name + PART_SUFFIX)
        self.record = path.with_name(path.name + RECORD_SUFFIX)
        self.file_id = file_id
        self.size = size
        self.force = force
        self._ours = False  # the side files on disk are this download's

    def prepare(self) -> Resume:
        """Check that the download may go ahead and return where it starts.

        ``path`` must not exist unless ``force``. Side files left by an earlier download of
        the same id are resumed; any other file at their names (another id's, the user's own,
        a link) stops the download unless ``force``, which removes them.
        """
        if not self.force and _exists(self.path):
            raise ClientError(
                f"{self.path} already exists: pass --force to overwrite it, or choose another -o"
            )
        recorded, part = self._read_record(), _lstat(self.part)
        if recorded is None and part is None:
            return Resume()
        same_file = recorded is not None and recorded.get("file_id") == self.file_id
        if same_file and (part is None or stat.S_ISREG(part.st_mode)):
            self._ours = True
            return self._resume_from(recorded or {}, part.st_size if part else 0)
        if not self.force:
            raise ClientError(
                f"{self.part} is not a partial download of {self.file_id}: remove it and "
                f"{self.record}, pass --force to replace them, or choose another -o"
            )
        for side in (self.part, self.record):
            _remove(side)
        return Resume()

    def _resume_from(self, recorded: dict[str, object], have: int) -> Resume:
        if recorded.get("bytes") != self.size or have > self.size:
            return Resume()  # not a beginning of this file: download it again over the part
        etag = recorded.get("etag")
        return Resume(have, etag if isinstance(etag, str) else None)

    def _read_record(self) -> dict[str, object] | None:
        """The record's fields; ``{}`` for a file there that is not a record; None if none."""
        try:
            fd = os.open(self.record, os.O_RDONLY | _NOFOLLOW | _BINARY | os.O_NONBLOCK)
        except FileNotFoundError:
            return None
        except OSError:
            return {} if _exists(self.record) else None
        with os.fdopen(fd, "rb") as file:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return {}
            text = file.read(RECORD_MAX_BYTES + 1)
        try:
            fields = json.loads(text) if len(text) <= RECORD_MAX_BYTES else None
        except ValueError:
            fields = None
        return fields if isinstance(fields, dict) else {}

    @contextmanager
    def open(self, start: int, etag: str | None) -> Iterator[BinaryIO]:
        """The part, open for writing at byte ``start`` (0 or the offset `prepare` gave),
        recorded as holding the beginning of this file with ETag ``etag``."""
        ours = self._ours
        self._write_record(etag)
        try:
            fd = self._open_part(ours)
        except OSError as exc:
            if not ours:
                _remove(self.record)  # the part is not ours: neither is this record
            raise self._unwritable(self.part, exc) from exc
        self._ours = True
        with os.fdopen(fd, "wb") as out:
            if not stat.S_ISREG(os.fstat(fd).st_mode) or os.fstat(fd).st_size < start:
                raise ClientError(f"{self.part} changed during the download: run it again")
            out.truncate(start)
            out.seek(start)
            yield out

    def _open_part(self, ours: bool) -> int:
        flags = os.O_WRONLY | _NOFOLLOW | _BINARY
        if ours:
            with suppress(FileNotFoundError):
                return os.open(self.part, flags)
        return os.open(self.part, flags | os.O_CREAT | os.O_EXCL, 0o666)

    def _write_record(self, etag: str | None) -> None:
        fields = {"file_id": self.file_id, "bytes": self.size, "etag": etag}
        flags = os.O_WRONLY | _NOFOLLOW | _BINARY
        flags |= os.O_TRUNC if self._ours else os.O_CREAT | os.O_EXCL
        try:
            fd = os.open(self.record, flags, 0o666)
            with os.fdopen(fd, "wb") as out:
                out.write(json.dumps(fields).encode())
        except OSError as exc:
            raise self._unwritable(self.record, exc) from exc

    def commit(self) -> None:
        """Give the complete part its final name, then drop the record. Without ``force``, a
        file that appeared at ``path`` meanwhile is left alone and the part kept."""
        have = _size(self.part)
        if have != self.size:
            more = "run the command again to resume" if have < self.size else "more than expected"
            raise ClientError(f"{self.part} has {have} of {self.size} bytes: {more}")
        try:
            if self.force:
                os.replace(self.part, self.path)
            else:
                self._take_final_name()
        except OSError as exc:
            raise ClientError(
                f"cannot move {self.part} to {self.path}: {exc.strerror or exc}"
            ) from exc
        _remove(self.record)

    def _take_final_name(self) -> None:
        try:
            if os.link in os.supports_follow_symlinks:
                os.link(self.part, self.path, follow_symlinks=False)
            else:
                os.link(self.part, self.path)
        except FileExistsError:
            raise ClientError(
                f"{self.path} appeared during the download: the download is kept in {self.part}"
            ) from None
        except OSError as exc:
            if exc.errno not in _NO_HARD_LINKS:
                raise
            if _exists(self.path):
                raise ClientError(f"{self.path} appeared during the download") from None
            os.rename(self.part, self.path)
            return
        os.unlink(self.part)

    def _unwritable(self, path: Path, exc: OSError) -> ClientError:
        if isinstance(exc, FileExistsError) or exc.errno == errno.ELOOP:
            return ClientError(f"{path} appeared during the download: run it again")
        return ClientError(f"cannot write {path}: {exc.strerror or exc}")


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _exists(path: Path) -> bool:
    """Whether any file is at ``path``, a dangling symbolic link included."""
    return _lstat(path) is not None


def _size(path: Path) -> int:
    found = _lstat(path)
    return found.st_size if found is not None and stat.S_ISREG(found.st_mode) else 0


def _remove(path: Path) -> None:
    try:
        with suppress(FileNotFoundError):
            os.unlink(path)
    except OSError as exc:
        raise ClientError(f"cannot remove {path}: {exc.strerror or exc}") from exc

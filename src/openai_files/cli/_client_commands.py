"""The client commands of ``openai-files``: ``upload``, ``list``, ``get``, ``download`` and
``delete``, against this project's server or any OpenAI-compatible Files API.

The base URL and API key are read as the openai SDKs read them: ``--base-url``/``--api-key``,
else ``OPENAI_BASE_URL``/``OPENAI_API_KEY``; requests go to ``{base_url}/files``. Bodies stream
both ways: an upload is read from disk as it is sent, a download written as it arrives.

Every failure reaches the command line as one line, ``error: <message>``, and exit status 1.
The HTTP side is `FilesClient` (`openai_files.cli._api_client`), which takes plain values.

rich is imported only while a progress bar is shown.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from ._api_client import (
    Advance,
    APIError,
    ClientError,
    Connection,
    ConnectionFailed,
    Download,
    FilesClient,
    JSONObject,
    MultipartBody,
    files_of,
    printable,
)
from ._base_url import DEFAULT_BASE_URL, START_HINT
from ._download_target import RECORD_SUFFIX, DownloadTarget, Resume
from ._upload_parts_client import AUTO_THRESHOLD, DEFAULT_PART_SIZE, upload_in_parts

__all__ = ["COMMANDS", "run_client_command", "safe_filename"]

COLUMNS = ("id", "filename", "bytes", "purpose", "status", "created_at", "expires_at")


NAME_MAX_BYTES = 255 - len(RECORD_SUFFIX)
"""The longest name a download takes from the server, so that its side files' names fit the
255 bytes most file systems allow."""


def safe_filename(name: str, fallback: str) -> str:
    """``name`` as a plain, visible file name in the current directory: only its last path
    component (after ``/`` or ``\\``), without control or format characters or surrounding
    spaces, not ``.`` or ``..``, a leading dot prefixed with ``_`` (``.bashrc`` becomes
    ``_.bashrc``), at most `NAME_MAX_BYTES` bytes; ``fallback`` (then ``download``) when
    nothing is left."""
    for candidate in (name, fallback):
        base = PurePosixPath(candidate.replace("\\", "/")).name
        base = "".join(c for c in base if c.isprintable()).strip()
        if base in {"", ".", ".."}:
            continue
        if base.startswith("."):
            base = "_" + base
        return base.encode()[:NAME_MAX_BYTES].decode(errors="ignore")
    return "download"


# The commands: each takes the client and the parsed arguments, prints its result on stdout
# and notes on stderr, and raises ClientError.


@contextmanager
def progress_bar(shown: bool, label: str, total: int, completed: int = 0) -> Iterator[Advance]:
    """A byte-counting progress bar on stderr while the block runs, when ``shown``."""
    if not shown:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        TaskProgressColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task(printable(label), total=total, completed=completed)
        yield lambda sent: bar.advance(task, sent)


def _progress_shown(args: argparse.Namespace) -> bool:
    return not args.no_progress and sys.stderr.isatty()


def _note(message: str) -> None:
    print(message, file=sys.stderr)


def _print_json(obj: JSONObject) -> None:
    print(json.dumps(obj))


def upload(client: FilesClient, args: argparse.Namespace) -> None:
    path = Path(args.file)
    if args.uploads_api or args.part_size or _size_of(path) > AUTO_THRESHOLD:
        created = _upload_in_parts(client, args, path)
    else:
        try:
            created = _upload_whole(client, args, path)
        except APIError as exc:
            if exc.status != 413:
                raise
            _note(f"{exc.message}: sending it through the Uploads API instead")
            created = _upload_in_parts(client, args, path)
    if args.json:
        _print_json(created)
    else:
        print(printable(str(created.get("id"))))


def _upload_in_parts(client: FilesClient, args: argparse.Namespace, path: Path) -> JSONObject:
    shown = _progress_shown(args)
    with ExitStack() as bars:

        def progress(total: int, done: int) -> Advance:
            return bars.enter_context(progress_bar(shown, path.name, total, completed=done))

        try:
            return upload_in_parts(
                client,
                path,
                args.purpose,
                expires_after=args.expires_after,
                part_size=args.part_size or DEFAULT_PART_SIZE,
                progress=progress,
                note=_note,
            )
        except ConnectionFailed as exc:
            raise ConnectionFailed(f"{exc}; run the command again to resume") from exc
        except APIError as exc:
            if exc.status < 500:
                raise
            raise APIError(f"{exc.message}; run the command again to resume", exc.status) from exc


def _upload_whole(client: FilesClient, args: argparse.Namespace, path: Path) -> JSONObject:
    fields = {"purpose": args.purpose}
    if args.expires_after is not None:
        fields["expires_after[anchor]"] = "created_at"
        fields["expires_after[seconds]"] = str(args.expires_after)
    try:
        file = path.open("rb")
        size = os.fstat(file.fileno()).st_size
    except OSError as exc:
        raise ClientError(f"cannot read {path}: {exc.strerror or exc}") from exc
    with file, progress_bar(_progress_shown(args), path.name, size) as advance:
        return client.create(MultipartBody(fields, file, path.name, size), advance)


def list_files(client: FilesClient, args: argparse.Namespace) -> None:
    query = {"purpose": args.purpose, "limit": args.limit, "order": args.order, "after": args.after}
    more = False
    if args.all:
        files: Iterator[JSONObject] | list[JSONObject] = client.iter_files(**query)
    else:
        page = client.list_page(**query)
        files, more = files_of(page), bool(page.get("has_more"))
    if args.json:
        for found in files:
            _print_json(found)
        return
    print(file_table(list(files)))
    if more:
        _note("more files follow: pass --all, or --after with the last id")


def get(client: FilesClient, args: argparse.Namespace) -> None:
    found = client.retrieve(args.file_id)
    if args.json:
        _print_json(found)
        return
    width = max(len(column) for column in COLUMNS)
    for column in COLUMNS:
        print(f"{column.ljust(width)}  {cell(found, column)}")


def delete(client: FilesClient, args: argparse.Namespace) -> None:
    deleted = client.delete(args.file_id)
    if deleted.get("deleted") is not True:
        raise ClientError(f"the server did not delete {args.file_id}")
    print(f"deleted {args.file_id}")


def download(client: FilesClient, args: argparse.Namespace) -> None:
    found = client.retrieve(args.file_id)
    expected = found.get("bytes")
    if not isinstance(expected, int) or expected < 0:
        raise ClientError(f"unexpected answer: {args.file_id} has no 'bytes'")
    name = safe_filename(str(found.get("filename") or ""), args.file_id)
    path = Path(args.output or name)
    if path.is_dir():
        path = path / name
    target = DownloadTarget(path, args.file_id, expected, force=args.force)
    resume = target.prepare()
    if resume.offset and resume.offset == expected:
        _note(f"{target.part} is already complete ({expected} bytes)")
    else:
        _fetch(client, args, target, resume)
    target.commit()
    print(path)


def _fetch(
    client: FilesClient, args: argparse.Namespace, target: DownloadTarget, resume: Resume
) -> None:
    """Write the file's bytes to the target's part, after the ``resume.offset`` bytes already
    there if the server honours the range (and its ETag is still ``resume.etag``), else from
    the start."""
    have = resume.offset
    try:
        with client.content(args.file_id, offset=have, if_range=resume.etag) as body:
            if have and body.start:
                _note(f"resuming at {have} bytes")
            elif have:
                _note(
                    "the server sent the whole file (it does not resume downloads, or the file "
                    "changed): downloading from the start"
                )
            _write(body, target, _progress_shown(args))
    except ConnectionFailed as exc:
        if _size_of(target.part):
            raise ConnectionFailed(f"{exc}; run the command again to resume") from exc
        raise


def _size_of(path: Path) -> int:
    """The size of the file at ``path``; 0 when there is none."""
    try:
        return path.lstat().st_size
    except OSError:
        return 0


def _write(body: Download, target: DownloadTarget, shown: bool) -> None:
    """The body into the target's part, refusing bytes beyond the file's size."""
    written = body.start
    try:
        with (
            target.open(body.start, body.etag) as out,
            progress_bar(shown, target.path.name, target.size, completed=body.start) as advance,
        ):
            for chunk in body.chunks():
                written += len(chunk)
                if written > target.size:
                    raise ClientError(f"the server sent more than the file's {target.size} bytes")
                out.write(chunk)
                advance(len(chunk))
    except OSError as exc:
        raise ClientError(f"cannot write {target.part}: {exc.strerror or exc}") from exc


def file_table(files: list[JSONObject]) -> str:
    """An aligned text table of ``files``, one row each, under a header of `COLUMNS`."""
    rows = [COLUMNS, *(tuple(cell(f, column) for column in COLUMNS) for f in files)]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def cell(file: JSONObject, column: str) -> str:
    """A file object's field as shown to people: times in ISO 8601 UTC, ``-`` for none."""
    value = file.get(column)
    if value is None:
        return "-"
    if column.endswith("_at") and isinstance(value, int):
        try:
            return datetime.fromtimestamp(value, UTC).isoformat().replace("+00:00", "Z")
        except (OverflowError, OSError, ValueError):
            return str(value)
    return printable(str(value))


COMMANDS: Mapping[str, Callable[[FilesClient, argparse.Namespace], None]] = {
    "upload": upload,
    "list": list_files,
    "get": get,
    "download": download,
    "delete": delete,
}


def connection_from_args(args: argparse.Namespace) -> Connection:
    """``--base-url`` and ``--api-key``, which default to the SDKs' environment variables,
    and then to the local server, `DEFAULT_BASE_URL`."""
    return Connection.to(args.base_url, args.api_key)


def _named_server(connection: Connection) -> None:
    """Say which server the command talks to when it is not the local default, on stderr
    when that is a terminal (a script's stderr keeps only errors)."""
    if connection.base_url != DEFAULT_BASE_URL and sys.stderr.isatty():
        _note(f"server: {printable(connection.base_url)}")


def _with_hint(exc: ClientError, connection: Connection) -> str:
    if isinstance(exc, ConnectionFailed) and connection.base_url == DEFAULT_BASE_URL:
        return f"{exc} ({START_HINT})"
    return str(exc)


def run_client_command(args: argparse.Namespace) -> int:
    """Run the client command ``args`` describe, and give its exit status.

    - 0: done;
    - 1: a `ClientError` (unreachable server, error answer, unreadable or unwritable file),
      reported as one line on stderr, ``error: <message>``;
    - 130: interrupted (Ctrl-C).
    """
    try:
        connection = connection_from_args(args)
    except ClientError as exc:
        _note(f"error: {exc}")
        return 1
    _named_server(connection)
    try:
        with FilesClient(connection) as client:
            COMMANDS[args.command](client, args)
    except ClientError as exc:
        _note(f"error: {_with_hint(exc, connection)}")
        return 1
    except KeyboardInterrupt:
        _note("error: interrupted")
        return 130
    return 0

"""``openai-files admin usage``: every owner's files and bytes, from a server's admin view
(``GET /admin/usage``, opened by ``serve --admin-key``).

The server is ``--url`` (else ``OPENAI_FILES_URL``, else ``http://127.0.0.1:8000``; a base URL
ending in ``/v1`` is taken to its root), the key ``--admin-key`` (else
``OPENAI_FILES_ADMIN_KEY``). Failures are one line, ``error: <message>``, and status 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._api_client import FilesClient

__all__ = ["DEFAULT_SERVER_URL", "add_admin_commands", "run_admin_command"]

DEFAULT_SERVER_URL = "http://127.0.0.1:8000"
COLUMNS = ("owner", "files", "bytes", "open_uploads")


def add_admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``admin usage`` to ``commands``."""
    admin = commands.add_parser("admin", help="operate a server: usage of every owner")
    actions = admin.add_subparsers(dest="admin_command", required=True)
    usage = actions.add_parser(
        "usage",
        help="files and bytes per owner (GET /admin/usage)",
        description="Every owner's files, bytes and open uploads, by owner, from a server "
        "started with --admin-key.",
    )
    usage.add_argument(
        "--url",
        default=os.environ.get("OPENAI_FILES_URL") or DEFAULT_SERVER_URL,
        help=f"the server (OPENAI_FILES_URL; default {DEFAULT_SERVER_URL})",
    )
    usage.add_argument(
        "--admin-key",
        default=os.environ.get("OPENAI_FILES_ADMIN_KEY") or None,
        help="the server's admin key (OPENAI_FILES_ADMIN_KEY)",
    )
    usage.add_argument("--owner", help="only this owner")
    usage.add_argument("--after", metavar="OWNER", help="start after this owner")
    usage.add_argument("--limit", type=int, metavar="N", help="owners per page (server: 100)")
    usage.add_argument("--all", action="store_true", help="every page, until has_more is false")
    usage.add_argument("--json", action="store_true", help="print the JSON objects, one a line")


def run_admin_command(args: argparse.Namespace) -> int:
    """Run ``admin usage``; 0 when done, 1 for an error (reported on stderr)."""
    # The client (httpx, which imports rich) only for the command itself.
    from ._api_client import ClientError, Connection, FilesClient

    try:
        if not args.admin_key:
            raise ClientError("no admin key: pass --admin-key or set OPENAI_FILES_ADMIN_KEY")
        root = args.url.rstrip("/").removesuffix("/v1")
        with FilesClient(Connection.to(root, args.admin_key)) as client:
            rows = list(_usage_rows(client, args))
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        for row in rows:
            print(json.dumps(row))
    else:
        print(usage_table(rows))
    return 0


def _usage_rows(client: FilesClient, args: argparse.Namespace) -> list[dict[str, Any]]:
    from ._api_client import ClientError

    query: dict[str, str | int] = {}
    if args.owner is not None:
        query["owner"] = args.owner
    if args.limit is not None:
        query["limit"] = args.limit
    after = args.after
    rows: list[dict[str, Any]] = []
    while True:
        page = client._json(
            "GET", "admin/usage", params=query | ({"after": after} if after else {})
        )
        data = page.get("data")
        if not isinstance(data, list):
            raise ClientError("unexpected answer: no 'data' list")
        rows += [row for row in data if isinstance(row, dict)]
        more = bool(page.get("has_more")) and bool(data)
        if not more:
            return rows
        if not args.all:
            print("more owners follow: pass --all, or --after with the last one", file=sys.stderr)
            return rows
        last = data[-1].get("owner") if isinstance(data[-1], dict) else None
        if not isinstance(last, str) or last == after:
            raise ClientError("the server's usage pages do not advance")
        after = last


def usage_table(rows: list[dict[str, Any]]) -> str:
    """An aligned table of usage rows under a header of `COLUMNS`, numbers to the right."""
    cells = [COLUMNS, *(tuple(str(row.get(c, "")) for c in COLUMNS) for row in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]
    lines = []
    for line in cells:
        owner, *numbers = line
        lines.append(
            "  ".join(
                [owner.ljust(widths[0])]
                + [cell.rjust(width) for cell, width in zip(numbers, widths[1:], strict=True)]
            )
        )
    return "\n".join(lines)

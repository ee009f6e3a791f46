"""Whether the backends answer: the cheap probes behind readiness and the start-up checks, and
the driver's own message of a failure, with credentials masked, for the logs.

A probe of the metadata store reads one owner's usage (a SQL store creates or checks its
tables on its first call, so a wrong database, host or password shows here); a probe of storage
asks for the size of a key that does not exist, or, with ``write=True`` (at start-up), writes
and removes a small object, which also shows a missing bucket or a read-only directory.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import anyio

from .errors import BlobNotFound
from .metadata.base import MetadataStore
from .storage.base import Storage, chained

__all__ = ["BackendCheck", "Readiness", "check_backends", "driver_message", "masked"]

PROBE_OWNER = "openai-files-readiness-probe"
"""The owner whose usage the metadata probe reads (reading creates nothing)."""
PROBE_KEY = "openai-files-probe"
"""The key the storage probe asks for, writes and removes: at the top, so that removing it
leaves no directory behind on local disk (real keys are sharded, one directory deep)."""


@dataclass(frozen=True)
class BackendCheck:
    """One probe's outcome: ``ok``, and when not, ``error``, what went wrong in a sentence."""

    ok: bool
    error: str | None = None

    def as_dict(self) -> dict[str, object]:
        return {"status": "ok"} if self.ok else {"status": "failed", "error": self.error}


@dataclass(frozen=True)
class Readiness:
    """The outcome of probing both backends: ``ready`` when both answered in time."""

    metadata: BackendCheck
    storage: BackendCheck

    @property
    def ready(self) -> bool:
        return self.metadata.ok and self.storage.ok

    def as_dict(self) -> dict[str, object]:
        """The body of a readiness answer: ``{"status": "ready" | "not_ready", "checks"}``."""
        return {
            "status": "ready" if self.ready else "not_ready",
            "checks": {"metadata": self.metadata.as_dict(), "storage": self.storage.as_dict()},
        }


async def check_backends(
    storage: Storage, metadata: MetadataStore, *, within: float, write: bool = False
) -> Readiness:
    """Probe both backends at once, each within ``within`` seconds (see the module's text)."""
    results: dict[str, BackendCheck] = {}

    async def run(name: str, probe: Callable[[], Awaitable[None]]) -> None:
        results[name] = await _checked(name, probe, within)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(run, "metadata", lambda: _probe_metadata(metadata))
        tasks.start_soon(run, "storage", lambda: _probe_storage(storage, write=write))
    return Readiness(metadata=results["metadata"], storage=results["storage"])


async def _checked(name: str, probe: Callable[[], Awaitable[None]], within: float) -> BackendCheck:
    try:
        with anyio.fail_after(within):
            await probe()
    except TimeoutError:
        return BackendCheck(False, f"the {name} did not answer within {within:g} s")
    except Exception as exc:
        return BackendCheck(False, driver_message(exc))
    return BackendCheck(True)


async def _probe_metadata(metadata: MetadataStore) -> None:
    await metadata.usage(PROBE_OWNER)


async def _probe_storage(storage: Storage, *, write: bool) -> None:
    key = PROBE_KEY
    if write:
        await storage.put(key, chained([b"openai-files start-up check\n"]))
        await storage.delete(key)
        return
    with contextlib.suppress(BlobNotFound):
        await storage.head(key)


_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][\w+.-]*://)(?P<user>[^:@/\s]*):[^@/\s]*@")
_SECRET_PAIRS = re.compile(
    r"(?i)\b(?P<name>password|passwd|secret|token|access_key|secret_access_key|aws_secret_access_key)"
    r"(?P<sep>\s*[=:]\s*)(?P<value>[^\s&,;'\"]+)"
)


def masked(text: str) -> str:
    """``text`` with the password of every URL in it, and ``password=...``-like values,
    replaced by ``***``."""
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_PAIRS.sub(lambda m: f"{m['name']}{m['sep']}***", text)


def driver_message(exc: BaseException) -> str:
    """What went wrong, for a log line: the library's message followed by the first line of
    the driver's own (the innermost cause), credentials masked."""
    own = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    cause = exc
    while cause.__cause__ is not None or (
        cause.__context__ is not None and not cause.__suppress_context__
    ):
        cause = cause.__cause__ or cause.__context__  # type: ignore[assignment]
    text = own
    if cause is not exc:
        lines = str(cause).strip().splitlines()
        driver = lines[0][:300] if lines else type(cause).__name__
        text = f"{own} ({type(cause).__name__}: {driver})"
    return masked(text)

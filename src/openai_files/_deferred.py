"""Deferred validation: a file stored unchecked (``Policy(validation="deferred")``) checked
against its purpose's JSONL rules when a batch first uses it, and its verdict recorded."""

from __future__ import annotations

from ._core import Core, file_object, found
from ._downloads import open_content
from .metadata.base import StatusUpdates
from .models import FileObject
from .validation import JSONLValidator

__all__ = ["validate_stored"]


async def validate_stored(core: Core, owner: str, file_id: str) -> FileObject:
    """Check the file and record ``processed`` or ``error`` (see `FilesService.validate`)."""
    record = await core.visible(owner, file_id)
    rules = core.policy.jsonl_rules.get(record.purpose)
    if record.status != "uploaded" or rules is None:
        return file_object(record)
    validator = JSONLValidator(rules)
    content = await open_content(core, owner, file_id)
    try:
        async for chunk in content.chunks:
            validator.feed(chunk)
    finally:
        await content.aclose()
    result = validator.finish()
    assert isinstance(core.metadata, StatusUpdates)  # checked when the service was made
    checked = await core.metadata.set_status(
        record.owner,
        file_id,
        status="processed" if result.ok else "error",
        details=None if result.ok else result.message,
        now=core.now(),
    )
    return file_object(found(file_id, checked))

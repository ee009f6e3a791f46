"""Small files kept by the metadata store (`InlineFiles`): the largest a service may keep so
(``inline_max``), checked when the service is made, and the embedded default's."""

from __future__ import annotations

from ._pending_upload import RECORD_AFTER
from .metadata.base import InlineFiles, MetadataStore
from .storage.base import Storage, encrypts

__all__ = ["EMBEDDED_INLINE_MAX", "check_inline_max"]

EMBEDDED_INLINE_MAX = 64 * 1024
"""The ``inline_max`` of the embedded default (`open_embedded`, and ``openai-files serve``
on local disk or in memory, unencrypted): files of up to 64 KiB kept with their records."""


def check_inline_max(inline_max: int, storage: Storage, metadata: MetadataStore) -> None:
    """`ValueError` unless files of up to ``inline_max`` bytes can be kept by ``metadata``
    (`FilesService`'s ``inline_max``): an `InlineFiles` store, a file recorded in one step
    (at most `RECORD_AFTER` bytes) and a storage that does not encrypt."""
    if not inline_max:
        return
    if not 0 < inline_max <= RECORD_AFTER:
        raise ValueError(f"inline_max must be 0 to {RECORD_AFTER} bytes, not {inline_max}")
    if not isinstance(metadata, InlineFiles):
        raise ValueError(
            f"inline_max needs a metadata store that keeps files (InlineFiles); {metadata!r}"
        )
    if encrypts(storage):
        raise ValueError(
            "inline_max would keep small files unencrypted in the metadata store; "
            f"{storage!r} encrypts: use inline_max=0"
        )

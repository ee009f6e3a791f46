"""Storage: bytes by key. The contract every backend keeps is in the `Storage` docstrings.

Backends: `MemoryStorage` (tests, notebooks), `LocalStorage` (a directory on disk) and, with the
``[s3]`` extra, `openai_files.storage.s3.S3Storage`. A backend knows nothing of owners,
purposes or HTTP; keys are made by the service (`openai_files.ids.new_storage_key`), never from
user input.
"""

from __future__ import annotations

from .base import ListableStorage, PresignedURLs, Storage, StoredBlob
from .local import LocalStorage
from .memory import MemoryStorage

__all__ = [
    "ListableStorage",
    "LocalStorage",
    "MemoryStorage",
    "PresignedURLs",
    "Storage",
    "StoredBlob",
]

"""openai-files: an OpenAI-compatible Files API for any ASGI application.

Mount `create_app` in a gateway, use `FilesService` directly from Python, or run
``openai-files serve``. Bytes live in a `Storage` (memory, local disk, S3), records in a
`MetadataStore` (memory, SQL). Optional backends (S3, PostgreSQL, MySQL drivers) are imported
only when used: `S3Storage`, and `EncryptedStorage` with its `Keyring` and `MasterKey`
(the ``cryptography`` package), are loaded on first use of the name.

The public API is exactly ``__all__``. The layers are folders: the library at the top
(`FilesService`, `Uploads`, `Policy`, errors, events, the sweeper), backends in
`openai_files.storage` and `openai_files.metadata`, the HTTP edge in `openai_files.http`, the
command line in `openai_files.cli`.
"""

import typing as _typing

from ._clock import ManualClock
from ._deprecated import moved_attribute as _moved_attribute
from .backends import open_embedded, open_metadata, open_service, open_storage
from .errors import (
    AuthenticationFailed,
    BackendUnavailable,
    BlobNotFound,
    BlobUnreadable,
    Conflict,
    FileNotFound,
    FileTooLarge,
    InvalidFile,
    InvalidRequest,
    MalformedUpload,
    OpenAIFilesError,
    QuotaExceeded,
    RateLimited,
    RequestTimeout,
    RequestTooLarge,
    UnsupportedFileType,
    UploadNotFound,
)
from .events import EventHook, FileEvent
from .http import Authenticator, api_key_auth, create_app, files_routes, open_auth, scope_owner_auth
from .metadata import FileRecord, MemoryMetadataStore, MetadataStore
from .metadata.base import Quota
from .metadata.sql import SQLMetadataStore
from .models import FileDeleted, FileList, FileObject
from .policy import FileTypes, Policy
from .service import FileContent, FilesService, FileStat, PendingUpload
from .storage import LocalStorage, MemoryStorage, Storage, StoredBlob
from .storage.tiered import TieredStorage
from .sweeper import SweepReport
from .uploads import Uploads
from .validation import JSONLRules

if _typing.TYPE_CHECKING:
    from .storage.encrypted import EncryptedStorage, Keyring, MasterKey
    from .storage.s3 import S3Storage

_LAZY = {
    "S3Storage": "s3",  # the [s3] extra: obstore is imported on first use of the name
    "EncryptedStorage": "encrypted",  # the [encryption] extra: cryptography, likewise
    "Keyring": "encrypted",
    "MasterKey": "encrypted",
}

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "BackendUnavailable",
    "BlobNotFound",
    "BlobUnreadable",
    "Conflict",
    "EncryptedStorage",
    "EventHook",
    "FileContent",
    "FileDeleted",
    "FileEvent",
    "FileList",
    "FileNotFound",
    "FileObject",
    "FileRecord",
    "FileStat",
    "FileTooLarge",
    "FileTypes",
    "FilesService",
    "InvalidFile",
    "InvalidRequest",
    "JSONLRules",
    "Keyring",
    "LocalStorage",
    "MalformedUpload",
    "ManualClock",
    "MasterKey",
    "MemoryMetadataStore",
    "MemoryStorage",
    "MetadataStore",
    "OpenAIFilesError",
    "PendingUpload",
    "Policy",
    "Quota",
    "QuotaExceeded",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "S3Storage",
    "SQLMetadataStore",
    "Storage",
    "StoredBlob",
    "SweepReport",
    "TieredStorage",
    "UnsupportedFileType",
    "UploadNotFound",
    "Uploads",
    "__version__",
    "api_key_auth",
    "create_app",
    "files_routes",
    "open_auth",
    "open_embedded",
    "open_metadata",
    "open_service",
    "open_storage",
    "scope_owner_auth",
]


def __getattr__(name: str) -> object:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".storage.{_LAZY[name]}", __name__), name)
    return _moved_attribute(__name__, name)  # a name that moved warns; any other: AttributeError


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))

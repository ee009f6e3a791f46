"""openai-files: an OpenAI-compatible Files API for any ASGI application.

Mount `create_app` in a gateway, use `FilesService` directly from Python, or run
``openai-files serve``. Bytes live in a `Storage` (memory, local disk, S3), records in a
`MetadataStore` (memory, SQL). Optional backends (S3, PostgreSQL, MySQL drivers) are imported
only when used: `S3Storage` is loaded on first use of the name.

The public API is exactly ``__all__``. The layers are folders: the library at the top
(`FilesService`, `Uploads`, `Policy`, errors, events, the sweeper), backends in
`openai_files.storage` and `openai_files.metadata`, the HTTP edge in `openai_files.http`, the
command line in `openai_files.cli`.
"""

import typing as _typing

from ._clock import ManualClock
from ._deprecated import moved_attribute as _moved_attribute
from ._instrumented import instrumented
from .backends import open_embedded, open_metadata, open_service, open_storage
from .errors import (
    AuthenticationFailed,
    BackendUnavailable,
    BlobNotFound,
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
from .models import FileDeleted, FileList, FileObject, OwnerUsage, UsageList
from .policy import FileTypes, Policy
from .service import FileContent, FilesService, FileStat, PendingUpload, Readiness
from .storage import LocalStorage, MemoryStorage, Storage, StoredBlob
from .sweeper import SweepReport
from .uploads import Uploads
from .validation import JSONLRules

if _typing.TYPE_CHECKING:
    from .storage.s3 import S3Storage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "BackendUnavailable",
    "BlobNotFound",
    "Conflict",
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
    "LocalStorage",
    "MalformedUpload",
    "ManualClock",
    "MemoryMetadataStore",
    "MemoryStorage",
    "MetadataStore",
    "OpenAIFilesError",
    "OwnerUsage",
    "PendingUpload",
    "Policy",
    "Quota",
    "QuotaExceeded",
    "RateLimited",
    "Readiness",
    "RequestTimeout",
    "RequestTooLarge",
    "S3Storage",
    "SQLMetadataStore",
    "Storage",
    "StoredBlob",
    "SweepReport",
    "UnsupportedFileType",
    "UploadNotFound",
    "Uploads",
    "UsageList",
    "__version__",
    "api_key_auth",
    "create_app",
    "files_routes",
    "instrumented",
    "open_auth",
    "open_embedded",
    "open_metadata",
    "open_service",
    "open_storage",
    "scope_owner_auth",
]


def __getattr__(name: str) -> object:
    if name == "S3Storage":  # the [s3] extra: obstore is imported on first use of the name
        from .storage.s3 import S3Storage

        return S3Storage
    return _moved_attribute(__name__, name)  # a name that moved warns; any other: AttributeError


def __dir__() -> list[str]:
    return sorted(set(globals()) | {"S3Storage"})

"""openai-files: an OpenAI-compatible Files API for any ASGI application.

Mount `create_app` in a gateway, use `FilesService` directly from Python, or run
``openai-files serve``. Bytes live in a `Storage` (memory, local disk, S3), records in a
`MetadataStore` (memory, SQL). Every name is imported on first use, so ``import openai_files``
is cheap and the command line's client commands never load the server stack; optional backends
(S3, PostgreSQL, MySQL drivers, ``cryptography`` for `EncryptedStorage`) are imported only when
used.

The public API is exactly ``__all__``. The layers are folders: the library at the top
(`FilesService`, `Uploads`, `Policy`, errors, events, the sweeper), backends in
`openai_files.storage` and `openai_files.metadata`, the HTTP edge in `openai_files.http`, the
command line in `openai_files.cli`.
"""

import importlib as _importlib
import typing as _typing

from ._deprecated import moved_attribute as _moved_attribute

if _typing.TYPE_CHECKING:
    from ._clock import ManualClock
    from ._instrumented import instrumented
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
    from .http import (
        Authenticator,
        api_key_auth,
        create_app,
        files_routes,
        open_auth,
        scope_owner_auth,
    )
    from .metadata import FileRecord, MemoryMetadataStore, MetadataStore
    from .metadata.base import Quota
    from .metadata.sql import SQLMetadataStore
    from .models import FileDeleted, FileList, FileObject, OwnerUsage, UsageList
    from .policy import FileTypes, Policy
    from .service import FileContent, FilesService, FileStat, PendingUpload, Readiness
    from .storage import LocalStorage, MemoryStorage, Storage, StoredBlob
    from .storage.encrypted import EncryptedStorage, Keyring, MasterKey
    from .storage.s3 import S3Storage
    from .storage.tiered import TieredStorage
    from .sweeper import SweepReport
    from .uploads import Uploads
    from .validation import JSONLRules

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
    "TieredStorage",
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

_MODULE_OF = {
    "AuthenticationFailed": "errors",
    "Authenticator": "http",
    "BackendUnavailable": "errors",
    "BlobNotFound": "errors",
    "BlobUnreadable": "errors",
    "Conflict": "errors",
    "EncryptedStorage": "storage.encrypted",
    "EventHook": "events",
    "FileContent": "service",
    "FileDeleted": "models",
    "FileEvent": "events",
    "FileList": "models",
    "FileNotFound": "errors",
    "FileObject": "models",
    "FileRecord": "metadata",
    "FileStat": "service",
    "FileTooLarge": "errors",
    "FileTypes": "policy",
    "FilesService": "service",
    "InvalidFile": "errors",
    "InvalidRequest": "errors",
    "JSONLRules": "validation",
    "Keyring": "storage.encrypted",
    "LocalStorage": "storage",
    "MalformedUpload": "errors",
    "ManualClock": "_clock",
    "MasterKey": "storage.encrypted",
    "MemoryMetadataStore": "metadata",
    "MemoryStorage": "storage",
    "MetadataStore": "metadata",
    "OpenAIFilesError": "errors",
    "OwnerUsage": "models",
    "PendingUpload": "service",
    "Policy": "policy",
    "Quota": "metadata.base",
    "QuotaExceeded": "errors",
    "RateLimited": "errors",
    "Readiness": "service",
    "RequestTimeout": "errors",
    "RequestTooLarge": "errors",
    "S3Storage": "storage.s3",
    "SQLMetadataStore": "metadata.sql",
    "Storage": "storage",
    "StoredBlob": "storage",
    "SweepReport": "sweeper",
    "TieredStorage": "storage.tiered",
    "UnsupportedFileType": "errors",
    "UploadNotFound": "errors",
    "Uploads": "uploads",
    "UsageList": "models",
    "api_key_auth": "http",
    "create_app": "http",
    "files_routes": "http",
    "instrumented": "_instrumented",
    "open_auth": "http",
    "open_embedded": "backends",
    "open_metadata": "backends",
    "open_service": "backends",
    "open_storage": "backends",
    "scope_owner_auth": "http",
}
"""Each public name and the module (under this package) that defines it."""


def __getattr__(name: str) -> object:
    module = _MODULE_OF.get(name)
    if module is None:
        return _moved_attribute(
            __name__, name
        )  # a name that moved warns; any other: AttributeError
    value = getattr(_importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_MODULE_OF))

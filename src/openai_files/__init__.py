"""openai-files: an OpenAI-compatible Files API for any ASGI application.

Mount `create_app` in a gateway, use `FilesService` directly from Python, or run
``openai-files serve``. Bytes live in a `Storage` (memory, local disk, S3), records in a
`MetadataStore` (memory, SQL). Optional backends (S3, PostgreSQL, MySQL drivers) are imported
only when used.
"""

from __future__ import annotations

from .app import create_app, files_routes
from .auth import Authenticator, api_key_auth, open_auth, scope_owner_auth
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
    RequestTooLarge,
    UnsupportedFileType,
)
from .metadata import FileRecord, MemoryMetadataStore, MetadataStore
from .metadata.sql import SQLMetadataStore
from .models import ErrorBody, ErrorDetail, FileDeleted, FileList, FileObject
from .multipart import FormLimits
from .policy import Policy
from .service import FileContent, FilesService, PendingUpload
from .storage import LocalStorage, MemoryStorage, Storage, StoredBlob
from .urls import open_embedded, open_metadata, open_service, open_storage

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "Authenticator",
    "BackendUnavailable",
    "BlobNotFound",
    "Conflict",
    "ErrorBody",
    "ErrorDetail",
    "FileContent",
    "FileDeleted",
    "FileList",
    "FileNotFound",
    "FileObject",
    "FileRecord",
    "FileTooLarge",
    "FilesService",
    "FormLimits",
    "InvalidFile",
    "InvalidRequest",
    "LocalStorage",
    "MalformedUpload",
    "MemoryMetadataStore",
    "MemoryStorage",
    "MetadataStore",
    "OpenAIFilesError",
    "PendingUpload",
    "Policy",
    "RequestTooLarge",
    "SQLMetadataStore",
    "Storage",
    "StoredBlob",
    "UnsupportedFileType",
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

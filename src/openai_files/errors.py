"""The library's exceptions: one tree, raised below the HTTP edge, translated only at the edge.

```
OpenAIFilesError
├── InvalidRequest               a parameter or the request body is wrong (`param` names it)
│   ├── MalformedUpload          the multipart body cannot be parsed
│   ├── InvalidFile              the file's content breaks its purpose's rules (bad JSONL)
│   └── UnsupportedFileType      the file's type or extension is not allowed for its purpose
├── RequestTimeout               the request body stalled, or came too slowly overall
├── FileTooLarge                 the file passed the maximum size
│   └── RequestTooLarge          the request body passed its maximum (the form around the file)
├── AuthenticationFailed         missing or unknown API key
├── FileNotFound                 no such file for this owner (also a builtin FileNotFoundError)
├── UploadNotFound               no such upload for this owner
├── BlobNotFound                 storage has no bytes under a key (also a FileNotFoundError)
├── BlobUnreadable               stored bytes fail their integrity check, or their key is gone
├── Conflict                     the file is in use and cannot be changed now
├── QuotaExceeded                an owner's quota of files, bytes or open uploads is full
├── RateLimited                  too many requests; retry after `retry_after` seconds
└── BackendUnavailable           storage or the metadata store cannot be reached
```

Every error carries the `message` shown to the client, an optional `param` (the request
parameter at fault) and a `code`. The HTTP edge (`openai_files.http`) maps each class to its
HTTP status and OpenAI error `type`, in one table; nothing below the edge knows about HTTP.
Backends translate their drivers' exceptions into these at their own seam
(`raise BackendUnavailable(...) from exc`), so callers never have to catch a driver's
exceptions. A value the client sent is quoted in a message through `shown`, so that an answer
never grows with what was sent.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BackendUnavailable",
    "BlobNotFound",
    "BlobUnreadable",
    "Conflict",
    "FileNotFound",
    "FileTooLarge",
    "InvalidFile",
    "InvalidRequest",
    "MalformedUpload",
    "OpenAIFilesError",
    "QuotaExceeded",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "UnsupportedFileType",
    "UploadNotFound",
    "shown",
]

SHOWN_LENGTH = 64
"""The most characters of a client's value that an error message repeats."""


def shown(value: object, *, quoted: bool = True) -> str:
    """``value`` as an error message repeats it: at most `SHOWN_LENGTH` characters of it, then
    ``...``, with every character that is not printable escaped as ``repr`` escapes it (so a
    message never carries a control or bidi character, nor a lone surrogate). ``quoted=False``
    leaves out the quotes around a string, for ids shown as OpenAI shows them."""
    if not isinstance(value, str):
        text = repr(value)
        return text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH] + "..."
    cut = len(value) > SHOWN_LENGTH
    text = repr(value[:SHOWN_LENGTH])
    if not quoted:
        text = text[1:-1]
    return text + "..." if cut else text


class OpenAIFilesError(Exception):
    """Base of every error this library raises on purpose."""

    code: str = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(OpenAIFilesError):
    """The request is wrong in a way the client can fix; `param` names the culprit."""

    code = "invalid_request"


class MalformedUpload(InvalidRequest):
    """The multipart body is not well-formed (boundary, headers, structure)."""

    code = "invalid_multipart"


class InvalidFile(InvalidRequest):
    """The file's content breaks the rules of its purpose (a batch file that is not valid
    JSONL, say); the message names the first bad line."""

    code = "invalid_file"


class UnsupportedFileType(InvalidRequest):
    """The file's extension or media type is not accepted for its purpose."""

    code = "unsupported_file_type"


class FileTooLarge(OpenAIFilesError):
    """The upload passed the maximum size; raised while streaming, as soon as it passes."""

    code = "file_too_large"

    def __init__(
        self, limit: int, *, param: str | None = "file", message: str | None = None
    ) -> None:
        super().__init__(
            message
            or f"File is too large: the maximum size is {limit} bytes. "
            "Upload a smaller file, or use the Uploads API for large files.",
            param=param,
        )
        self.limit = limit


class RequestTooLarge(FileTooLarge):
    """The request body as a whole passed its maximum: the file plus the form's allowance.

    With ``file_limit`` (an upload's), the message names it, the limit the operator set, in
    the words of `FileTooLarge`, and the allowance for the form fields beside it."""

    def __init__(self, limit: int, *, file_limit: int | None = None) -> None:
        if file_limit is None:
            message = (
                f"The request body is too large: the maximum is {limit} bytes, including the "
                "form fields around the file. Send a smaller file or fewer and shorter fields."
            )
        else:
            message = (
                f"The request body is too large: the maximum size is {file_limit} bytes for "
                f"the file, and the form fields around it may add {limit - file_limit} bytes. "
                "Upload a smaller file, or use the Uploads API for large files."
            )
        OpenAIFilesError.__init__(self, message, param=None)
        self.limit = limit


class RequestTimeout(OpenAIFilesError):
    """The client sent the request body too slowly: it stopped for longer than the idle
    timeout (``idle_timeout``), or took too long over the whole body (``message`` says how)."""

    code = "request_timeout"

    def __init__(self, idle_timeout: float = 0.0, *, message: str | None = None) -> None:
        super().__init__(
            message
            or f"The request body stalled for more than {idle_timeout:g} seconds; "
            "the upload was abandoned. Retry it."
        )


class AuthenticationFailed(OpenAIFilesError):
    """No credentials, or credentials that match no owner."""

    code = "invalid_api_key"


class FileNotFound(OpenAIFilesError, FileNotFoundError):
    """No file with this id for this owner: missing, deleted, expired or someone else's."""

    code = "file_not_found"

    def __init__(self, file_id: str) -> None:
        super().__init__(f"No such File object: {shown(file_id, quoted=False)}", param="id")
        self.file_id = file_id


class UploadNotFound(OpenAIFilesError, FileNotFoundError):
    """No upload with this id for this owner."""

    code = "upload_not_found"

    def __init__(self, upload_id: str) -> None:
        super().__init__(
            f"No such Upload object: {shown(upload_id, quoted=False)}", param="upload_id"
        )
        self.upload_id = upload_id


class BlobNotFound(OpenAIFilesError, FileNotFoundError):
    """Storage holds no bytes under this key."""

    code = "blob_not_found"

    def __init__(self, key: str) -> None:
        super().__init__(f"No stored object under key {shown(key)}")
        self.key = key


class BlobUnreadable(OpenAIFilesError):
    """The bytes stored under a key cannot be returned as they were written: an encrypted
    object that fails its integrity check (altered, truncated, reordered, another object's
    bytes) or whose master key is not in the keyring. Never retried: the bytes will not
    change by themselves. The message a client sees says no more than that; ``str()`` of the
    error, for the logs, names the key and the ``reason``."""

    code = "blob_unreadable"

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(
            "The stored content of this file cannot be read: it fails its integrity check or "
            "its encryption key is not configured. The server's log says which."
        )
        self.key = key
        self.reason = reason

    def __str__(self) -> str:
        return f"the stored object under key {shown(self.key)} cannot be read: {self.reason}"


class Conflict(OpenAIFilesError):
    """The operation conflicts with the file's current state (for example, it is held)."""

    code = "conflict"


class QuotaExceeded(OpenAIFilesError):
    """Storing the file (or a part) would pass the owner's quota of files or bytes, or
    starting an upload their bound on open uploads."""

    code = "quota_exceeded"

    @classmethod
    def for_usage(cls, max_files: int | None, max_bytes: int | None, files: int) -> QuotaExceeded:
        """The error for an owner storing ``files`` files, with the limits that apply."""
        limits = []
        if max_files is not None:
            limits.append(f"{max_files} files")
        if max_bytes is not None:
            limits.append(f"{max_bytes} bytes")
        return cls(
            f"Storage quota exceeded: the limit is {' and '.join(limits)} per owner, and "
            f"{files} files are stored. Delete files you no longer need, then retry."
        )

    @classmethod
    def for_open_uploads(cls, max_open: int) -> QuotaExceeded:
        """The error for an owner who has ``max_open`` uploads open already."""
        return cls(
            f"Too many open uploads: the limit is {max_open} per owner. Complete or cancel an "
            "upload you started (or wait for one to expire), then retry."
        )


class RateLimited(OpenAIFilesError):
    """A rate limiter refused the request; ``retry_after`` says when to try again."""

    code = "rate_limit_exceeded"

    def __init__(self, retry_after: float, message: str | None = None) -> None:
        super().__init__(
            message or f"Rate limit reached. Retry after {max(1, round(retry_after))} seconds."
        )
        self.retry_after = retry_after


class BackendUnavailable(OpenAIFilesError):
    """Storage or the metadata store could not be reached or failed; retrying may succeed."""

    code = "backend_unavailable"

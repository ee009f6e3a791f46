"""The rules of one deployment, in one value object: which files it accepts, how long it keeps
them, how much an owner may store, how lists page and how deletes behave.

The defaults are OpenAI's. `docs/policy.md` shows how to reproduce other platforms' rules.
"""

from __future__ import annotations

import posixpath
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from .ids import FileIdFormat
from .metadata.base import Quota
from .validation import BATCH_RULES, FINE_TUNE_RULES, JSONLRules

__all__ = [
    "DAY",
    "EXPIRES_AFTER_MAX",
    "EXPIRES_AFTER_MIN",
    "OPENAI_SYSTEM_PURPOSES",
    "OPENAI_UPLOAD_PURPOSES",
    "FileTypes",
    "Policy",
    "Validation",
]

DAY = 24 * 60 * 60
EXPIRES_AFTER_MIN = 3600
EXPIRES_AFTER_MAX = 30 * DAY

OPENAI_UPLOAD_PURPOSES: tuple[str, ...] = (
    "assistants",
    "batch",
    "fine-tune",
    "vision",
    "user_data",
    "evals",
)
OPENAI_SYSTEM_PURPOSES: tuple[str, ...] = ("assistants_output", "batch_output", "fine-tune-results")
PURPOSE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""What a purpose looks like when a policy accepts any (``upload_purposes=None``): 1 to 64
letters, digits, ``_``, ``-``, ``.`` and ``:``, starting with a letter or digit."""

Validation = Literal["strict", "lenient", "deferred", "off"]
"""What happens to a JSONL file that breaks its purpose's rules: ``strict`` refuses it (400
naming the first bad line), ``lenient`` stores it with ``status: "error"`` and the reason in
``status_details``, ``deferred`` stores it unchecked with ``status: "uploaded"`` until
`FilesService.validate` checks it (when a batch first uses it), ``off`` does not check."""


@dataclass(frozen=True)
class FileTypes:
    """The files a purpose accepts: by filename extension (``".jsonl"``) or by the media type
    the client declared for the file part (``"application/pdf"``, or ``"image/*"`` for every
    subtype). With ``match="either"`` (the default) a file matching either list is accepted;
    with ``match="both"`` its extension and its declared media type must both be listed."""

    extensions: tuple[str, ...] = ()
    media_types: tuple[str, ...] = ()
    match: Literal["either", "both"] = "either"

    def __post_init__(self) -> None:
        if self.match not in ("either", "both"):
            raise ValueError("FileTypes match must be 'either' or 'both'")

    def allows(self, filename: str, media_type: str | None) -> bool:
        extension = posixpath.splitext(filename.lower())[1]
        declared = (media_type or "").split(";")[0].strip().lower()
        by_extension = extension in self.extensions
        by_media_type = any(
            declared == listed
            or (listed.endswith("/*") and declared.startswith(listed[:-1]) and declared[-1] != "/")
            for listed in self.media_types
        )
        if self.match == "both":
            return by_extension and by_media_type
        return by_extension or by_media_type

    def describe(self) -> str:
        if self.match == "both":
            return f"{', '.join(self.extensions)} declared as {', '.join(self.media_types)}"
        return ", ".join([*self.extensions, *self.media_types])


JSONL_ONLY = FileTypes(extensions=(".jsonl",))


def _frozen(mapping: Mapping[str, object]) -> Mapping[str, object]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Policy:
    """The rules of one deployment. Every field has OpenAI's behaviour as its default.

    - ``upload_purposes``: purposes a client may upload, in the order error messages list them;
      None accepts any purpose of the form `PURPOSE_PATTERN`.
    - ``system_purposes``: purposes only the service itself creates (``create(system=True)``).
    - ``max_file_size``: the largest upload, in bytes, enforced while the body streams in;
      ``max_file_size_by_purpose`` lowers it for some purposes (``{"vision": 20 MB}``).
    - ``file_types``: per purpose, the extensions or media types it accepts (absent: any).
    - ``validation`` and ``jsonl_rules``: which purposes' files are checked as JSONL, with
      which rules, in the same streaming pass as the upload, and what a bad file gets.
    - ``default_expiry``: seconds after creation at which a file of a purpose expires when the
      client sends no ``expires_after`` (OpenAI: ``batch`` after 30 days, others never).
    - ``quota``: the most files and bytes one owner may store (None: no limit).
    - ``soft_delete``: keep a deleted file's record, with status ``deleted``, without its bytes.
    - ``keep_media_type``: serve downloads with the media type the client declared for the
      file part at upload, instead of ``application/octet-stream``.
    - ``download_media_types``: the media type of downloads by filename extension
      (``{".jsonl": "application/jsonl"}``); it wins over ``keep_media_type``.
    - ``file_too_large_status``: deprecated, goes in the next release: an HTTP choice, made at
      the edge now (``create_app(file_too_large_status=400)``, ``files_routes(...)``,
      ``openai-files serve --file-too-large-status 400``); an app given none still follows it.
    - ``max_upload_size``, ``max_part_size``, ``upload_ttl``: the Uploads API's limits (the
      file an upload produces may pass ``max_file_size``, up to ``max_upload_size``; None holds
      it to ``max_file_size``: `upload_limit`). ``upload_ttl`` is at most a day, the age at
      which the orphan sweep removes an upload's partial bytes.
    - ``max_upload_parts``: the most parts one upload may hold (10,000, as S3 allows); it also
      sizes the body ``POST /uploads/{id}/complete`` accepts, so every legal upload can name
      all of its parts.
    - ``max_open_uploads``: the most uploads one owner may have open (``pending`` or being
      completed) at once; None for no bound. Their parts count against ``quota`` as they
      arrive, whatever the bound.
    - ``list_limit_default`` / ``list_limit_max``: the page size of ``GET /files``.
    - ``file_id_format``: ``"openai"`` ids (``file-`` and 24 characters) or ``"uuid7"`` ones
      (a UUID version 7); both carry the creation time, which keeps ``after`` cursors valid.
    - ``list_offset``: ``GET /files`` also takes ``offset`` (skip that many files of the list,
      instead of a cursor) and every page carries ``total``; needs an `OffsetPaging` store.
    - ``list_offset_max``: the largest ``offset`` taken (1,000); a deeper one is refused with a
      400 that says to page on with ``after``. A database skips an offset's files one by one,
      so a page costs more the deeper it starts (about twice a cursor page at 1,000 files, 5
      times at 10,000); None takes any offset.
    """

    upload_purposes: tuple[str, ...] | None = OPENAI_UPLOAD_PURPOSES
    system_purposes: tuple[str, ...] = OPENAI_SYSTEM_PURPOSES
    max_file_size: int = 512 * 1024 * 1024
    max_file_size_by_purpose: Mapping[str, int] = field(default_factory=dict)
    max_filename_length: int = 1024
    file_types: Mapping[str, FileTypes] = field(
        default_factory=lambda: {"batch": JSONL_ONLY, "fine-tune": JSONL_ONLY}
    )
    validation: Validation = "strict"
    jsonl_rules: Mapping[str, JSONLRules] = field(
        default_factory=lambda: {"batch": BATCH_RULES, "fine-tune": FINE_TUNE_RULES}
    )
    default_expiry: Mapping[str, int] = field(default_factory=lambda: {"batch": EXPIRES_AFTER_MAX})
    quota: Quota | None = None
    soft_delete: bool = False
    keep_media_type: bool = False
    download_media_types: Mapping[str, str] = field(default_factory=dict)
    file_too_large_status: int = 413
    max_upload_size: int | None = 8 * 1024**3
    max_part_size: int = 64 * 1024 * 1024
    upload_ttl: int = 3600
    max_upload_parts: int = 10_000
    max_open_uploads: int | None = 100
    list_limit_default: int = 10_000
    list_limit_max: int = 10_000
    list_offset: bool = False
    list_offset_max: int | None = 1_000
    file_id_format: FileIdFormat = "openai"

    def __post_init__(self) -> None:
        for name in (
            "max_file_size_by_purpose",
            "file_types",
            "jsonl_rules",
            "default_expiry",
            "download_media_types",
        ):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        for extension, media_type in self.download_media_types.items():
            if not extension.startswith(".") or extension != extension.lower():
                raise ValueError(
                    f"download_media_types keys are lowercase extensions such as '.jsonl', "
                    f"not {extension!r}"
                )
            if "/" not in media_type:
                raise ValueError(f"{media_type!r} is not a media type (type/subtype)")
        if self.max_file_size < 1:
            raise ValueError("max_file_size must be at least 1 byte")
        if self.max_upload_parts < 1:
            raise ValueError("max_upload_parts must be at least 1")
        if not 1 <= self.upload_ttl <= DAY:
            raise ValueError(
                "upload_ttl must be between 1 and 86400 seconds (a day): the orphan sweep "
                "removes the partial bytes of uploads untouched for a day"
            )
        if self.max_open_uploads is not None and self.max_open_uploads < 1:
            raise ValueError("max_open_uploads must be at least 1, or None for no bound")
        if not 1 <= self.list_limit_default <= self.list_limit_max:
            raise ValueError("list_limit_default must be between 1 and list_limit_max")
        if self.list_offset_max is not None and self.list_offset_max < 0:
            raise ValueError("list_offset_max must be 0 or more, or None for no bound")
        if self.file_id_format not in ("openai", "uuid7"):
            raise ValueError("file_id_format must be 'openai' or 'uuid7'")
        if self.file_too_large_status not in (400, 413):
            raise ValueError("file_too_large_status must be 413 or 400")
        if self.file_too_large_status != 413:
            warnings.warn(
                "Policy(file_too_large_status=...) is deprecated and goes in the next release: "
                "pass file_too_large_status to create_app or files_routes (or "
                "--file-too-large-status to openai-files serve) instead.",
                DeprecationWarning,
                stacklevel=3,  # the caller of the dataclass's __init__
            )
        if self.validation not in ("strict", "lenient", "deferred", "off"):
            raise ValueError("validation must be 'strict', 'lenient', 'deferred' or 'off'")

    @property
    def upload_limit(self) -> int:
        """The largest file the Uploads API may assemble."""
        return self.max_file_size if self.max_upload_size is None else self.max_upload_size

    def max_size_for(self, purpose: str | None) -> int:
        """The largest file accepted for ``purpose`` (None: for any purpose)."""
        if purpose is None:
            return self.max_file_size
        return min(
            self.max_file_size, self.max_file_size_by_purpose.get(purpose, self.max_file_size)
        )

    def download_media_type(self, filename: str, declared: str | None) -> str:
        """The Content-Type of a download of ``filename``, uploaded as ``declared``."""
        extension = posixpath.splitext(filename.lower())[1]
        if extension in self.download_media_types:
            return self.download_media_types[extension]
        if self.keep_media_type and declared:
            return declared
        return "application/octet-stream"

    def rules_for(self, purpose: str) -> JSONLRules | None:
        """The JSONL rules a file of ``purpose`` is checked against while it streams in, or
        None (none for its purpose, or ``validation`` is ``off`` or ``deferred``)."""
        if self.validation in ("off", "deferred"):
            return None
        return self.jsonl_rules.get(purpose)

    def __repr__(self) -> str:
        """Only what differs from OpenAI's defaults."""
        default = Policy()
        changed = ", ".join(
            f"{name}={value!r}"
            for name, value in vars(self).items()
            if value != getattr(default, name)
        )
        return f"Policy({changed})"

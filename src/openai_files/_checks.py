"""The checks every entry point applies to a request before it touches a backend.

Each raises the error a client can act on (`InvalidRequest`, `UnsupportedFileType`) with the
parameter to fix; `checked_owner` raises `ValueError`, since the owner comes from the host's
authentication, never from the client.
"""

from __future__ import annotations

import re

from .errors import InvalidRequest, UnsupportedFileType, shown
from .inputs import unsafe_character
from .policy import EXPIRES_AFTER_MAX, EXPIRES_AFTER_MIN, PURPOSE_PATTERN, Policy

__all__ = [
    "check_expires_after",
    "check_file_type",
    "check_filename",
    "check_purpose",
    "checked_owner",
]

MAX_OWNER_LENGTH = 255


def checked_owner(owner: str) -> str:
    """``owner``, if it is a non-empty string of at most 255 characters; else `ValueError`."""
    if not owner or len(owner) > MAX_OWNER_LENGTH:
        raise ValueError(
            f"owner must be a non-empty string of at most {MAX_OWNER_LENGTH} characters"
        )
    return owner


def check_purpose(policy: Policy, purpose: str, *, system: bool = False) -> None:
    """`InvalidRequest` unless files with ``purpose`` may be created (by the service itself
    with ``system``, which also allows the system purposes)."""
    allowed = policy.upload_purposes
    if allowed is None:
        if not re.fullmatch(PURPOSE_PATTERN, purpose):
            raise InvalidRequest(
                f"{shown(purpose)} is not a valid purpose: use 1 to 64 letters, digits, "
                "'_', '-', '.' or ':', starting with a letter or digit.",
                param="purpose",
            )
        return
    if system:
        allowed += policy.system_purposes
    if purpose not in allowed:
        listed = ", ".join(repr(p) for p in allowed)
        raise InvalidRequest(
            f"{shown(purpose)} is not one of [{listed}] - 'purpose'", param="purpose"
        )


def check_expires_after(seconds: int | None) -> None:
    """`InvalidRequest` unless ``seconds`` is None or within OpenAI's range."""
    if seconds is not None and not EXPIRES_AFTER_MIN <= seconds <= EXPIRES_AFTER_MAX:
        raise InvalidRequest(
            f"expires_after[seconds] must be between {EXPIRES_AFTER_MIN} and "
            f"{EXPIRES_AFTER_MAX}; got {seconds}.",
            param="expires_after[seconds]",
        )


def check_filename(policy: Policy, filename: str, *, param: str = "file") -> None:
    """`InvalidRequest` for an empty or over-long filename, or one holding a character no
    name should (`openai_files.inputs.unsafe_character`: a control character, a lone
    surrogate, or a bidi control that would make the name display as another)."""
    if not filename:
        raise InvalidRequest("The file must have a filename.", param=param)
    if len(filename) > policy.max_filename_length:
        raise InvalidRequest(
            f"The filename is {len(filename)} characters long; the maximum is "
            f"{policy.max_filename_length}.",
            param=param,
        )
    char = unsafe_character(filename)
    if char is not None:
        raise InvalidRequest(
            f"The filename contains the character U+{ord(char):04X}: names must not hold "
            "control characters (such as NUL, CR, LF or U+0080..U+009F), bidirectional "
            "controls (such as U+202E) or unpaired surrogates; rename the file.",
            param=param,
        )


def check_file_type(
    policy: Policy, purpose: str, filename: str, media_type: str | None, *, param: str = "file"
) -> None:
    """`UnsupportedFileType` unless the policy accepts this kind of file for ``purpose``."""
    types = policy.file_types.get(purpose)
    if types is not None and not types.allows(filename, media_type):
        raise UnsupportedFileType(
            f"Files with purpose {shown(purpose)} must be {types.describe()}; "
            f"got {shown(filename)}.",
            param=param,
        )

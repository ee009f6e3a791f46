"""What a client's strings must be before they go further than the edge.

Every string a request carries (an id in its path, a query parameter, a header, a form field, a
key or value of a JSON body) is checked once, where the request is read or where the service
takes it, so that no metadata store's driver ever sees a value it cannot hold: PostgreSQL
refuses NUL in text, no driver can encode an unpaired surrogate, and every column has a
length. A value that breaks these rules is the client's error (400), or, for an id, simply an
id that names nothing (404, without a query). The stores keep a backstop
(`SQLMetadataStore` answers a value its database refuses with `InvalidRequest`), but nothing
should reach it.

The lengths are those of the SQL store's columns (`openai_files.metadata.sql_schema`).
"""

from __future__ import annotations

import re
import unicodedata

from .errors import InvalidRequest, shown

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MAX_ID_LENGTH",
    "MAX_MEDIA_TYPE_LENGTH",
    "MAX_OWNER_LENGTH",
    "MAX_PURPOSE_LENGTH",
    "check_media_type",
    "has_lone_surrogate",
    "possible_id",
    "unsafe_character",
]

MAX_ID_LENGTH = 64
"""The longest id of a file, upload or part (ids the service makes are at most 36)."""
MAX_PURPOSE_LENGTH = 64
MAX_OWNER_LENGTH = 255
MAX_MEDIA_TYPE_LENGTH = 255
MAX_IDEMPOTENCY_KEY_LENGTH = 255

BIDI_CONTROLS = frozenset(
    "\u061c"  # ARABIC LETTER MARK
    "\u200e\u200f"  # LEFT-TO-RIGHT and RIGHT-TO-LEFT MARK
    "\u202a\u202b\u202c\u202d\u202e"  # embeddings and overrides (LRE, RLE, PDF, LRO, RLO)
    "\u2066\u2067\u2068\u2069"  # isolates (LRI, RLI, FSI, PDI)
)
"""The format characters that reorder the text around them: a name holding one can display
as another (``invoice\u202etxt.exe`` shows as ``invoiceexe.txt``)."""

# RFC 9110 token characters; a media type is token "/" token, then "; name=value" parameters
# whose value is a token or a quoted string, all in printable ASCII (spaces, not tabs).
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_QUOTED = r'"(?:[\x20\x21\x23-\x5b\x5d-\x7e]|\\[\x20-\x7e])*"'
_MEDIA_TYPE = re.compile(rf"{_TCHARS}/{_TCHARS}(?: *; *{_TCHARS}=(?:{_TCHARS}|{_QUOTED}))* *;?")


def has_lone_surrogate(text: str) -> bool:
    """True if ``text`` holds a surrogate code point without its pair (JSON's ``"\\ud800"``),
    which is not a character: no UTF-8 encoder, and so no driver, can write it."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def unsafe_character(text: str) -> str | None:
    """The first character of ``text`` that no name should hold, or None: a control character
    (Unicode category Cc: C0 controls such as NUL, CR and LF, DEL, and the C1 controls
    U+0080..U+009F), a lone surrogate (Cs), or a bidi control (`BIDI_CONTROLS`)."""
    for char in text:
        if char in BIDI_CONTROLS or unicodedata.category(char) in ("Cc", "Cs"):
            return char
    return None


def possible_id(value: str) -> bool:
    """False for a string that cannot be the id of anything the service stores: empty, longer
    than `MAX_ID_LENGTH`, or holding a character that is not printable ASCII. Such an id names
    nothing, so it is answered as one that does not exist without asking the store."""
    return 0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value.isprintable()


def check_media_type(value: str, *, param: str, name: str | None = None) -> str:
    """``value`` if it is a media type (RFC 6838 ``type/subtype``, optionally with
    ``; name=value`` parameters) of printable ASCII and at most `MAX_MEDIA_TYPE_LENGTH`
    characters, which can be stored and sent back in a Content-Type header; `InvalidRequest`
    naming ``param`` otherwise (``name``: what the message calls the value, ``param`` by
    default)."""
    if len(value) <= MAX_MEDIA_TYPE_LENGTH and _MEDIA_TYPE.fullmatch(value.strip(" ")):
        return value
    raise InvalidRequest(
        f"{name or param} must be a media type such as 'application/octet-stream' or "
        f"'text/plain; charset=utf-8' (type/subtype in printable ASCII, at most "
        f"{MAX_MEDIA_TYPE_LENGTH} characters); got {shown(value)}.",
        param=param,
    )

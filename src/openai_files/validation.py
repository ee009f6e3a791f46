"""Streaming validation of JSONL files: batch requests and fine-tune examples.

`JSONLValidator` is fed the file's bytes as they stream to storage, in the same pass as the
upload, and reports the first bad line in one sentence the client can act on. It never reads
the file again and holds only the current partial line (at most ``max_line_bytes``) and the
``custom_id`` values seen so far. After the first error every further `feed` is a no-op, so a
binary file uploaded by mistake costs almost nothing beyond its first chunk.

What a line is: the bytes up to an LF (a CR before it is dropped). A final LF ends the last
line rather than starting an empty one, and a last line without an LF is still a line. A
line's length counts all of its bytes but the LF.
"""

from __future__ import annotations

import codecs
import hashlib
import json
from dataclasses import dataclass
from typing import NoReturn

from .errors import shown

__all__ = [
    "BATCH_RULES",
    "FINE_TUNE_RULES",
    "JSONLRules",
    "JSONLValidator",
    "ValidationResult",
]


@dataclass(frozen=True)
class JSONLRules:
    """What a JSONL file must satisfy.

    - ``batch_requests``: each line is a batch request with a unique ``custom_id``,
      ``method`` ``"POST"``, a ``url`` under ``/v1/`` and an object ``body``; otherwise each
      line only needs to be a JSON object (fine-tune examples).
    - ``max_lines``: the most lines a file may hold (OpenAI: 50,000 requests a batch).
    - ``max_line_bytes``: the longest line, in bytes; it bounds memory, since a longer line is
      an error as soon as it passes the limit rather than something to buffer.
    """

    batch_requests: bool = True
    max_lines: int = 50_000
    max_line_bytes: int = 32 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.max_lines < 1:
            raise ValueError("max_lines must be at least 1")
        if self.max_line_bytes < 1:
            raise ValueError("max_line_bytes must be at least 1 byte")


BATCH_RULES = JSONLRules()
FINE_TUNE_RULES = JSONLRules(batch_requests=False)


@dataclass(frozen=True)
class ValidationResult:
    """The verdict on a whole file.

    ``message`` is None when the file is good, else one sentence naming the first bad line and
    what is wrong with it; ``line`` is that line's 1-based number (None when ok, or when the
    fault is the file's as a whole). ``lines`` counts the lines read and found good: every line
    of a good file, the lines before the bad one otherwise.
    """

    ok: bool
    message: str | None
    line: int | None
    lines: int


_BOM = codecs.BOM_UTF8
# Above this length a custom_id is remembered by a digest: memory stays proportional to the
# number of requests, not to the lengths of their ids.
_MAX_KEPT_ID_LENGTH = 64
_BATCH_FIELDS = ("custom_id", "method", "url", "body")


class _LineError(Exception):
    """What is wrong with one line: the rest of the sentence after "Line N" (" is ...", ": ...").

    The checks of a line's content raise it; the validator adds the line number.
    """


def _refuse_constant(name: str) -> NoReturn:
    # Python's json accepts NaN and Infinity; JSON does not, and neither do other parsers.
    raise ValueError(f"{name} is not a JSON value")


# One decoder for every line: `json.loads` with options would build a new one per call.
_parse_json = json.JSONDecoder(parse_constant=_refuse_constant).decode


def _kind(value: object) -> str:
    """The JSON type of a parsed value, with its article, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _parse_object(text: str) -> dict[str, object]:
    try:
        value = _parse_json(text)
    except json.JSONDecodeError as exc:
        raise _LineError(f" is not valid JSON: {exc.msg} (column {exc.colno})") from None
    except ValueError as exc:  # NaN, or an integer with too many digits
        raise _LineError(f" is not valid JSON: {exc}") from None
    except RecursionError:
        raise _LineError(" is not valid JSON: it is nested too deeply") from None
    if not isinstance(value, dict):
        raise _LineError(f" is not a JSON object (found {_kind(value)})")
    return value


def _check_request_fields(request: dict[str, object]) -> str:
    """The request's ``custom_id`` once every batch field is right; `_LineError` otherwise."""
    for name in _BATCH_FIELDS:
        if name not in request:
            raise _LineError(f": missing required field {name!r}")
    custom_id, method, url, body = (
        request["custom_id"],
        request["method"],
        request["url"],
        request["body"],
    )
    if not isinstance(custom_id, str):
        raise _LineError(f": 'custom_id' must be a string, found {_kind(custom_id)}")
    if not custom_id:
        raise _LineError(": 'custom_id' must not be empty")
    if not isinstance(method, str):
        raise _LineError(f": 'method' must be a string, found {_kind(method)}")
    if method != "POST":
        raise _LineError(f": 'method' must be 'POST', found {shown(method)}")
    if not isinstance(url, str):
        raise _LineError(f": 'url' must be a string, found {_kind(url)}")
    if not url.startswith("/v1/"):
        raise _LineError(f": 'url' must start with '/v1/', found {shown(url)}")
    if not isinstance(body, dict):
        raise _LineError(f": 'body' must be a JSON object, found {_kind(body)}")
    return custom_id


def _id_key(custom_id: str) -> str | bytes:
    if len(custom_id) <= _MAX_KEPT_ID_LENGTH:
        return custom_id
    return hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16).digest()


class JSONLValidator:
    """Checks a JSONL file fed to it chunk by chunk, in one pass.

    Call `feed` with each chunk as it arrives, then `finish` once at the end of the stream.
    `failed` turns True as soon as an error is found, so the caller may stop the upload early;
    the outcome is the same however the file is cut into chunks.
    """

    def __init__(self, rules: JSONLRules = BATCH_RULES) -> None:
        self._rules = rules
        self._lines = 0  # complete lines seen; the current line is number _lines + 1
        self._line_bytes = 0  # bytes of the current line seen so far
        self._pieces: list[str] = []  # the current line, decoded, when it spans chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._head = b""  # the file's first bytes, up to the length of a byte-order mark
        self._empty_first_line = False
        self._ids: dict[str | bytes, int] = {}
        self._result: ValidationResult | None = None

    @property
    def failed(self) -> bool:
        """True as soon as an error has been found."""
        return self._result is not None and not self._result.ok

    def feed(self, chunk: bytes) -> None:
        """Check the next chunk of the file. Never raises; a no-op once an error is found."""
        if self._result is not None or not chunk:
            return
        *complete, rest = chunk.split(b"\n")
        for piece in complete:
            self._end_line(piece)
            if self._result is not None:
                return
        if rest:
            self._begin_line()
            if self._result is None:
                self._take(rest)

    def finish(self) -> ValidationResult:
        """The verdict, once the whole file has been fed; later calls return the same one."""
        if self._result is None and self._line_bytes:
            self._end_line(b"")
        if self._result is None and (self._lines == 0 or self._empty_first_line):
            self._fail("The file has no lines; put one JSON object on each line.", None)
        if self._result is None:
            self._result = ValidationResult(ok=True, message=None, line=None, lines=self._lines)
        return self._result

    def _fail(self, message: str, line: int | None) -> None:
        good = 0 if line is None else line - 1
        self._result = ValidationResult(ok=False, message=message, line=line, lines=good)

    def _fail_utf8(self) -> None:
        self._fail(f"Line {self._lines + 1} is not valid UTF-8.", self._lines + 1)

    def _begin_line(self) -> None:
        """Checks due when the first byte of a line arrives, before the line's content."""
        if self._line_bytes:
            return
        if self._empty_first_line:  # known only now: the file is more than a lone newline
            self._fail("Line 1 is empty; put one JSON object on each line.", 1)
        elif self._lines >= self._rules.max_lines:
            limit = self._rules.max_lines
            self._fail(f"The file has more than {limit} lines; the maximum is {limit}.", limit + 1)

    def _take(self, data: bytes) -> None:
        """Add bytes of the current line: count, check and decode them."""
        number = self._lines + 1
        room = self._rules.max_line_bytes - self._line_bytes
        accepted = data if len(data) <= room else data[:room]
        if number == 1 and len(self._head) < len(_BOM):
            self._head += accepted[: len(_BOM) - len(self._head)]
            if self._head == _BOM:
                self._fail(
                    "Line 1 starts with a UTF-8 byte-order mark; "
                    "save the file as UTF-8 without a BOM.",
                    1,
                )
                return
        self._line_bytes += len(accepted)
        # Decoding what fits before refusing the rest keeps the first error first, whatever
        # the chunking: bad UTF-8 before the limit is reported as such.
        self._decode(accepted, final=False)
        if self._result is None and len(accepted) < len(data):
            self._fail(
                f"Line {number} is longer than {self._rules.max_line_bytes} bytes, "
                "the maximum length of a line.",
                number,
            )

    def _decode(self, data: bytes, *, final: bool) -> None:
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError:
            self._fail_utf8()
            return
        if text:
            self._pieces.append(text)

    def _end_line(self, data: bytes) -> None:
        """Take the last bytes of the current line, then check the whole line."""
        self._begin_line()
        if self._result is not None:
            return
        if not self._line_bytes and self._lines and len(data) <= self._rules.max_line_bytes:
            # The common case, a whole line within one chunk, skips the incremental decoder.
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError:
                self._fail_utf8()
                return
        else:
            text = self._take_rest(data)
            if self._result is not None:
                return
        self._lines += 1
        self._check_line(text.removesuffix("\r"), self._lines)

    def _take_rest(self, data: bytes) -> str:
        """The current line, whole, once its last bytes are taken."""
        self._take(data)
        if self._result is None:
            self._decode(b"", final=True)  # a character cut short by the line's end
        text = "".join(self._pieces)
        self._pieces.clear()
        self._line_bytes = 0
        return text

    def _check_line(self, text: str, number: int) -> None:
        if not text and number == 1:
            # A lone newline is an empty file, not an empty line: wait for what follows.
            self._empty_first_line = True
            return
        try:
            if not text or text.isspace():
                raise _LineError(" is empty; put one JSON object on each line")
            request = _parse_object(text)
            if self._rules.batch_requests:
                self._check_unique(_check_request_fields(request), number)
        except _LineError as exc:
            self._fail(f"Line {number}{exc}.", number)

    def _check_unique(self, custom_id: str, number: int) -> None:
        key = _id_key(custom_id)
        first = self._ids.setdefault(key, number)
        if first != number:
            raise _LineError(f": custom_id {shown(custom_id)} was already used on line {first}")

"""`JSONLValidator` as a specification: a table of files and their verdicts, and the same
verdict however the file is cut into chunks."""

from __future__ import annotations

import json
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest

from openai_files import validation
from openai_files.validation import (
    BATCH_RULES,
    FINE_TUNE_RULES,
    JSONLRules,
    JSONLValidator,
    ValidationResult,
)

NETWORK_CHUNK = 64 * 1024
SMALL = 2048  # files up to this size are also fed split at every byte position


def request(custom_id: object = "req-1", **fields: object) -> dict[str, object]:
    """A valid batch request; ``fields`` replace or add fields, a value of None drops one."""
    line: dict[str, object] = {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}]},
    }
    line.update(fields)
    return {name: value for name, value in line.items() if value is not None}


def jsonl(*lines: object, end: bytes = b"\n") -> bytes:
    """Each value as one JSON line (bytes are taken as they are), every line ending in ``end``."""
    encoded = [line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines]
    return b"".join(line + end for line in encoded)


def requests(count: int) -> bytes:
    return jsonl(*(request(f"req-{number}") for number in range(1, count + 1)))


@dataclass(frozen=True)
class Case:
    """A file and its verdict: good when ``error`` is None, else ``error`` is part of the
    message and ``line`` the first bad line (None for a fault of the whole file)."""

    name: str
    data: bytes
    line: int | None = None
    error: str | None = None
    rules: JSONLRules = BATCH_RULES


THREE = [request("req-1"), request("req-2"), request("req-3")]
TINY_LINES = JSONLRules(batch_requests=False, max_line_bytes=100)

CASES = [
    # Good files.
    Case("valid batch file", jsonl(*THREE)),
    Case("valid without a final newline", jsonl(*THREE).removesuffix(b"\n")),
    Case("CRLF line ends", jsonl(*THREE, end=b"\r\n")),
    Case("CRLF line ends without a final one", jsonl(*THREE, end=b"\r\n")[:-2]),
    Case("a single request", jsonl(request())),
    Case(
        "multi-byte characters",
        jsonl(request("réq-1"), request("日本-2", body={"text": "😀 café"})),
    ),
    Case("JSON whitespace around an object", jsonl(b' {"a": 1}\t'), rules=FINE_TUNE_RULES),
    Case("exactly max_lines lines", requests(50_000)),
    Case("a valid 10 MB line", jsonl(request(body={"input": "x" * 10_000_000}))),
    Case(
        "a line of exactly max_line_bytes", jsonl(b'{"a": "' + b"x" * 91 + b'"}'), rules=TINY_LINES
    ),
    Case("fine-tune objects", jsonl({"messages": []}, {"prompt": "a"}), rules=FINE_TUNE_RULES),
    Case("max_lines with a final newline", requests(2), rules=JSONLRules(max_lines=2)),
    # Line structure.
    Case("empty file", b"", None, "The file has no lines"),
    Case("only a newline", b"\n", None, "The file has no lines"),
    Case("only a CRLF", b"\r\n", None, "The file has no lines"),
    Case("empty line in the middle", jsonl(THREE[0], b"", THREE[1]), 2, "Line 2 is empty"),
    Case("empty first line", jsonl(b"", THREE[0]), 1, "Line 1 is empty"),
    Case("two newlines at the end", jsonl(*THREE) + b"\n", 4, "Line 4 is empty"),
    Case("whitespace-only line", jsonl(THREE[0], b" \t ", THREE[1]), 2, "Line 2 is empty"),
    Case("whitespace-only file", b"   ", 1, "Line 1 is empty"),
    Case("more than max_lines lines", requests(50_001), 50_001, "more than 50000 lines"),
    Case(
        "more than a small max_lines", requests(3), 3, "more than 2 lines", JSONLRules(max_lines=2)
    ),
    Case(
        "max_lines plus an empty line",
        requests(2) + b"\n",
        3,
        "more than 2 lines",
        JSONLRules(max_lines=2),
    ),
    Case(
        "line over max_line_bytes",
        jsonl({"a": 1}, b"x" * 101),
        2,
        "longer than 100 bytes",
        TINY_LINES,
    ),
    Case("a very long last line", b"x" * 1000, 1, "longer than 100 bytes", TINY_LINES),
    # Encoding.
    Case("byte-order mark", b"\xef\xbb\xbf" + jsonl(*THREE), 1, "without a BOM"),
    Case(
        "invalid UTF-8 on line 3",
        jsonl(THREE[0], THREE[1], b'{"a": "\xff"}'),
        3,
        "Line 3 is not valid UTF-8.",
    ),
    Case("a character cut by the line end", jsonl(THREE[0], b'{"a": "\xc3'), 2, "not valid UTF-8"),
    Case(
        "a character cut by the file end",
        jsonl(THREE[0]) + b'{"a": "\xe6\x97',
        2,
        "not valid UTF-8",
    ),
    Case(
        "bad UTF-8 before the line limit",
        jsonl(b"\xff" + b"x" * 200),
        1,
        "not valid UTF-8",
        TINY_LINES,
    ),
    Case("a binary file", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, 1, "not valid UTF-8"),
    # JSON.
    Case(
        "a line that is an array",
        jsonl(THREE[0], [1, 2]),
        2,
        "is not a JSON object (found an array)",
    ),
    Case("a line that is a number", jsonl(THREE[0], 42), 2, "(found a number)"),
    Case("a line that is a string", jsonl(THREE[0], "req"), 2, "(found a string)"),
    Case("a line that is null", jsonl(None), 1, "(found null)"),
    Case("invalid JSON", jsonl(THREE[0], b'{"custom_id": '), 2, "Line 2 is not valid JSON: "),
    Case("two objects on a line", jsonl(b"{} {}"), 1, "is not valid JSON: Extra data"),
    Case("NaN in a body", jsonl(b'{"a": NaN}'), 1, "is not valid JSON: NaN"),
    Case("deeply nested JSON", jsonl(b"[" * 100_000 + b"]" * 100_000), 1, "nested too deeply"),
    # Batch requests.
    Case(
        "missing custom_id",
        jsonl(THREE[0], request(None)),
        2,
        "Line 2: missing required field 'custom_id'.",
    ),
    Case("empty custom_id", jsonl(request("")), 1, "'custom_id' must not be empty"),
    Case(
        "non-string custom_id", jsonl(request(7)), 1, "'custom_id' must be a string, found a number"
    ),
    Case(
        "duplicate custom_id",
        jsonl(request("req-1"), request("req-2"), request("req-1")),
        3,
        "Line 3: custom_id 'req-1' was already used on line 1.",
    ),
    Case(
        "duplicate long custom_id",
        jsonl(request("r" * 200), request("r" * 200)),
        2,
        "was already used on line 1",
    ),
    Case("wrong method", jsonl(request(method="GET")), 1, "'method' must be 'POST', found 'GET'"),
    Case("non-string method", jsonl(request(method=["POST"])), 1, "'method' must be a string"),
    Case("missing method", jsonl(request(method=None)), 1, "missing required field 'method'"),
    Case("missing url", jsonl(request(url=None)), 1, "missing required field 'url'"),
    Case(
        "url not under /v1/",
        jsonl(request(url="/chat/completions")),
        1,
        "'url' must start with '/v1/'",
    ),
    Case("missing body", jsonl(request(body=None)), 1, "missing required field 'body'"),
    Case(
        "body not an object",
        jsonl(request(body="hi")),
        1,
        "'body' must be a JSON object, found a string",
    ),
    Case("fine-tune refuses arrays", jsonl({"a": 1}, []), 2, "(found an array)", FINE_TUNE_RULES),
]


def validate(pieces: Iterable[bytes], rules: JSONLRules = BATCH_RULES) -> ValidationResult:
    validator = JSONLValidator(rules)
    for piece in pieces:
        validator.feed(piece)
    return validator.finish()


def network_chunks(data: bytes) -> Iterator[bytes]:
    return (data[start : start + NETWORK_CHUNK] for start in range(0, len(data), NETWORK_CHUNK))


def assert_verdict(result: ValidationResult, case: Case) -> None:
    if case.error is None:
        assert result == ValidationResult(ok=True, message=None, line=None, lines=result.lines)
        assert result.lines == case.data.count(b"\n") + (not case.data.endswith(b"\n"))
    else:
        assert not result.ok
        assert result.message is not None
        assert case.error in result.message
        assert result.message.endswith(".")
        assert result.line == case.line
        assert result.lines == (0 if case.line is None else case.line - 1)


def case_name(case: Case) -> str:
    return case.name


SMALL_CASES = [case for case in CASES if len(case.data) <= SMALL]


@pytest.mark.parametrize("case", CASES, ids=case_name)
def test_verdict_on_the_whole_file(case: Case) -> None:
    assert_verdict(validate([case.data], case.rules), case)


@pytest.mark.parametrize("case", CASES, ids=case_name)
def test_verdict_is_the_same_in_network_sized_chunks(case: Case) -> None:
    whole = validate([case.data], case.rules)
    assert validate(network_chunks(case.data), case.rules) == whole
    assert_verdict(whole, case)


@pytest.mark.parametrize("case", SMALL_CASES, ids=case_name)
def test_verdict_is_the_same_split_in_two_at_every_byte(case: Case) -> None:
    whole = validate([case.data], case.rules)
    for cut in range(len(case.data) + 1):
        result = validate([case.data[:cut], case.data[cut:]], case.rules)
        assert result == whole, f"cut at byte {cut}"


@pytest.mark.parametrize("case", SMALL_CASES, ids=case_name)
def test_verdict_is_the_same_fed_one_byte_at_a_time(case: Case) -> None:
    data = case.data
    assert validate((data[i : i + 1] for i in range(len(data))), case.rules) == validate(
        [data], case.rules
    )


def test_a_good_file_reports_its_line_count() -> None:
    assert validate([requests(3)]) == ValidationResult(ok=True, message=None, line=None, lines=3)


def test_failed_turns_true_as_soon_as_a_bad_line_arrives() -> None:
    validator = JSONLValidator()
    validator.feed(jsonl(request("a")))
    assert not validator.failed
    validator.feed(b"[]\n")
    assert validator.failed


def test_failed_turns_true_while_a_long_line_is_still_arriving() -> None:
    validator = JSONLValidator(JSONLRules(max_line_bytes=1024))
    validator.feed(b"x" * 1025)
    assert validator.failed


def test_a_file_is_not_failed_before_it_is_known_to_be_more_than_a_newline() -> None:
    validator = JSONLValidator()
    validator.feed(b"\n")
    assert not validator.failed
    validator.feed(b"{")
    assert validator.failed


def test_finish_gives_the_same_verdict_when_called_again() -> None:
    validator = JSONLValidator()
    validator.feed(jsonl(request()))
    first = validator.finish()
    validator.feed(b"[]\n")
    assert validator.finish() == first
    assert first.ok


def test_feed_parses_no_line_after_the_first_error(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    parse = validation._parse_json

    def counting_parse(text: str) -> object:
        parsed.append(text)
        return parse(text)

    monkeypatch.setattr(validation, "_parse_json", counting_parse)
    validator = JSONLValidator()
    validator.feed(jsonl(request("a"), [1]) + requests(100))
    validator.feed(requests(1000))
    assert len(parsed) == 2
    assert validator.finish().line == 2
    assert len(parsed) == 2


def test_feeding_a_large_binary_file_after_an_early_error_is_cheap() -> None:
    binary = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * (100 * 1024 * 1024 // 256)
    chunks = list(network_chunks(binary))
    validator = JSONLValidator()
    started = time.perf_counter()
    for chunk in chunks:
        validator.feed(chunk)
    result = validator.finish()
    assert time.perf_counter() - started < 0.5
    assert result.line == 1
    assert result.message == "Line 1 is not valid UTF-8."


def test_a_line_is_buffered_only_up_to_the_line_limit() -> None:
    limit = 256 * 1024
    chunks = list(network_chunks(b"x" * (16 * 1024 * 1024)))
    validator = JSONLValidator(JSONLRules(max_line_bytes=limit))
    tracemalloc.start()
    try:
        for chunk in chunks:
            validator.feed(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert validator.failed
    assert peak < 4 * limit


def test_custom_ids_may_repeat_in_fine_tune_files() -> None:
    assert validate([jsonl(request("a"), request("a"))], FINE_TUNE_RULES).ok


@pytest.mark.parametrize("limits", [{"max_lines": 0}, {"max_line_bytes": 0}])
def test_rules_refuse_limits_below_one(limits: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        JSONLRules(**limits)  # type: ignore[arg-type]

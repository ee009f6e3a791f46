"""The rules of range and conditional requests, as pure functions over header values."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from openai_files.http._ranges import (
    ByteRange,
    Unsatisfiable,
    http_date,
    not_modified,
    range_applies,
    requested_range,
)

SIZE = 10
ETAG = '"5d41402abc4b2a76b9719d911017c592"'
MODIFIED = 784111777
"""``Sun, 06 Nov 1994 08:49:37 GMT``, the example date of RFC 9110."""
IMF_FIXDATE = "Sun, 06 Nov 1994 08:49:37 GMT"


# -- requested_range ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-0", ByteRange(0, 0)),
        ("bytes=2-5", ByteRange(2, 5)),
        ("bytes=9-9", ByteRange(9, 9)),
        ("bytes=0-9", ByteRange(0, 9)),
        ("bytes=5-", ByteRange(5, 9)),
        ("bytes=0-", ByteRange(0, 9)),
        ("bytes=9-", ByteRange(9, 9)),
        ("bytes=-1", ByteRange(9, 9)),
        ("bytes=-3", ByteRange(7, 9)),
        ("bytes=-10", ByteRange(0, 9)),
        ("BYTES=1-2", ByteRange(1, 2)),
    ],
)
def test_a_single_byte_range_is_read_as_inclusive_offsets(header: str, expected: ByteRange) -> None:
    assert requested_range(header, SIZE) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=3-100", ByteRange(3, 9)),
        ("bytes=0-9999999999999999999", ByteRange(0, 9)),
        ("bytes=-100", ByteRange(0, 9)),
    ],
)
def test_a_range_reaching_past_the_end_is_clamped_to_the_last_byte(
    header: str, expected: ByteRange
) -> None:
    assert requested_range(header, SIZE) == expected


def test_no_header_means_the_whole_file() -> None:
    assert requested_range(None, SIZE) is None


@pytest.mark.parametrize(
    "header",
    [
        "",
        "bytes",
        "bytes=",
        "bytes=-",
        "bytes=abc",
        "bytes=a-b",
        "bytes=5-2",
        "bytes=1-2-3",
        "bytes=+1-2",
        "bytes=1_0-20",
        "bytes=0x1-2",
        "bytes=1.5-2",
        "bytes=5 - 7",
        "bytes 0-1",
        "=0-1",
        "items=0-1",
        "bits=0-1",
        "bytes=\u0661-\u0662",  # Arabic-Indic digits one and two
        "bytes=\u00b2-",  # superscript two: str.isdigit accepts it, int() does not
        "bytes=-\uff13",  # fullwidth three
    ],
)
def test_a_malformed_header_is_ignored(header: str) -> None:
    assert requested_range(header, SIZE) is None


@pytest.mark.parametrize("header", ["bytes=0-1,4-5", "bytes=0-1, 4-5", "bytes=0-0,-1", "bytes=1-,"])
def test_several_ranges_are_answered_with_the_whole_file(header: str) -> None:
    assert requested_range(header, SIZE) is None


@pytest.mark.parametrize(
    "header", ["bytes=10-", "bytes=10-10", "bytes=11-20", "bytes=9999999999999999999-", "bytes=-0"]
)
def test_a_range_that_starts_past_the_end_is_unsatisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        requested_range(header, SIZE)


@pytest.mark.parametrize("header", ["bytes=0-0", "bytes=0-", "bytes=-1", "bytes=-0", "bytes=0-99"])
def test_no_range_of_an_empty_file_is_satisfiable(header: str) -> None:
    with pytest.raises(Unsatisfiable):
        requested_range(header, 0)


def test_an_empty_file_without_a_range_is_served_whole() -> None:
    assert requested_range(None, 0) is None
    assert requested_range("bytes=abc", 0) is None


def test_a_byte_range_knows_its_length_and_content_range() -> None:
    assert ByteRange(2, 5).length == 4
    assert ByteRange(0, 0).length == 1
    assert ByteRange(2, 5).content_range(SIZE) == "bytes 2-5/10"


# -- range_applies (If-Range) ---------------------------------------------------------------


def test_without_if_range_the_range_applies() -> None:
    assert range_applies(None, ETAG, MODIFIED)


def test_if_range_with_the_current_strong_etag_lets_the_range_apply() -> None:
    assert range_applies(ETAG, ETAG, MODIFIED)
    assert range_applies(f" {ETAG} ", ETAG, MODIFIED)


@pytest.mark.parametrize("if_range", ['"another"', '"5d41402abc4b2a76b9719d911017c59"', '""'])
def test_if_range_with_another_etag_serves_the_whole_file(if_range: str) -> None:
    assert not range_applies(if_range, ETAG, MODIFIED)


def test_if_range_with_a_weak_etag_never_matches() -> None:
    assert not range_applies(f"W/{ETAG}", ETAG, MODIFIED)


@pytest.mark.parametrize(
    "if_range",
    [IMF_FIXDATE, "Sunday, 06-Nov-94 08:49:37 GMT"],
    ids=["IMF-fixdate", "rfc850"],
)
def test_if_range_with_exactly_the_last_modified_date_lets_the_range_apply(if_range: str) -> None:
    assert range_applies(if_range, ETAG, MODIFIED)


@pytest.mark.parametrize("last_modified", [MODIFIED - 1, MODIFIED + 1])
def test_if_range_with_another_date_serves_the_whole_file(last_modified: int) -> None:
    assert not range_applies(IMF_FIXDATE, ETAG, last_modified)


@pytest.mark.parametrize("if_range", ["", "yesterday", "Sun, 06 Nov 1994", "W/", "1994-11-06"])
def test_if_range_with_garbage_serves_the_whole_file(if_range: str) -> None:
    assert not range_applies(if_range, ETAG, MODIFIED)


@pytest.fixture
def eastern_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The process's local time zone is five hours behind UTC for the test."""
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("eastern_time")
def test_an_asctime_date_is_read_as_gmt_whatever_the_server_time_zone() -> None:
    # RFC 9110 section 5.6.7: recipients must accept the asctime format, which is in GMT.
    asctime = "Sun Nov  6 08:49:37 1994"
    assert range_applies(asctime, ETAG, MODIFIED)
    assert not_modified(None, asctime, ETAG, MODIFIED)
    assert not not_modified(None, asctime, ETAG, MODIFIED + 1)


# -- not_modified (If-None-Match, If-Modified-Since) -----------------------------------------


def test_without_conditions_the_file_is_served() -> None:
    assert not not_modified(None, None, ETAG, MODIFIED)


@pytest.mark.parametrize(
    "if_none_match",
    [
        "*",
        ETAG,
        f" {ETAG} ",
        f'"old", {ETAG}',
        f'"old",{ETAG},"older"',
        f"W/{ETAG}",
        f'W/"old", W/{ETAG}',
    ],
)
def test_if_none_match_naming_the_current_etag_is_not_modified(if_none_match: str) -> None:
    assert not_modified(if_none_match, None, ETAG, MODIFIED)


@pytest.mark.parametrize(
    "if_none_match", ['"old"', '"old", "older"', 'W/"old"', '"5d41402abc4b2a76b9719d911017c59"']
)
def test_if_none_match_with_other_etags_is_modified(if_none_match: str) -> None:
    assert not not_modified(if_none_match, None, ETAG, MODIFIED)


def test_if_none_match_takes_precedence_over_if_modified_since() -> None:
    later = http_date(MODIFIED + 3600)
    assert not not_modified('"old"', later, ETAG, MODIFIED)
    earlier = http_date(MODIFIED - 3600)
    assert not_modified(ETAG, earlier, ETAG, MODIFIED)


@pytest.mark.parametrize("offset", [0, 1, 86400])
def test_if_modified_since_at_or_after_last_modified_is_not_modified(offset: int) -> None:
    assert not_modified(None, http_date(MODIFIED + offset), ETAG, MODIFIED)


@pytest.mark.parametrize("offset", [1, 86400])
def test_if_modified_since_before_last_modified_is_modified(offset: int) -> None:
    assert not not_modified(None, http_date(MODIFIED - offset), ETAG, MODIFIED)


@pytest.mark.parametrize("if_modified_since", ["", "yesterday", "Sun, 06 Nov 1994", "0", ETAG])
def test_if_modified_since_with_garbage_is_ignored(if_modified_since: str) -> None:
    assert not not_modified(None, if_modified_since, ETAG, MODIFIED)


# -- http_date ------------------------------------------------------------------------------


def test_http_date_is_an_imf_fixdate_in_gmt() -> None:
    assert http_date(MODIFIED) == IMF_FIXDATE


def test_http_date_round_trips_through_if_range_and_if_modified_since() -> None:
    now = int(time.time())
    assert range_applies(http_date(now), ETAG, now)
    assert not_modified(None, http_date(now), ETAG, now)

"""File ids carry their creation time, in either format, so that a cursor stays valid."""

from __future__ import annotations

import uuid

import pytest

from openai_files.ids import new_file_id, parse_file_id

T = 1_795_000_000_123_456  # microseconds since the epoch


@pytest.mark.parametrize("id_format", ["openai", "uuid7"])
def test_an_id_gives_back_the_microsecond_it_was_made_for(id_format: str) -> None:
    for created_us in (T, T + 1, T + 999, T + 1000, 0):
        file_id = new_file_id(created_us, id_format)  # type: ignore[arg-type]
        assert parse_file_id(file_id) == created_us
    assert new_file_id(T, id_format) != new_file_id(T, id_format)  # type: ignore[arg-type]


def test_a_uuid7_id_is_an_rfc_9562_version_7_uuid_with_the_milliseconds_in_front() -> None:
    file_id = new_file_id(T, "uuid7")
    parsed = uuid.UUID(file_id)
    assert str(parsed) == file_id
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert parsed.int >> 80 == T // 1000


@pytest.mark.parametrize(
    "file_id",
    [
        "file-abc",
        "5b8e0f7c-3a1d-4c2e-9f60-1a2b3c4d5e6f",  # version 4
        "01a20602-dc37-7fff-9bd0-71a03f155a47",  # rand_a past 999 microseconds
        "01A20602-DC37-728F-9BD0-71A03F155A47",
        "01a20602-dc37-728f-cbd0-71a03f155a47",  # not the RFC variant
        "' OR 1=1 --",
    ],
)
def test_anything_else_carries_no_time(file_id: str) -> None:
    assert parse_file_id(file_id) is None

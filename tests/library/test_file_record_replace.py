"""`FileRecord.replace` makes what `dataclasses.replace` makes, and refuses an unknown field."""

from __future__ import annotations

import dataclasses

import pytest

from openai_files.metadata.base import FileRecord

RECORD = FileRecord(
    id="file-abc",
    owner="alice",
    purpose="batch",
    filename="in.jsonl",
    bytes=10,
    created_us=1_750_000_000_000_000,
    expires_at=None,
    status="processed",
    status_details=None,
    storage_key="ab/cd",
    sha256="00" * 32,
    media_type=None,
    state="pending",
)


@pytest.mark.parametrize(
    "changes",
    [{"state": "active"}, {"storage_key": "ef/gh", "bytes": 99}, {}, {"etag": '"x"'}],
)
def test_replace_equals_dataclasses_replace_and_leaves_the_original(
    changes: dict[str, object],
) -> None:
    copy = RECORD.replace(**changes)
    assert copy == dataclasses.replace(RECORD, **changes)  # type: ignore[arg-type]
    assert copy is not RECORD
    assert RECORD.state == "pending"
    assert RECORD.storage_key == "ab/cd"
    with pytest.raises(dataclasses.FrozenInstanceError):
        copy.state = "deleted"  # type: ignore[misc]


def test_replace_refuses_a_field_the_record_does_not_have() -> None:
    with pytest.raises(TypeError, match="no field 'colour'"):
        RECORD.replace(colour="blue")

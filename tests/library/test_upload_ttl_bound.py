"""``Policy.upload_ttl`` stays within a day: the orphan sweep removes the partial bytes of an
upload (unfinished local files, incomplete S3 multipart uploads) untouched for a day, so a
longer-lived upload could lose its parts while it can still be completed."""

from __future__ import annotations

import pytest

from openai_files import Policy


@pytest.mark.parametrize("seconds", [1, 3600, 86_400])
def test_an_upload_ttl_up_to_a_day_is_accepted(seconds: int) -> None:
    assert Policy(upload_ttl=seconds).upload_ttl == seconds


@pytest.mark.parametrize("seconds", [0, -1, 86_401, 7 * 86_400])
def test_an_upload_ttl_outside_a_day_is_refused_with_the_reason(seconds: int) -> None:
    with pytest.raises(ValueError, match=r"upload_ttl must be between 1 and 86400 seconds"):
        Policy(upload_ttl=seconds)

"""`MetadataConformance`: the behaviour every `MetadataStore` backend must show."""

from __future__ import annotations

import pytest

from ._file_lifecycle import FileLifecycleConformance
from ._file_records import FileRecordConformance
from ._inline_files import InlineFilesConformance
from ._one_step_inserts import OneStepInsertConformance
from ._part_numbers import PartNumberConformance
from ._records import make_part, make_record, make_upload
from ._upload_records import UploadRecordConformance
from ._upload_states import UploadStateConformance
from ._usage_listing import UsageListingConformance

__all__ = ["MetadataConformance", "make_part", "make_record", "make_upload"]


class MetadataConformance(
    FileRecordConformance,
    FileLifecycleConformance,
    InlineFilesConformance,
    OneStepInsertConformance,
    PartNumberConformance,
    UploadRecordConformance,
    UploadStateConformance,
    UsageListingConformance,
):
    """Subclass with a ``metadata`` fixture that yields an empty store.

    The cases cover every method of `MetadataStore` and of its capabilities `OffsetPaging`,
    `StatusUpdates`, `UsageListing` and `InlineFiles` (a case for a capability the store lacks
    is skipped); they are grouped by concern: file records, what they count, files recorded in
    one step, small files' bytes, what uploads count, each upload-record method, and the usage
    of every owner.
    """

    pytestmark = pytest.mark.anyio

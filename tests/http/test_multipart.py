"""`MultipartReader` as a specification: the same parts whatever the chunking, and every limit."""

from __future__ import annotations

import gc
import weakref
from collections.abc import AsyncIterator, Iterable

import pytest

from openai_files import MalformedUpload, RequestTooLarge
from openai_files.http._multipart import (
    FormLimits,
    MultipartReader,
    Part,
    boundary_from_content_type,
)

pytestmark = pytest.mark.anyio

BOUNDARY = b"----openaifilesBoundary7MA4YWxkTrZu0gW"
DELIMITER = b"--" + BOUNDARY
CLOSE = DELIMITER + b"--\r\n"


def field(name: bytes, value: bytes) -> bytes:
    return b'Content-Disposition: form-data; name="' + name + b'"\r\n\r\n' + value


def file_part(
    content: bytes,
    *,
    filename: bytes = b"data.jsonl",
    name: bytes = b"file",
    content_type: bytes = b"application/octet-stream",
) -> bytes:
    return (
        b'Content-Disposition: form-data; name="' + name + b'"; filename="' + filename + b'"\r\n'
        b"Content-Type: " + content_type + b"\r\n\r\n" + content
    )


def form(*parts: bytes, close: bool = True) -> bytes:
    """A multipart body of ``parts`` (each: headers, blank line, content)."""
    body = b"".join(DELIMITER + b"\r\n" + part + b"\r\n" for part in parts)
    return body + CLOSE if close else body


async def arrive(pieces: Iterable[bytes]) -> AsyncIterator[bytes]:
    for piece in pieces:
        yield piece


def reader_of(
    pieces: Iterable[bytes], *, max_body: int = 1 << 20, limits: FormLimits | None = None
) -> MultipartReader:
    return MultipartReader(arrive(pieces), BOUNDARY, max_body=max_body, limits=limits)


async def read_all(reader: MultipartReader) -> list[tuple[Part, bytes]]:
    """Every part with its whole content, read through `iter_data`."""
    parts = []
    while (part := await reader.next_part()) is not None:
        parts.append((part, b"".join([chunk async for chunk in reader.iter_data()])))
    return parts


async def parse(
    pieces: Iterable[bytes], *, max_body: int = 1 << 20, limits: FormLimits | None = None
) -> list[tuple[Part, bytes]]:
    return await read_all(reader_of(pieces, max_body=max_body, limits=limits))


def splits(body: bytes) -> Iterable[list[bytes]]:
    """The body cut into two chunks at every byte position, then one byte at a time."""
    for cut in range(len(body) + 1):
        yield [body[:cut], body[cut:]]
    yield [body[i : i + 1] for i in range(len(body))]


FILE_CONTENT = b'{"custom_id": "a", "method": "POST"}\r\n{"custom_id": "b"}\n\r\n' + bytes(
    range(256)
)
PURPOSE = Part(name="purpose", filename=None, content_type=None)
FILE = Part(name="file", filename="data.jsonl", content_type="application/octet-stream")

WELL_FORMED = {
    "purpose-first": (
        form(field(b"purpose", b"batch"), file_part(FILE_CONTENT)),
        [(PURPOSE, b"batch"), (FILE, FILE_CONTENT)],
    ),
    "file-first": (
        form(file_part(FILE_CONTENT), field(b"purpose", b"batch")),
        [(FILE, FILE_CONTENT), (PURPOSE, b"batch")],
    ),
}


@pytest.mark.parametrize("order", list(WELL_FORMED))
async def test_parts_are_the_same_whatever_byte_the_body_is_split_at(order: str) -> None:
    body, expected = WELL_FORMED[order]
    for pieces in splits(body):
        assert await parse(pieces) == expected, f"split into {[len(p) for p in pieces]}"


NEAR_BOUNDARY_CONTENTS = {
    "boundary-without-crlf": b"before " + DELIMITER + b" after",
    "boundary-at-line-start-without-cr": b"line\n" + DELIMITER + b"\nmore",
    "boundary-after-crlf-with-one-dash": b"x\r\n-" + BOUNDARY + b"\r\ny",
    "delimiter-missing-last-byte": b"x\r\n" + DELIMITER[:-1] + b"!\r\ny",
    "content-ends-with-partial-delimiter": b"x\r\n" + DELIMITER[:-1],
    "content-ends-with-cr": b"x\r",
    "content-ends-with-crlf": b"x\r\n",
    "content-ends-with-crlf-dash-dash": b"x\r\n--",
    "only-crlfs-and-dashes": b"\r\n\r\n--\r\n-\r\r\n--\r\n",
    "closing-boundary-without-crlf": DELIMITER + b"--",
    "empty": b"",
}


@pytest.mark.parametrize("content", NEAR_BOUNDARY_CONTENTS.values(), ids=NEAR_BOUNDARY_CONTENTS)
async def test_file_content_resembling_the_boundary_is_kept_byte_for_byte(content: bytes) -> None:
    body = form(file_part(content), field(b"purpose", b"batch"))
    for pieces in splits(body):
        parts = await parse(pieces)
        assert parts == [(FILE, content), (PURPOSE, b"batch")], f"split {[len(p) for p in pieces]}"


async def test_large_file_arriving_in_network_sized_chunks_is_exact() -> None:
    content = bytes(range(256)) * 4096 + b"\r\n--" + BOUNDARY[:-3]
    body = form(field(b"purpose", b"batch"), file_part(content))
    pieces = [body[i : i + 65_536] for i in range(0, len(body), 65_536)]
    assert await parse(pieces, max_body=len(body)) == [(PURPOSE, b"batch"), (FILE, content)]


async def test_content_not_consumed_is_skipped_by_next_part() -> None:
    body = form(file_part(FILE_CONTENT), field(b"purpose", b"batch"))
    reader = reader_of(body[i : i + 7] for i in range(0, len(body), 7))
    assert await reader.next_part() == FILE
    assert await reader.next_part() == PURPOSE
    assert await reader.read_text("purpose") == "batch"
    assert await reader.next_part() is None
    assert await reader.next_part() is None


async def test_epilogue_after_the_closing_boundary_is_ignored() -> None:
    body = form(field(b"purpose", b"batch")) + b"epilogue that is not a part\r\n"
    assert await parse([body]) == [(PURPOSE, b"batch")]


async def test_closing_boundary_without_a_trailing_crlf_ends_the_body() -> None:
    body = form(field(b"purpose", b"batch"))[: -len(b"\r\n")]
    for pieces in splits(body):
        assert await parse(pieces) == [(PURPOSE, b"batch")]


TRUNCATED = {
    "no-closing-boundary": form(field(b"purpose", b"batch"), file_part(FILE_CONTENT), close=False),
    "closing-boundary-cut": form(field(b"purpose", b"batch"))[: -len(b"--\r\n")],
    "cut-inside-file-content": form(file_part(FILE_CONTENT))[:-100],
    "cut-inside-headers": DELIMITER + b"\r\nContent-Disposition: form-da",
    "only-the-first-delimiter": DELIMITER + b"\r\n",
    "empty-body": b"",
}


@pytest.mark.parametrize("body", TRUNCATED.values(), ids=TRUNCATED)
async def test_body_ending_before_its_closing_boundary_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedUpload, match="closing boundary"):
        await parse([body])


async def test_truncated_file_is_refused_while_its_bytes_are_being_read() -> None:
    reader = reader_of([form(file_part(FILE_CONTENT), close=False)])
    assert await reader.next_part() == FILE
    with pytest.raises(MalformedUpload, match="closing boundary"):
        async for _ in reader.iter_data():
            pass


async def test_reader_yields_both_of_two_file_parts() -> None:
    second = FILE_CONTENT[::-1]
    body = form(file_part(FILE_CONTENT), file_part(second, filename=b"other.jsonl"))
    other = Part(name="file", filename="other.jsonl", content_type="application/octet-stream")
    for pieces in splits(body):
        assert await parse(pieces) == [(FILE, FILE_CONTENT), (other, second)]


NAMELESS_PARTS = {
    "no-name": b'Content-Disposition: form-data; filename="a.txt"\r\n\r\nx',
    "empty-name": b'Content-Disposition: form-data; name=""\r\n\r\nx',
    "no-content-disposition": b"Content-Type: text/plain\r\n\r\nx",
    "no-headers": b"\r\nx",
    "not-form-data": b'Content-Disposition: attachment; name="file"\r\n\r\nx',
}


@pytest.mark.parametrize("part", NAMELESS_PARTS.values(), ids=NAMELESS_PARTS)
async def test_part_without_a_form_data_name_is_malformed(part: bytes) -> None:
    with pytest.raises(MalformedUpload, match="Content-Disposition: form-data; name="):
        await parse([form(field(b"purpose", b"batch"), part)])


async def test_text_field_of_exactly_max_field_size_is_read() -> None:
    limits = FormLimits(max_field_size=100)
    reader = reader_of([form(field(b"purpose", b"a" * 100))], limits=limits)
    assert await reader.next_part() == PURPOSE
    assert await reader.read_text("purpose") == "a" * 100


async def test_text_field_over_max_field_size_is_malformed_and_names_the_field() -> None:
    limits = FormLimits(max_field_size=100)
    body = form(field(b"purpose", b"a" * 101))
    reader = reader_of([body[i : i + 10] for i in range(0, len(body), 10)], limits=limits)
    assert await reader.next_part() == PURPOSE
    with pytest.raises(MalformedUpload, match="longer than 100 bytes") as caught:
        await reader.read_text("purpose")
    assert caught.value.param == "purpose"


async def test_form_with_exactly_max_fields_parts_is_read() -> None:
    limits = FormLimits(max_fields=3)
    fields = [field(b"f%d" % i, b"v") for i in range(3)]
    assert len(await parse([form(*fields)], limits=limits)) == 3


async def test_form_with_more_parts_than_max_fields_is_malformed() -> None:
    limits = FormLimits(max_fields=3)
    fields = [field(b"f%d" % i, b"v") for i in range(4)]
    with pytest.raises(MalformedUpload, match="more than 3 parts"):
        await parse([form(*fields)], limits=limits)


async def test_part_with_more_headers_than_allowed_is_malformed() -> None:
    limits = FormLimits(max_headers_per_part=2)
    part = b"X-One: 1\r\nX-Two: 2\r\n" + field(b"purpose", b"batch")
    with pytest.raises(MalformedUpload):
        await parse([form(part)], limits=limits)


async def test_header_longer_than_max_header_size_is_malformed() -> None:
    limits = FormLimits(max_header_size=256)
    part = file_part(b"x", filename=b"a" * 300)
    with pytest.raises(MalformedUpload):
        await parse([form(part)], limits=limits)


async def test_body_of_exactly_max_body_bytes_is_read() -> None:
    body = form(file_part(FILE_CONTENT))
    assert await parse([body], max_body=len(body)) == [(FILE, FILE_CONTENT)]


async def test_body_over_max_body_raises_file_too_large_as_soon_as_it_passes() -> None:
    chunk_size, max_body = 1000, 10_000
    pulled = 0

    async def endless_file() -> AsyncIterator[bytes]:
        nonlocal pulled
        head = DELIMITER + b"\r\n" + file_part(b"")
        pulled += len(head)
        yield head
        while True:
            pulled += chunk_size
            yield b"x" * chunk_size

    reader = MultipartReader(endless_file(), BOUNDARY, max_body=max_body)
    assert await reader.next_part() == FILE
    received: list[bytes] = []

    async def read_file() -> None:
        async for chunk in reader.iter_data():
            received.append(chunk)

    with pytest.raises(RequestTooLarge) as caught:
        await read_file()
    assert caught.value.limit == max_body
    assert max_body < reader.bytes_received <= max_body + chunk_size
    assert pulled == reader.bytes_received
    assert len(b"".join(received)) <= max_body


@pytest.mark.parametrize(
    ("content_type", "boundary"),
    [
        ("multipart/form-data; boundary=abc123", b"abc123"),
        ('multipart/form-data; boundary="a b:c"', b"a b:c"),
        ("Multipart/Form-Data; charset=utf-8; boundary=xyz", b"xyz"),
        ("multipart/form-data; boundary=" + "b" * 70, b"b" * 70),
    ],
)
def test_boundary_is_read_from_a_multipart_form_data_content_type(
    content_type: str, boundary: bytes
) -> None:
    assert boundary_from_content_type(content_type) == boundary


@pytest.mark.parametrize(
    ("content_type", "message"),
    [
        (None, "Send the request as multipart/form-data"),
        ("", "Send the request as multipart/form-data"),
        ("application/json", "Send the request as multipart/form-data"),
        ("text/plain; boundary=abc", "Send the request as multipart/form-data"),
        ("multipart/mixed; boundary=abc", "Send the request as multipart/form-data"),
        ("application/x-www-form-urlencoded", "Send the request as multipart/form-data"),
        ("multipart/form-data", "no boundary"),
        ("multipart/form-data; charset=utf-8", "no boundary"),
        ("multipart/form-data; boundary=", "no boundary"),
        ('multipart/form-data; boundary=""', "no boundary"),
        ("multipart/form-data; boundary=" + "b" * 71, "longer than 70"),
    ],
)
def test_content_type_that_is_not_multipart_with_a_boundary_is_malformed(
    content_type: str | None, message: str
) -> None:
    with pytest.raises(MalformedUpload, match=message):
        boundary_from_content_type(content_type)


async def test_field_value_that_is_not_utf8_is_malformed_and_names_the_field() -> None:
    reader = reader_of([form(field(b"purpose", b"batch\xff\xfe"))])
    assert await reader.next_part() == PURPOSE
    with pytest.raises(MalformedUpload, match="not valid UTF-8") as caught:
        await reader.read_text("purpose")
    assert caught.value.param == "purpose"


async def test_filename_that_is_not_utf8_is_malformed() -> None:
    with pytest.raises(MalformedUpload, match="not valid UTF-8"):
        await parse([form(file_part(b"x", filename=b"caf\xe9.txt"))])


@pytest.mark.parametrize(
    ("sent", "decoded"),
    [
        ("résumé 履歴書 📄.jsonl".encode(), "résumé 履歴書 📄.jsonl"),
        (b'say \\"hi\\".txt', 'say "hi".txt'),
        (b"back\\\\slash.txt", "back\\slash.txt"),
        (b"../../etc/passwd", "../../etc/passwd"),
    ],
)
async def test_filename_is_decoded_exactly_whatever_the_split(sent: bytes, decoded: str) -> None:
    body = form(file_part(b"x", filename=sent))
    for pieces in splits(body):
        [(part, content)] = await parse(pieces)
        assert (part.filename, content) == (decoded, b"x")


async def test_text_field_with_non_ascii_utf8_is_read_exactly() -> None:
    body = form(field(b"note", "ünïcödé ✓".encode()))
    for pieces in splits(body):
        reader = reader_of(pieces)
        assert await reader.next_part() == Part(name="note", filename=None, content_type=None)
        assert await reader.read_text("note") == "ünïcödé ✓"
        assert await reader.next_part() is None


async def test_a_reader_is_freed_by_reference_counting_alone() -> None:
    """A reader and its parser form no reference cycle: they are freed as soon as the upload
    drops them, not left to the garbage collector (whose collections a server pays for)."""
    gc.collect()
    reader = reader_of([form(field(b"purpose", b"batch"), file_part(FILE_CONTENT))])
    assert [part.name for part, _ in await read_all(reader)] == ["purpose", "file"]
    freed = weakref.ref(reader)
    del reader
    assert freed() is None
    assert gc.collect() == 0

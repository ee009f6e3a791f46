"""The random bytes behind ids, storage keys and temporary names (`openai_files._random`):
read from the system a page at a time, each byte handed out once, in every thread, and never
the same in a forked child as in its parent."""

from __future__ import annotations

import os
import re
import sys
import threading
from collections import Counter

import pytest

from openai_files._random import random_below, random_hex
from openai_files.ids import new_file_id, new_storage_key, parse_file_id


def test_hex_values_have_their_length_and_never_repeat_across_many_pages() -> None:
    values = [random_hex(16) for _ in range(5_000)]  # 80,000 bytes: about 20 pages
    assert all(re.fullmatch(r"[0-9a-f]{32}", value) for value in values)
    assert len(set(values)) == len(values)
    assert len(random_hex(5_000)) == 10_000  # more than a page at once


@pytest.mark.parametrize("bound", [1, 2, 6, 62**15, 62**24, 1 << 62])
def test_below_stays_under_its_bound(bound: int) -> None:
    drawn = [random_below(bound) for _ in range(2_000)]
    assert all(0 <= value < bound for value in drawn)
    if bound > 2:
        assert len(set(drawn)) > 1


def test_below_is_uniform() -> None:
    # 6 is not a power of two: a draw that only masked bits would favour the low values.
    counts = Counter(random_below(6) for _ in range(60_000))
    assert sorted(counts) == [0, 1, 2, 3, 4, 5]
    assert all(9_400 < count < 10_600 for count in counts.values()), counts


def test_threads_drawing_at_once_never_get_the_same_bytes() -> None:
    drawn: list[list[str]] = [[] for _ in range(8)]

    def draw(into: list[str]) -> None:
        into.extend(random_hex(8) for _ in range(2_000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [value for values in drawn for value in values]
    assert len(every) == len(set(every)) == 16_000


@pytest.mark.skipif(sys.platform == "win32", reason="os.fork")
def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    random_hex(1)  # a page is held, partly used, when the process forks
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child)
        try:
            os.write(writing, (random_hex(16) + new_storage_key()).encode())
        finally:
            os._exit(0)
    os.close(writing)
    _, status = os.waitpid(child, 0)
    with os.fdopen(reading, "rb") as pipe:
        from_child = pipe.read().decode()
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(from_child) == 32 + 35
    assert from_child != random_hex(16) + new_storage_key()


def test_ids_and_keys_draw_from_it() -> None:
    file_ids = {new_file_id(1_800_000_000_000_000) for _ in range(2_000)}
    assert len(file_ids) == 2_000
    assert {parse_file_id(file_id) for file_id in file_ids} == {1_800_000_000_000_000}
    keys = {new_storage_key() for _ in range(2_000)}
    assert len(keys) == 2_000
    assert all(re.fullmatch(r"([0-9a-f]{2})/\1[0-9a-f]{30}", key) for key in keys)

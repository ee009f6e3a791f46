"""``openai-files serve --cache-dir``: what the hot tier does is in ``/metrics``."""

from __future__ import annotations

from pathlib import Path

import httpx

from ..http.test_metrics import sample
from ..support import server_process


def test_hits_misses_fills_evictions_and_bytes_held_are_in_the_metrics(tmp_path: Path) -> None:
    cache = ("--cache-dir", str(tmp_path / "cache"), "--cache-size", "1500")
    on_disk = ("--inline-max", "0")  # the small files go through the tiers, not the database
    args = ("--storage", "memory://", "--metadata", "memory://", *cache, *on_disk)
    with server_process(tmp_path, *args) as server:
        ids = []
        for name in ("a.txt", "b.txt"):
            created = httpx.post(
                server.url + "/v1/files",
                files={"file": (name, b"x" * 1000)},
                data={"purpose": "assistants"},
            )
            assert created.status_code == 200, created.text
            ids.append(created.json()["id"])
        first, second = (server.url + f"/v1/files/{file_id}/content" for file_id in ids)
        assert httpx.get(first).content == b"x" * 1000  # a miss that fills
        assert httpx.get(first).content == b"x" * 1000  # a hit
        assert httpx.get(second).content == b"x" * 1000  # a miss: the first is evicted
        exposition = httpx.get(server.url + "/metrics").text
    events = "openai_files_hot_tier_events_total"
    assert sample(exposition, events, event="miss") == 2
    assert sample(exposition, events, event="hit") == 1
    assert sample(exposition, events, event="fill") == 2
    assert sample(exposition, events, event="eviction") == 1
    assert sample(exposition, "openai_files_hot_tier_bytes") == 1000

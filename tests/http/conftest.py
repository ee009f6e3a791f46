"""Fixtures of the HTTP edge's tests."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI


@pytest.fixture
async def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FastAPI]:
    """``examples/fastapi_gateway.py``'s app, imported afresh over a temporary data directory."""
    monkeypatch.setenv("OPENAI_FILES_DATA_DIR", str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parents[2] / "examples"))
    sys.modules.pop("fastapi_gateway", None)
    import fastapi_gateway

    yield fastapi_gateway.app
    sys.modules.pop("fastapi_gateway", None)

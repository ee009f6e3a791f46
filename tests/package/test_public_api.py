"""The public surface: ``openai_files.__all__`` is exactly the package's public names, each
importable, and the paths that moved still work for a release, with a warning."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
import warnings

import pytest

import openai_files
from openai_files._deprecated import MOVED, MOVED_NAMES


def test_the_public_names_are_exactly_all() -> None:
    public = {
        name
        for name in dir(openai_files)
        if not name.startswith("_")
        and not isinstance(getattr(openai_files, name), types.ModuleType)
    }
    assert public == set(openai_files.__all__) - {"__version__"}


@pytest.mark.parametrize("name", openai_files.__all__)
def test_every_name_in_all_is_importable(name: str) -> None:
    namespace: dict[str, object] = {}
    exec(f"from openai_files import {name}", namespace)
    assert namespace[name] is getattr(openai_files, name)


def test_what_users_need_is_public() -> None:
    needed = {
        "Quota",
        "FileTypes",
        "JSONLRules",
        "QuotaExceeded",
        "UploadNotFound",
        "RateLimited",
        "RequestTimeout",
        "FileStat",
        "Uploads",
        "SweepReport",
        "FileEvent",
        "S3Storage",
        "ManualClock",
    }
    assert needed <= set(openai_files.__all__)
    assert not {"ErrorBody", "ErrorDetail", "FormLimits"} & set(openai_files.__all__)


def test_s3_storage_is_loaded_only_when_named() -> None:
    code = (
        "import sys, openai_files; before = 'obstore' in sys.modules; "
        "from openai_files import S3Storage; print(before, 'obstore' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "True"]


def test_the_http_edge_exports_its_public_names() -> None:
    import openai_files.http as edge

    for name in edge.__all__:
        assert getattr(edge, name) is not None, name
    assert edge.create_app is openai_files.create_app


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_a_moved_module_warns_and_gives_the_same_objects(
    old: str, new: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delitem(sys.modules, old, raising=False)
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        shim = importlib.import_module(old)
    moved = importlib.import_module(new)
    names = [name for name in vars(moved) if not name.startswith("__")]
    assert names
    for name in names:
        assert getattr(shim, name) is getattr(moved, name), name


@pytest.mark.parametrize(("old", "new"), sorted(MOVED_NAMES.items()))
def test_a_moved_name_warns_and_gives_the_same_object(old: str, new: str) -> None:
    module, _, name = old.rpartition(".")
    with pytest.warns(DeprecationWarning, match=f"{old} is deprecated"):
        found = getattr(importlib.import_module(module), name)
    assert found is getattr(importlib.import_module(new), name)


def test_an_unknown_name_is_an_attribute_error_without_warning() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(AttributeError, match="no_such_name"):
            _ = openai_files.no_such_name


def test_the_command_line_runs_as_a_module() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "openai_files.cli", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0
    assert "openai-files" in done.stdout

"""The package as users get it: a wheel and an sdist that build, install and import cleanly."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DRIVERS = {"postgres": "asyncpg", "mysql": "aiomysql", "s3": "obstore"}


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--sdist", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def wheel_metadata(dist: Path) -> email.message.Message:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(archive.read(name))


def test_the_wheel_ships_the_typed_package_and_its_command(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        entry_points = next(n for n in names if n.endswith("entry_points.txt"))
        assert "openai-files = openai_files.cli:main" in archive.read(entry_points).decode()
    assert "openai_files/py.typed" in names
    assert "openai_files/testing/__init__.py" in names
    assert len(list(dist.glob("*.tar.gz"))) == 1


def test_each_extra_pulls_in_only_its_driver(dist: Path) -> None:
    requirements = wheel_metadata(dist).get_all("Requires-Dist") or []
    for extra, driver in DRIVERS.items():
        wanted = [r for r in requirements if re.search(rf"extra == .{extra}.$", r)]
        assert [r.split(">")[0].split("=")[0].strip() for r in wanted] == [driver], extra
    base = [r for r in requirements if "extra ==" not in r]
    assert not any(driver in r for r in base for driver in DRIVERS.values())


def test_a_clean_environment_installs_the_wheel_and_imports_it_without_extras(
    dist: Path, tmp_path: Path
) -> None:
    (wheel,) = dist.glob("*.whl")
    venv.create(tmp_path / "env", with_pip=True)
    python = tmp_path / "env" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    probe = (
        "import importlib.util, openai_files; "
        "print(openai_files.__version__, "
        "[m for m in ('obstore', 'asyncpg', 'aiomysql') if importlib.util.find_spec(m)])"
    )
    result = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split(" ", 1) == ["0.1.0", "[]\n"]
    quickstart = subprocess.run(
        [str(python), str(ROOT / "examples" / "library.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert quickstart.returncode == 0, quickstart.stderr

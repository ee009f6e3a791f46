"""The documentation site reads from disk: every link between its pages names a file that the
build wrote (``page.html``, not a folder ``page/`` that a browser shows as a listing)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
HREF = re.compile(r'(?:href|src)="([^"]+)"')


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists() and shutil.which("mkdocs") is None:
        pytest.skip("needs mkdocs (the dev extra)")
    out = tmp_path_factory.mktemp("site")
    subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(out)],
        cwd=ROOT,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=True,
        capture_output=True,
        timeout=300,
    )
    return out


def local_links(page: Path) -> list[str]:
    links = []
    for target in HREF.findall(page.read_text()):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path:
            continue
        links.append(unquote(parts.path))
    return links


def test_every_link_between_pages_names_a_file_that_exists(site: Path) -> None:
    pages = sorted(p for p in site.rglob("*.html") if p.name != "404.html")  # served, not read
    assert len(pages) > 10
    broken = []
    for page in pages:
        for link in local_links(page):
            target = (page.parent / link).resolve()
            if link.endswith("/") or not target.is_file():
                broken.append(f"{page.relative_to(site)} -> {link}")
    assert broken == []
    assert "quickstart.html" in local_links(site / "index.html")

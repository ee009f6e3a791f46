"""The layers, checked on the source: imports point down only (``TYPE_CHECKING`` ones too).

```
cli/       the command line          may import the edge and the library
http/      the HTTP edge             may import the library; the only importer of Starlette
library    the top-level modules     import neither http/ nor cli/
storage/, metadata/  the backends    import neither the service modules nor http/ nor cli/
```

Every ``import`` and ``from ... import`` in ``src/openai_files`` is read with `ast`, wherever
it stands (in functions, under ``if TYPE_CHECKING:``). The package's ``__init__`` re-exports
the public names of every layer, and the shims of moved paths forward upwards through
`importlib` for one release: neither counts as a library module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import openai_files

ROOT = Path(openai_files.__file__).parent
PACKAGE = "openai_files"


def module_name(path: Path) -> str:
    parts = [PACKAGE, *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


SERVICE_MODULES = (
    "service",
    "uploads",
    "sweeper",
    "_core",
    "_checks",
    "_pending_upload",
    "_upload_parts",
    "_listing",
    "_downloads",
    "_deferred",
)
"""The service, the Uploads API, the sweeper and the private core below them."""

MODULES = {module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def imported(name: str) -> Iterator[str]:
    """Every module ``name`` imports: package modules resolved, external ones as written."""
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    here = name if is_package(name) else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module or ""
            yield source
            for alias in node.names:  # ``from . import x`` imports the module x
                if f"{source}.{alias.name}" in MODULES:
                    yield f"{source}.{alias.name}"


IMPORTS = {name: set(imported(name)) for name in MODULES}


def internal(name: str) -> set[str]:
    """The package's modules ``name`` imports (``a.b.c`` counts as ``a.b.c``, or its package)."""
    found = set()
    for target in IMPORTS[name]:
        while target and target not in MODULES and target.startswith(PACKAGE + "."):
            target = target.rpartition(".")[0]
        if target in MODULES and target != name:
            found.add(target)
    return found


def in_layer(name: str, *layers: str) -> bool:
    return any(
        name == f"{PACKAGE}.{layer}" or name.startswith(f"{PACKAGE}.{layer}.") for layer in layers
    )


def library_modules() -> list[str]:
    """Top-level modules below the edge: not the package ``__init__``, not a subpackage."""
    return [name for name in MODULES if name.count(".") == 1 and not is_package(name)]


def violations(importers: list[str], forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{name} imports {target}"
        for name in importers
        for target in internal(name)
        if in_layer(target, *forbidden)
    )


def test_the_walk_sees_the_package() -> None:
    assert f"{PACKAGE}.http.app" in MODULES
    assert f"{PACKAGE}.cli" in MODULES
    assert f"{PACKAGE}.service" in internal(f"{PACKAGE}.http.app")


def test_starlette_is_imported_only_by_the_http_edge() -> None:
    outside = sorted(
        name
        for name, targets in IMPORTS.items()
        if not in_layer(name, "http")
        and any(t == "starlette" or t.startswith("starlette.") for t in targets)
    )
    assert outside == []


def test_the_backends_import_neither_the_service_nor_the_edge_nor_the_command_line() -> None:
    backends = [name for name in MODULES if in_layer(name, "storage", "metadata")]
    assert backends
    forbidden = (*SERVICE_MODULES, "backends", "http", "cli", "testing")
    assert violations(backends, forbidden) == []
    assert not any(PACKAGE in internal(name) for name in backends)  # nor the package facade


def test_the_library_imports_neither_the_edge_nor_the_command_line() -> None:
    below_the_edge = [
        *library_modules(),
        *(name for name in MODULES if in_layer(name, "storage", "metadata", "testing")),
    ]
    assert violations(below_the_edge, ("http", "cli")) == []


def test_the_edge_does_not_import_the_command_line() -> None:
    edge = [name for name in MODULES if in_layer(name, "http")]
    assert violations(edge, ("cli",)) == []


def cycles() -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(name: str) -> None:
        index[name] = low[name] = len(index)
        stack.append(name)
        on_stack.add(name)
        for target in sorted(internal(name)):
            if target not in index:
                visit(target)
                low[name] = min(low[name], low[target])
            elif target in on_stack:
                low[name] = min(low[name], index[target])
        if low[name] == index[name]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == name:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for name in sorted(MODULES):
        if name not in index:
            visit(name)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert cycles() == []

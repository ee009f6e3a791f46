"""Import paths that moved: each old module is a shim that warns and forwards to the new one.

They keep working for one release after the move, then go. `MOVED` is the list; the shims
(`openai_files/app.py`, ...) are three lines that call `moved_module`.
"""

from __future__ import annotations

import importlib
import warnings
from types import ModuleType

__all__ = ["MOVED", "MOVED_NAMES", "moved_attribute", "moved_module"]

MOVED: dict[str, str] = {
    "openai_files.app": "openai_files.http.app",
    "openai_files.auth": "openai_files.http.auth",
    "openai_files.ratelimit": "openai_files.http.ratelimit",
    "openai_files.endpoints": "openai_files.http._files_api",
    "openai_files.multipart": "openai_files.http._multipart",
    "openai_files.responses": "openai_files.http._responses",
    "openai_files.openapi": "openai_files.http._openapi",
    "openai_files.urls": "openai_files.backends",
}
"""Old module path to new module path."""

MOVED_NAMES: dict[str, str] = {
    "openai_files.ErrorBody": "openai_files.http._responses",
    "openai_files.ErrorDetail": "openai_files.http._responses",
    "openai_files.FormLimits": "openai_files.http",
    "openai_files.models.ErrorBody": "openai_files.http._responses",
    "openai_files.models.ErrorDetail": "openai_files.http._responses",
}
"""Old ``module.name`` to the module that holds the name now: OpenAI's error envelope and the
form limits are details of the HTTP edge."""


def moved_module(old: str) -> ModuleType:
    """The module that ``old`` moved to, after a `DeprecationWarning` pointing at the importer."""
    new = MOVED[old]
    public, _, private = new.partition("._")
    where = f"{public} (the rest of it is private)" if private else new
    warnings.warn(
        f"{old} is deprecated and goes in the next release: import from {where}.",
        DeprecationWarning,
        stacklevel=3,  # the importer's line (importlib's own frames are skipped)
    )
    return importlib.import_module(new)


def moved_attribute(module: str, name: str) -> object:
    """``name`` of ``module``, which moved (after a `DeprecationWarning` pointing at the caller),
    or `AttributeError` as for any unknown name: a module's ``__getattr__`` returns this."""
    new = MOVED_NAMES.get(f"{module}.{name}")
    if new is None:
        raise AttributeError(f"module {module!r} has no attribute {name!r}")
    warnings.warn(
        f"{module}.{name} is deprecated and goes in the next release: it is part of the HTTP "
        f"edge now ({new}).",
        DeprecationWarning,
        stacklevel=3,
    )
    return getattr(importlib.import_module(new), name)

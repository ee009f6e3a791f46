"""`instrumented`: a storage or metadata store that reports how long each operation took and
whether it failed, to a callback (the HTTP edge's `FilesMetrics.backend_operation`).

The wrapper is made for the class of the backend it wraps: it has exactly the public methods
that backend has, so the capability checks (``isinstance(storage, PresignedURLs)`` and the
like, against the `typing.Protocol` capabilities) answer for it as for the backend itself.
Every coroutine method is timed; other attributes are the backend's own. A failure is a
`BackendUnavailable`: a missing key or file, a quota or a conflict is an answer, not a failure.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from .errors import BackendUnavailable

__all__ = ["Observe", "instrumented"]

Observe = Callable[[str, str, float, bool], None]
"""``observe(backend, operation, seconds, failed)``, called after each operation."""

B = TypeVar("B")

_classes: dict[type, type] = {}


def instrumented(backend: B, observe: Observe, *, kind: str) -> B:
    """``backend`` (a `Storage` or a `MetadataStore`), each of its coroutine methods reported
    to ``observe`` under the backend label ``kind`` (``"storage"``, ``"metadata"``)."""
    cls = type(backend)
    wrapper = _classes.get(cls)
    if wrapper is None:
        wrapper = _classes[cls] = _wrapper_class(cls)
    instance: B = wrapper(backend, observe, kind)
    return instance


def _wrapper_class(cls: type) -> type:
    namespace: dict[str, Any] = {
        "__init__": _init,
        "__getattr__": _getattr,
        "__repr__": lambda self: f"instrumented({self._inner!r})",
        "__slots__": ("_inner", "_observe", "_kind"),
    }
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attribute = inspect.getattr_static(cls, name)
        if isinstance(attribute, staticmethod | classmethod):
            namespace[name] = attribute
        elif inspect.iscoroutinefunction(attribute):
            namespace[name] = _timed(name, attribute)
        elif callable(attribute):
            namespace[name] = _forwarded(name)
        else:
            namespace[name] = property(functools.partial(_read, name=name))
    return type(f"Instrumented{cls.__name__}", (), namespace)


def _init(self: Any, inner: object, observe: Observe, kind: str) -> None:
    self._inner, self._observe, self._kind = inner, observe, kind


def _getattr(self: Any, name: str) -> Any:
    return getattr(self._inner, name)


def _read(self: Any, name: str) -> Any:
    return getattr(self._inner, name)


def _forwarded(name: str) -> Callable[..., Any]:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return getattr(self._inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


def _timed(name: str, function: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    @functools.wraps(function)
    async def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        failed = False
        try:
            return await getattr(self._inner, name)(*args, **kwargs)
        except BackendUnavailable:
            failed = True
            raise
        finally:
            self._observe(self._kind, name, time.perf_counter() - started, failed)

    return method

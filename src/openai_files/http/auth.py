"""Who is calling: authenticators turn a request into an owner, or raise `AuthenticationFailed`.

An authenticator is any callable ``(request) -> owner`` (sync or async). Files belong to owners;
one owner never sees another's files. Built-ins:

- `api_key_auth`: a static map of API keys to owners, read from ``Authorization: Bearer``.
- `scope_owner_auth`: the owner a host's middleware put into the ASGI scope.
- `open_auth`: everyone is one owner (a local server with no keys).
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request

from ..errors import AuthenticationFailed

__all__ = ["Authenticator", "api_key_auth", "open_auth", "scope_owner_auth"]

Authenticator = Callable[[Request], Awaitable[str] | str]

SCOPE_OWNER_KEY = "openai_files.owner"


def api_key_auth(keys: Mapping[str, str]) -> Authenticator:
    """Owners by API key (``{"sk-abc": "team-a"}``), sent as ``Authorization: Bearer <key>``.

    Every configured key is compared in constant time, so timing reveals neither a key nor
    which one matched. Keys are never logged or echoed. A request with more than one
    ``Authorization`` header is refused (401), whatever they hold: which one counts would
    otherwise depend on the proxies in between.

    `ValueError` when ``keys`` is empty, or holds a key that no request could present (empty,
    with whitespace around it, or with characters outside ISO-8859-1, which is how header
    values are read) or an owner the service refuses (empty, or over 255 characters).
    """
    entries = [(key.encode("latin-1"), owner) for key, owner in _checked(keys).items()]

    def authenticate(request: Request) -> str:
        sent = request.headers.getlist("authorization")
        if len(sent) > 1:
            raise AuthenticationFailed(
                f"The request has {len(sent)} Authorization headers: send exactly one, "
                "'Authorization: Bearer YOUR_KEY'."
            )
        scheme, _, token = (sent[0] if sent else "").partition(" ")
        presented = token.strip().encode("latin-1") if scheme.lower() == "bearer" else b""
        found: str | None = None
        for key, owner in entries:
            if hmac.compare_digest(presented, key) and found is None:
                found = owner
        if not presented:
            raise AuthenticationFailed(
                "You didn't provide an API key. Send it in the Authorization header as "
                "'Authorization: Bearer YOUR_KEY'."
            )
        if found is None:
            raise AuthenticationFailed("Incorrect API key provided.")
        return found

    return authenticate


def _checked(keys: Mapping[str, str]) -> Mapping[str, str]:
    if not keys:
        raise ValueError("api_key_auth needs at least one key")
    for number, (key, owner) in enumerate(keys.items(), 1):
        if not key.strip() or key != key.strip():
            raise ValueError(f"api_key_auth: key #{number} is empty or has whitespace around it")
        if any(ord(c) > 0xFF for c in key):
            raise ValueError(
                f"api_key_auth: key #{number} has characters that no HTTP header can carry"
            )
        if not isinstance(owner, str) or not 1 <= len(owner) <= 255:
            raise ValueError(
                f"api_key_auth: the owner of key #{number} must be 1 to 255 characters"
            )
    return keys


def scope_owner_auth(key: str = SCOPE_OWNER_KEY) -> Authenticator:
    """The owner that host middleware stored as ``scope[key]`` (a non-empty string).

    Use this when the host application authenticates requests itself.
    """

    def authenticate(request: Request) -> str:
        owner = request.scope.get(key)
        if not isinstance(owner, str) or not owner:
            raise AuthenticationFailed("The request is not authenticated.")
        return owner

    return authenticate


def open_auth(owner: str = "default") -> Authenticator:
    """Every caller is ``owner``: for a server on a trusted machine with no keys."""

    def authenticate(request: Request) -> str:
        return owner

    return authenticate

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
    which one matched. Keys are never logged or echoed.
    """
    entries = [(key.encode(), owner) for key, owner in keys.items()]
    if not entries:
        raise ValueError("api_key_auth needs at least one key")

    def authenticate(request: Request) -> str:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        presented = token.strip().encode() if scheme.lower() == "bearer" else b""
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

"""How `api_key_auth` reads the Authorization header: exactly one, the scheme in any case, the
key without the spaces around it."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from openai_files.errors import AuthenticationFailed
from openai_files.http.auth import api_key_auth

KEYS = {"sk-alpha-0123456789abcdef": "alpha", "sk-beta-fedcba9876543210": "beta"}
AUTHENTICATE = api_key_auth(KEYS)


def request_with(*authorizations: str) -> Request:
    headers = [(b"authorization", value.encode()) for value in authorizations]
    return Request({"type": "http", "method": "GET", "path": "/v1/files", "headers": headers})


@pytest.mark.parametrize(
    "authorizations",
    [
        ("Bearer sk-alpha-0123456789abcdef", "Bearer sk-alpha-0123456789abcdef"),
        ("Bearer sk-alpha-0123456789abcdef", "Bearer sk-beta-fedcba9876543210"),
        ("Bearer sk-alpha-0123456789abcdef", "Bearer sk-unknown"),
    ],
    ids=["same-key-twice", "two-keys", "a-key-and-junk"],
)
def test_two_authorization_headers_are_refused_whatever_they_hold(
    authorizations: tuple[str, ...],
) -> None:
    with pytest.raises(AuthenticationFailed, match="has 2 Authorization headers"):
        AUTHENTICATE(request_with(*authorizations))


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
def test_the_scheme_is_read_in_any_case(scheme: str) -> None:
    assert AUTHENTICATE(request_with(f"{scheme} sk-beta-fedcba9876543210")) == "beta"


@pytest.mark.parametrize("spaced", ["  sk-alpha-0123456789abcdef", "sk-alpha-0123456789abcdef  "])
def test_spaces_around_the_key_are_not_part_of_it(spaced: str) -> None:
    assert AUTHENTICATE(request_with(f"Bearer {spaced}")) == "alpha"

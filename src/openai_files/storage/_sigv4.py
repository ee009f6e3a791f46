"""AWS Signature Version 4 for the few S3 requests that obstore does not make (see
`openai_files.storage._s3_multipart`): the ``Authorization`` header of one request.

The algorithm is AWS's "Signature Version 4 signing process": a canonical form of the request
(method, path, query, the signed headers, the SHA-256 of the body), hashed into a string to
sign with the date and the credential scope, signed with a key derived from the secret key.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

__all__ = ["Credentials", "canonical_query", "sign", "uri_encode"]

_ALGORITHM = "AWS4-HMAC-SHA256"


@dataclass(frozen=True)
class Credentials:
    """Static AWS credentials (and the session token of temporary ones)."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str | None = field(default=None, repr=False)


def uri_encode(text: str, *, keep_slash: bool = False) -> str:
    """``text`` percent-encoded as SigV4 wants it: every byte but ``A-Z a-z 0-9 - _ . ~``
    (and ``/`` in a path)."""
    return quote(text, safe="/-_.~" if keep_slash else "-_.~")


def canonical_query(query: Mapping[str, str]) -> str:
    """``query`` as SigV4 signs it, which is also a valid query string to send."""
    pairs = sorted(query.items())
    return "&".join(f"{uri_encode(name)}={uri_encode(value)}" for name, value in pairs)


def sign(
    credentials: Credentials,
    *,
    region: str,
    method: str,
    host: str,
    path: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes = b"",
    now: datetime | None = None,
    unsigned_payload: bool = False,
) -> dict[str, str]:
    """The headers to send with a request to S3 in ``region``: ``headers`` plus ``Host``,
    ``x-amz-date``, ``x-amz-content-sha256``, the session token if any, and
    ``Authorization``, which signs all of them. ``path`` is already URI-encoded; ``query``
    is not. With ``unsigned_payload`` the body is not hashed (``UNSIGNED-PAYLOAD``, which S3
    accepts: for large bodies, whose SHA-256 would cost a pass over every byte)."""
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    payload_hash = "UNSIGNED-PAYLOAD" if unsigned_payload else hashlib.sha256(body).hexdigest()
    signed = {name.lower(): value.strip() for name, value in headers.items()}
    signed |= {"host": host, "x-amz-date": moment, "x-amz-content-sha256": payload_hash}
    if credentials.session_token is not None:
        signed["x-amz-security-token"] = credentials.session_token
    names = sorted(signed)
    canonical_request = "\n".join(
        [
            method,
            path,
            canonical_query(query),
            "".join(f"{name}:{signed[name]}\n" for name in names),
            ";".join(names),
            payload_hash,
        ]
    )
    scope = f"{moment[:8]}/{region}/s3/aws4_request"
    to_sign = "\n".join(
        [_ALGORITHM, moment, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
    )
    key = f"AWS4{credentials.secret_access_key}".encode()
    for part in (moment[:8], region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    signed["authorization"] = (
        f"{_ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return signed

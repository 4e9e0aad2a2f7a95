"""Per-source authentication of ingest requests: a bearer token or an HMAC-SHA256 signature of the body."""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass


@dataclass(frozen=True)
class SourceAuth:
    """How one source proves itself.

    Attributes:
        token: expected ``Authorization: Bearer <token>`` (``None``: no bearer check).
        hmac_secret: shared secret for ``HMAC-SHA256(secret, [timestamp + ":"] + body)`` (``None``: no HMAC).
        hmac_header: header carrying the hex digest, optionally prefixed ``sha256=``.
        hmac_timestamp_header: header carrying a timestamp that is signed too (Grafana's scheme), or ``None``.
    At least one of ``token`` / ``hmac_secret`` must be set; when both are set either one is accepted.
    """

    token: str | None = None
    hmac_secret: str | None = None
    hmac_header: str = "X-Tocsin-Signature"
    hmac_timestamp_header: str | None = None


class AuthFailed(Exception):
    """Authentication failed. ``code`` is 401 (nothing presented) or 403 (presented but wrong)."""

    def __init__(self, msg: str, code: int) -> None:
        super().__init__(msg)
        self.code = code


def check_auth(
    auth: SourceAuth, authorization: str | None, headers: dict[str, str | None], body: bytes
) -> None:
    """Raise :class:`AuthFailed` unless the request carries a valid token or signature.

    Args:
        authorization: the ``Authorization`` header value, or ``None``.
        headers: lower-cased header name -> value for the HMAC headers.
        body: the raw request body (bytes), exactly as received.
    """
    presented = False
    if auth.token is not None and authorization:
        presented = True
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), auth.token.encode()):
            return
    if auth.hmac_secret is not None:
        sig = headers.get(auth.hmac_header.lower())
        if sig:
            presented = True
            sig = sig.strip()
            if sig.lower().startswith("sha256="):
                sig = sig[7:]
            message = body
            if auth.hmac_timestamp_header:
                ts = headers.get(auth.hmac_timestamp_header.lower()) or ""
                message = ts.encode() + b":" + body
            expected = hmac.new(auth.hmac_secret.encode(), message, hashlib.sha256).hexdigest()
            if hmac.compare_digest(sig.lower().encode(), expected.encode()):
                return
    if presented:
        raise AuthFailed("invalid token or signature", 403)
    raise AuthFailed("missing bearer token or signature", 401)

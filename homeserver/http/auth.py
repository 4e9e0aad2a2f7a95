"""Who is making a request: access tokens (header or ``access_token`` query parameter) and appservice tokens.

Spec: Client-Server API, "Client Authentication" (401 ``M_MISSING_TOKEN`` / ``M_UNKNOWN_TOKEN``) and
Application Service API, "Identity assertion" (``user_id`` query parameter).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from homeserver.http.errors import MissingTokenError, UnknownTokenError


@dataclass(frozen=True, slots=True)
class Requester:
    """The authenticated caller.

    ``device_id`` is None for appservice requests without a device; ``access_token_id`` identifies the token (for
    logout and for txn-ID scoping); ``app_service`` is the registration object when the caller is an appservice.
    """

    user_id: str
    device_id: str | None
    access_token_id: int | None
    app_service: Any = None
    is_guest: bool = False


def get_access_token(request: Any) -> str | None:
    """The token from ``Authorization: Bearer ...`` or, for old clients, the ``access_token`` query parameter."""
    header = request.getHeader(b"Authorization")
    if header and (request.args or {}).get(b"access_token"):
        # Synapse refuses this too: two credentials, and no telling which one the client meant.
        raise MissingTokenError("Mixing Authorization headers and access_token query parameters.")
    if header:
        if isinstance(header, bytes):
            header = header.decode("latin-1")
        parts = header.split(None, 1)
        if len(parts) == 2 and parts[0].lower() == "bearer":
            return parts[1].strip()
        return None
    values = (request.args or {}).get(b"access_token")
    if values:
        try:
            return values[0].decode("ascii")
        except UnicodeDecodeError:
            return ""
    return None


class Auth:
    """Resolves requests to :class:`Requester`. ``hs`` gives ``account_store`` and (optionally) ``appservices``."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs

    async def get_user_by_req(self, request: Any, allow_deactivated: bool = False) -> Requester:
        """Authenticate ``request``; raises MissingTokenError or UnknownTokenError (401)."""
        token = get_access_token(request)
        if token is None:
            raise MissingTokenError()
        appservices = getattr(self.hs, "appservices", None)
        if appservices is not None:
            requester = await appservices.get_requester(request, token)
            if requester is not None:
                request.requester = requester
                return requester
        info = await self.hs.account_store.get_user_by_access_token(token)
        if info is None:
            raise UnknownTokenError()
        if info.deactivated and not allow_deactivated:
            raise UnknownTokenError("User account has been deactivated")
        requester = Requester(info.user_id, info.device_id, info.token_id)
        request.requester = requester
        device_handler = getattr(self.hs, "device_handler", None)
        if device_handler is not None and info.device_id is not None:
            user_agent = request.getHeader(b"User-Agent")
            device_handler.note_seen(requester, request.get_client_ip(),
                                     user_agent.decode("utf-8", "replace") if isinstance(user_agent, bytes)
                                     else user_agent)
        return requester

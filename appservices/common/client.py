"""A small Matrix client-server API client for appservices, over treq.

Every request carries the appservice's ``as_token`` as ``Authorization: Bearer``; ``user_id=`` is added when
acting as another user of the appservice's namespace (Application Service API, "Identity assertion").
Only the endpoints the bridges need are here; each method names its spec section.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import treq
from twisted.internet.defer import Deferred, inlineCallbacks


class MatrixRequestError(Exception):
    """The homeserver answered with a non-2xx status.

    Attributes:
        code: HTTP status (int).
        errcode: the Matrix ``errcode`` (e.g. ``M_NOT_FOUND``), or ``None`` if the body was not a Matrix error.
        body: decoded JSON body (dict) or raw text.
    """

    def __init__(self, code: int, errcode: str | None, body: Any) -> None:
        super().__init__(f"HTTP {code} {errcode}: {body}")
        self.code = code
        self.errcode = errcode
        self.body = body


def _q(value: str) -> str:
    return quote(value, safe="")


class MatrixClient:
    """Client-server calls made with an appservice's ``as_token``.

    Args:
        base_url: homeserver client-server base URL, e.g. ``http://127.0.0.1:8008``.
        as_token: the registration's ``as_token``.
        timeout_s: per-request timeout in seconds.
    """

    def __init__(self, base_url: str, as_token: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.as_token = as_token
        self.timeout_s = timeout_s

    @inlineCallbacks
    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        user_id: str | None = None,
        params: dict[str, str] | None = None,
    ) -> Any:
        """Call ``{base_url}{path}`` and return the decoded JSON body (a Deferred).

        Raises (in the Deferred):
            MatrixRequestError: non-2xx status.
        """
        query: dict[str, str] = dict(params or {})
        if user_id is not None:
            query["user_id"] = user_id
        kwargs: dict[str, Any] = {
            "headers": {"Authorization": [f"Bearer {self.as_token}"], "Content-Type": ["application/json"]},
            "timeout": self.timeout_s,
        }
        if query:
            kwargs["params"] = query
        if body is not None:
            kwargs["data"] = json.dumps(body).encode("utf-8")
        resp = yield treq.request(method, self.base_url + path, **kwargs)
        raw = yield resp.content()
        try:
            decoded: Any = json.loads(raw) if raw else {}
        except ValueError:
            decoded = raw.decode("utf-8", "replace")
        if not 200 <= resp.code < 300:
            errcode = decoded.get("errcode") if isinstance(decoded, dict) else None
            raise MatrixRequestError(resp.code, errcode, decoded)
        return decoded

    # -- rooms ------------------------------------------------------------------------------------------

    def send_event(
        self, room_id: str, event_type: str, content: dict[str, Any], txn_id: str, user_id: str | None = None
    ) -> Deferred:
        """``PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}``; fires with ``{"event_id": ...}``.

        ``txn_id`` makes the send idempotent: a retry with the same ID returns the same event.
        """
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/send/{_q(event_type)}/{_q(txn_id)}"
        return self.request("PUT", path, content, user_id=user_id)

    def get_state_event(
        self, room_id: str, event_type: str, state_key: str = "", user_id: str | None = None
    ) -> Deferred:
        """``GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}``; fires with the content dict."""
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return self.request("GET", path, user_id=user_id)

    def send_state_event(
        self, room_id: str, event_type: str, content: dict[str, Any], state_key: str = "", user_id: str | None = None
    ) -> Deferred:
        """``PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}``; fires with ``{"event_id": ...}``."""
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/state/{_q(event_type)}/{_q(state_key)}"
        return self.request("PUT", path, content, user_id=user_id)

    def create_room(self, body: dict[str, Any], user_id: str | None = None) -> Deferred:
        """``POST /_matrix/client/v3/createRoom``; fires with ``{"room_id": ...}``."""
        return self.request("POST", "/_matrix/client/v3/createRoom", body, user_id=user_id)

    def join(self, room_id_or_alias: str, user_id: str | None = None) -> Deferred:
        """``POST /_matrix/client/v3/join/{roomIdOrAlias}``; fires with ``{"room_id": ...}``."""
        return self.request("POST", f"/_matrix/client/v3/join/{_q(room_id_or_alias)}", {}, user_id=user_id)

    def invite(self, room_id: str, invitee: str, user_id: str | None = None) -> Deferred:
        """``POST /_matrix/client/v3/rooms/{roomId}/invite``."""
        path = f"/_matrix/client/v3/rooms/{_q(room_id)}/invite"
        return self.request("POST", path, {"user_id": invitee}, user_id=user_id)

    def resolve_alias(self, alias: str) -> Deferred:
        """``GET /_matrix/client/v3/directory/room/{roomAlias}``; fires with ``{"room_id", "servers"}``.

        Raises MatrixRequestError with ``code == 404`` when the alias does not exist.
        """
        return self.request("GET", f"/_matrix/client/v3/directory/room/{_q(alias)}")

    def register_appservice_user(self, localpart: str) -> Deferred:
        """``POST /_matrix/client/v3/register`` with ``type: m.login.application_service`` (AS API, "Registration").

        Fires with the registration response; ``M_USER_IN_USE`` (400) means the user exists already.
        """
        body = {"type": "m.login.application_service", "username": localpart, "inhibit_login": True}
        return self.request("POST", "/_matrix/client/v3/register", body)

    def whoami(self, user_id: str | None = None) -> Deferred:
        """``GET /_matrix/client/v3/account/whoami``; fires with ``{"user_id": ...}``."""
        return self.request("GET", "/_matrix/client/v3/account/whoami", user_id=user_id)

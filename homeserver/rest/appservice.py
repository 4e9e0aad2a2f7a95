"""``POST /_matrix/client/v1/appservice/{appserviceId}/ping`` (spec: Client-Server API, "Application service
ping", added in v1.7). The appservice asks the homeserver to call its ``/_matrix/app/v1/ping``."""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, ForbiddenError
from homeserver.http.server import CLIENT_V1_PREFIX, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /_matrix/client/v1/appservice/{appserviceId}/ping`` on ``router``, served by ``hs``'s handlers
    and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Application service ping".
    """
    async def ping(request: Any, appservice_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        appservices = getattr(hs, "appservices", None)
        if appservices is None or requester.app_service is None:
            raise ForbiddenError("Provided access token is not the appservice's as_token")
        body = parse_json_object(request, allow_empty_body=True)
        transaction_id = body.get("transaction_id")
        if transaction_id is not None and not isinstance(transaction_id, str):
            raise BadJsonError("transaction_id must be a string")
        duration_ms = await appservices.ping(requester, appservice_id, transaction_id)
        return 200, {"duration_ms": duration_ms}

    router.register("POST", CLIENT_V1_PREFIX + r"/appservice/(?P<appservice_id>[^/]+)/ping", ping,
                    "appservice_ping")

"""``PUT /sendToDevice/{eventType}/{txnId}`` (spec: Client-Server API, "Send-to-Device messaging")."""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``PUT /sendToDevice/{eventType}/{txnId}`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Send-to-Device messaging".
    """
    async def send_to_device(request: Any, event_type: str, txn_id: str) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request)
        await hs.to_device_handler.send(requester.user_id, requester.device_id, event_type, txn_id, body)
        return 200, {}

    router.register("PUT", CLIENT_PREFIX + rf"/sendToDevice/(?P<event_type>{PARAM})/(?P<txn_id>{PARAM})",
                    send_to_device, "send_to_device")

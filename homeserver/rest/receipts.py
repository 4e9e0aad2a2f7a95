"""``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}``.

Spec: Client-Server API, "Receipts". Rules live in :mod:`homeserver.handlers.receipts`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`` on ``router``, served by ``hs``'s handlers and
    stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Receipts".
    """
    async def post_receipt(request: Any, room_id: str, receipt_type: str, event_id: str) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        await hs.receipts_handler.send_receipt(requester.user_id, room_id, receipt_type, event_id,
                                               body.get("thread_id"))
        return 200, {}

    router.register(
        "POST",
        CLIENT_PREFIX + rf"/rooms/(?P<room_id>{PARAM})/receipt/(?P<receipt_type>{PARAM})/(?P<event_id>{PARAM})",
        post_receipt, "receipt")

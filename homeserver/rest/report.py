"""Reporting content: ``POST /rooms/{roomId}/report/{eventId}``, ``POST /rooms/{roomId}/report`` (v1.13),
``POST /users/{userId}/report`` (v1.14).

Spec: Client-Server API "Reporting content". Reports are stored for server admins (``content_reports``).
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, MissingParamError, NotFoundError
from homeserver.http.server import CLIENT_PREFIX, parse_json_object

MAX_REASON_LENGTH = 1000


def _reason(body: dict[str, Any], required: bool) -> str | None:
    reason = body.get("reason")
    if reason is None:
        if required:
            raise MissingParamError("'reason' is required")
        return None
    if not isinstance(reason, str):
        raise BadJsonError("'reason' must be a string")
    if len(reason) > MAX_REASON_LENGTH:
        raise BadJsonError(f"'reason' must be at most {MAX_REASON_LENGTH} characters")
    return reason


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /rooms/{roomId}/report[/{eventId}]`` and ``POST /users/{userId}/report`` on ``router``, served by
    ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Reporting content".
    """
    auth = hs.auth
    store = hs.report_store

    def now_ms() -> int:
        return int(hs.clock.seconds() * 1000)

    async def report_event(request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request)
        reason = _reason(body, required=False)
        score = body.get("score")
        # `score` was removed in v1.18; older clients still send it, so it is kept when it is a valid integer.
        if score is not None and (isinstance(score, bool) or not isinstance(score, int) or not -100 <= score <= 0):
            raise BadJsonError("'score' must be an integer between -100 and 0")
        # The reporter must be joined and able to see the event; anything else is one indistinguishable 404.
        if await hs.room_store.get_membership(room_id, requester.user_id) != "join":
            raise NotFoundError("The event was not found or you are not joined to the room.")
        event = await hs.event_store.get_event(event_id)
        if event is None or event.room_id != room_id or \
                not await hs.visibility_handler.filter_events_for_user(requester.user_id, [event]):
            raise NotFoundError("The event was not found or you are not joined to the room.")
        await store.add_report(requester.user_id, now_ms(), room_id=room_id, event_id=event_id,
                               target_user_id=event.sender, reason=reason, score=score)
        return 200, {}

    async def report_room(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request)
        reason = _reason(body, required=True)
        if not await hs.room_store.room_exists(room_id):
            raise NotFoundError("Room not found")
        await store.add_report(requester.user_id, now_ms(), room_id=room_id, reason=reason)
        return 200, {}

    async def report_user(request: Any, user_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request)
        reason = _reason(body, required=True)
        if await hs.account_store.get_user(user_id) is None:
            raise NotFoundError("User not found")
        await store.add_report(requester.user_id, now_ms(), target_user_id=user_id, reason=reason)
        return 200, {}

    rooms = CLIENT_PREFIX + r"/rooms/(?P<room_id>[^/]+)"
    router.register("POST", rooms + r"/report/(?P<event_id>[^/]+)", report_event, "report_event")
    router.register("POST", rooms + r"/report", report_room, "report_room")
    router.register("POST", CLIENT_PREFIX + r"/users/(?P<user_id>[^/]+)/report", report_user, "report_user")

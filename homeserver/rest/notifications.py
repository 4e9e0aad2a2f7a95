"""``GET /notifications``: the events that notified the user, newest first.

Spec: Client-Server API, "Listing Notifications". Rules live in :mod:`homeserver.handlers.push`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX, parse_integer, parse_string

JsonDict = dict[str, Any]
MAX_LIMIT = 100


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /notifications`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Listing Notifications".
    """
    async def get_notifications(request: Any) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request)
        # A "from" token is a next_token of an earlier page: a stream ordering (400 for anything else).
        before = parse_integer(request, "from", minimum=0)
        limit = parse_integer(request, "limit", default=20, minimum=1, maximum=MAX_LIMIT)
        only = parse_string(request, "only")
        return 200, await hs.push_handler.get_notifications(requester, before, limit, only)

    router.register("GET", CLIENT_PREFIX + "/notifications", get_notifications, "notifications")

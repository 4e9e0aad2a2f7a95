"""``GET /sync`` (spec: Client-Server API "Syncing")."""

from __future__ import annotations

from typing import Any

from homeserver.handlers.filtering import load_filter
from homeserver.handlers.sync import SyncConfig
from homeserver.http.errors import InvalidParamError
from homeserver.http.server import CLIENT_PREFIX, parse_boolean, parse_integer, parse_string
from homeserver.streams import StreamToken

MAX_TIMEOUT_MS = 5 * 60 * 1000


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /sync`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Syncing".
    """
    async def sync(request: Any) -> tuple[int, Any]:
        requester = await hs.auth.get_user_by_req(request)
        raw_since = parse_string(request, "since")
        since = StreamToken.parse(raw_since, "since") if raw_since else None
        timeout = parse_integer(request, "timeout", default=0, minimum=0) or 0
        full_state = parse_boolean(request, "full_state", default=False)
        set_presence = parse_string(request, "set_presence", default="online",
                                    allowed=("online", "offline", "unavailable"))
        raw_filter = parse_string(request, "filter")
        if raw_filter and not raw_filter.lstrip().startswith("{") and not raw_filter.isdigit():
            # Filter IDs are what POST /filter hands out (digits); anything else is neither an ID nor an object.
            raise InvalidParamError("filter must be a filter ID or a JSON object")
        flt = await load_filter(hs, requester.user_id, raw_filter)
        presence = getattr(hs, "presence_handler", None)
        if presence is not None:
            await presence.on_sync(requester.user_id, set_presence)
        config = SyncConfig(requester=requester, filter=flt, since=since, full_state=full_state)
        request.release_input()  # everything is read; a long-poll waits without the query and headers
        return 200, await hs.sync_handler.wait_for_sync(config, min(timeout, MAX_TIMEOUT_MS))

    router.register("GET", CLIENT_PREFIX + r"/sync", sync, "sync")

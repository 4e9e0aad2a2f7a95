"""Relations and threads: ``GET /v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`` and
``GET /v1/rooms/{roomId}/threads``.

Spec: Client-Server API "Forming relationships between events" -> "Relationships API", "Threading" -> "Fetching
all threads in a room". The rules live in :mod:`homeserver.handlers.relations`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_V1_PREFIX, parse_boolean, parse_integer, parse_string
from homeserver.streams import StreamToken

DEFAULT_RELATIONS_LIMIT = 50
MAX_RELATIONS_LIMIT = 1000
DEFAULT_THREADS_LIMIT = 20
MAX_THREADS_LIMIT = 100


def _token(request: Any, name: str) -> StreamToken | None:
    raw = parse_string(request, name)
    return StreamToken.parse(raw, name) if raw is not None else None


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`` and
    ``GET /_matrix/client/v1/rooms/{roomId}/threads`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Relationships" and "Threading".
    """
    auth = hs.auth
    handler = hs.relations_handler

    async def relations(request: Any, room_id: str, event_id: str, rel_type: str | None = None,
                        event_type: str | None = None) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        direction = parse_string(request, "dir", "b", allowed=("b", "f")) or "b"
        limit = parse_integer(request, "limit", DEFAULT_RELATIONS_LIMIT, minimum=1, maximum=MAX_RELATIONS_LIMIT)
        recurse = parse_boolean(request, "recurse") if parse_string(request, "recurse") is not None else None
        body = await handler.get_relations(
            requester, room_id, event_id, rel_type, event_type, _token(request, "from"), _token(request, "to"),
            direction, limit or DEFAULT_RELATIONS_LIMIT, recurse)
        return 200, body

    async def threads(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        include = parse_string(request, "include", "all", allowed=("all", "participated")) or "all"
        limit = parse_integer(request, "limit", DEFAULT_THREADS_LIMIT, minimum=1, maximum=MAX_THREADS_LIMIT)
        return 200, await handler.get_threads(requester, room_id, include, _token(request, "from"),
                                              limit or DEFAULT_THREADS_LIMIT)

    base = CLIENT_V1_PREFIX + r"/rooms/(?P<room_id>[^/]+)"
    rel = base + r"/relations/(?P<event_id>[^/]+)"
    router.register("GET", rel, relations, "relations")
    router.register("GET", rel + r"/(?P<rel_type>[^/]+)", relations, "relations")
    router.register("GET", rel + r"/(?P<rel_type>[^/]+)/(?P<event_type>[^/]+)", relations, "relations")
    router.register("GET", base + r"/threads", threads, "threads")

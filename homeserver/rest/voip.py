"""``GET /voip/turnServer`` (spec: Client-Server API "Voice over IP").

This server has no TURN server to offer; Element and other clients call this at start-up and cope with an empty
answer (calls then use direct and STUN connectivity), which is also what Synapse returns without ``turn_uris``.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.server import CLIENT_PREFIX


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /voip/turnServer`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Voice over IP".
    """
    async def turn_server(request: Any) -> tuple[int, Any]:
        await hs.auth.get_user_by_req(request)
        return 200, {}

    router.register("GET", CLIENT_PREFIX + r"/voip/turnServer", turn_server, "turnServer")

"""Discovery: ``/versions``, ``/.well-known/matrix/client``, ``/capabilities``, ``/_matrix/key/v2/server``.

Spec: Client-Server API "Server Discovery", "Capabilities negotiation"; Server-Server API "Publishing Keys".
"""

from __future__ import annotations

import time
from typing import Any

from signedjson.key import encode_verify_key_base64, get_verify_key
from signedjson.sign import sign_json

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.server import CLIENT_PREFIX

SUPPORTED_VERSIONS = ["r0.6.1"] + [f"v1.{n}" for n in range(1, 12)]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /_matrix/client/versions``, ``/.well-known/matrix/client``, ``/capabilities`` and
    ``/_matrix/key/v2/server`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Server Discovery", "Capabilities negotiation"; Server-Server API "Publishing Keys".
    """
    async def versions(request: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"versions": SUPPORTED_VERSIONS, "unstable_features": {}}

    async def well_known(request: Any) -> tuple[int, dict[str, Any]]:
        return 200, {"m.homeserver": {"base_url": hs.config.client_base_url}}

    async def capabilities(request: Any) -> tuple[int, dict[str, Any]]:
        await hs.auth.get_user_by_req(request)
        return 200, {
            "capabilities": {
                "m.room_versions": {
                    "default": hs.config.default_room_version,
                    "available": {v: "stable" for v in KNOWN_ROOM_VERSIONS},
                },
                "m.change_password": {"enabled": True},
                "m.set_displayname": {"enabled": True},
                "m.set_avatar_url": {"enabled": True},
                "m.3pid_changes": {"enabled": False},
                "m.get_login_token": {"enabled": False},
                "m.profile_fields": hs.profile_handler.capability(),
            }
        }

    async def server_keys(request: Any) -> tuple[int, dict[str, Any]]:
        key = hs.signing_key
        key_id = f"{key.alg}:{key.version}"
        body = {
            "server_name": hs.hostname,
            "valid_until_ts": int(time.time() * 1000) + 24 * 3600 * 1000,
            "verify_keys": {key_id: {"key": encode_verify_key_base64(get_verify_key(key))}},
            "old_verify_keys": {},
        }
        return 200, sign_json(body, hs.hostname, key)

    router.register("GET", r"/_matrix/client/versions", versions, "versions")
    router.register("GET", r"/\.well-known/matrix/client", well_known, "well_known")
    router.register("GET", CLIENT_PREFIX + r"/capabilities", capabilities, "capabilities")
    router.register("GET", r"/_matrix/key/v2/server(?:/[^/]*)?", server_keys, "server_keys")

"""Server-side key backup endpoints: ``/room_keys/version[/{version}]`` and ``/room_keys/keys[/{roomId}[/{sessionId}]]``.

Spec: Client-Server API, "Server-side key backups". The rules live in :mod:`homeserver.handlers.key_backup`.
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import MissingParamError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object, parse_string


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST|GET /room_keys/version``, ``GET|PUT|DELETE /room_keys/version/{version}`` and
    ``PUT|GET|DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Server-side key backups".
    """
    handler = hs.key_backup_handler

    async def create_version(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.create_version(requester.user_id, parse_json_object(request))

    async def current_version(request: Any) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.get_version(requester.user_id, None)

    async def get_version(request: Any, version: str) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.get_version(requester.user_id, version)

    async def update_version(request: Any, version: str) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.update_version(requester.user_id, version, parse_json_object(request))

    async def delete_version(request: Any, version: str) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.delete_version(requester.user_id, version)

    def version_param(request: Any) -> str:
        version = parse_string(request, "version")
        if version is None:
            raise MissingParamError("Missing required query parameter: version")
        return version

    async def put_keys(request: Any, room_id: str | None = None, session_id: str | None = None
                       ) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        version = version_param(request)
        body = parse_json_object(request)
        return 200, await handler.put_keys(requester.user_id, version, room_id, session_id, body)

    async def get_keys(request: Any, room_id: str | None = None, session_id: str | None = None
                       ) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.get_keys(requester.user_id, version_param(request), room_id, session_id)

    async def delete_keys(request: Any, room_id: str | None = None, session_id: str | None = None
                          ) -> tuple[int, dict[str, Any]]:
        requester = await hs.auth.get_user_by_req(request)
        return 200, await handler.delete_keys(requester.user_id, version_param(request), room_id, session_id)

    router.register("POST", CLIENT_PREFIX + r"/room_keys/version", create_version, "room_keys_version_create")
    router.register("GET", CLIENT_PREFIX + r"/room_keys/version", current_version, "room_keys_version")
    v = CLIENT_PREFIX + rf"/room_keys/version/(?P<version>{PARAM})"
    router.register("GET", v, get_version, "room_keys_version")
    router.register("PUT", v, update_version, "room_keys_version_update")
    router.register("DELETE", v, delete_version, "room_keys_version_delete")
    for pattern in (CLIENT_PREFIX + r"/room_keys/keys",
                    CLIENT_PREFIX + rf"/room_keys/keys/(?P<room_id>{PARAM})",
                    CLIENT_PREFIX + rf"/room_keys/keys/(?P<room_id>{PARAM})/(?P<session_id>{PARAM})"):
        router.register("PUT", pattern, put_keys, "room_keys_keys")
        router.register("GET", pattern, get_keys, "room_keys_keys")
        router.register("DELETE", pattern, delete_keys, "room_keys_keys")

"""``GET /devices``, ``GET/PUT/DELETE /devices/{deviceId}``, ``POST /delete_devices``.

Spec: Client-Server API, "Device Management". Deleting needs User-Interactive Auth with ``m.login.password``;
a wrong password is a 401 with ``errcode: M_FORBIDDEN`` and the UIA body, and the device stays.
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import LOGIN_TYPE_PASSWORD, authenticate
from homeserver.http.errors import BadJsonError, MissingParamError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]
MAX_DELETE_DEVICES = 1000


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /devices``, ``GET|PUT|DELETE /devices/{deviceId}`` and ``POST /delete_devices`` on ``router``,
    served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Device Management".
    """
    async def list_devices(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        return 200, {"devices": await hs.device_handler.get_devices(requester.user_id)}

    async def get_device(request: Any, device_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        return 200, await hs.device_handler.get_device(requester.user_id, device_id)

    async def put_device(request: Any, device_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body = parse_json_object(request)
        display_name = body.get("display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise BadJsonError("display_name must be a string")
        await hs.device_handler.update_device(requester.user_id, device_id, display_name)
        return 200, {}

    async def delete_device(request: Any, device_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body = parse_json_object(request, allow_empty_body=True)
        # 404 before asking for a password: there is nothing to authorise.
        await hs.device_handler.get_device(requester.user_id, device_id)
        await hs.auth_handler.check_ui_auth(request, body, [[LOGIN_TYPE_PASSWORD]],
                                            requester_user_id=requester.user_id)
        await hs.device_handler.delete_devices(requester.user_id, [device_id])
        return 200, {}

    async def delete_devices(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body = parse_json_object(request)
        if "devices" not in body:
            raise MissingParamError("Missing params: devices")
        devices = body["devices"]
        if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
            raise BadJsonError("devices must be a list of strings")
        if len(devices) > MAX_DELETE_DEVICES:
            raise BadJsonError(f"At most {MAX_DELETE_DEVICES} devices can be deleted at once")
        await hs.auth_handler.check_ui_auth(request, body, [[LOGIN_TYPE_PASSWORD]],
                                            requester_user_id=requester.user_id)
        await hs.device_handler.delete_devices(requester.user_id, devices)
        return 200, {}

    router.register("GET", CLIENT_PREFIX + r"/devices", list_devices, "devices")
    router.register("GET", CLIENT_PREFIX + rf"/devices/(?P<device_id>{PARAM})", get_device, "device")
    router.register("PUT", CLIENT_PREFIX + rf"/devices/(?P<device_id>{PARAM})", put_device, "device")
    router.register("DELETE", CLIENT_PREFIX + rf"/devices/(?P<device_id>{PARAM})", delete_device, "device")
    router.register("POST", CLIENT_PREFIX + r"/delete_devices", delete_devices, "delete_devices")

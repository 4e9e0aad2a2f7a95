"""``GET /account/whoami``, ``POST /account/password``, ``POST /account/deactivate``.

Spec: Client-Server API, "Current account information" (whoami), "Password management" and "Account
deactivation". Password change and deactivation need User-Interactive Auth with ``m.login.password``.
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.handlers.auth import LOGIN_TYPE_PASSWORD, MAX_PASSWORD_LENGTH, authenticate
from homeserver.http.auth import Requester
from homeserver.http.errors import BadJsonError, Codes, MatrixError, MissingParamError
from homeserver.http.server import CLIENT_PREFIX, parse_json_object

logger = logging.getLogger(__name__)
JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET /account/whoami``, ``GET /account/3pid``, ``POST /account/password`` and
    ``POST /account/deactivate`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Current account information", "Password management", "Account deactivation".
    """
    async def whoami(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body: JsonDict = {"user_id": requester.user_id, "is_guest": bool(requester.is_guest)}
        if requester.device_id is not None:
            body["device_id"] = requester.device_id
        return 200, body

    async def change_password(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body = parse_json_object(request)
        new_password = body.get("new_password")
        if new_password is not None and (not isinstance(new_password, str) or len(new_password) > MAX_PASSWORD_LENGTH):
            raise MatrixError(400, "new_password must be a string of at most 512 characters", Codes.BAD_JSON)
        logout_devices = body.get("logout_devices", True)
        if not isinstance(logout_devices, bool):
            raise BadJsonError("logout_devices must be true or false")
        await hs.auth_handler.check_ui_auth(request, body, [[LOGIN_TYPE_PASSWORD]],
                                            requester_user_id=requester.user_id)
        if not isinstance(new_password, str) or not new_password:
            raise MissingParamError("Missing params: new_password")
        password_hash = await hs.auth_handler.hash_password(new_password)
        await hs.account_store.set_password_hash(requester.user_id, password_hash)
        if logout_devices:
            await hs.device_handler.delete_all_devices(requester.user_id, except_device_id=requester.device_id)
            await hs.account_store.delete_access_tokens_for_user(requester.user_id,
                                                                 except_token_id=requester.access_token_id)
        return 200, {}

    async def deactivate(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        body = parse_json_object(request)
        erase = body.get("erase", False)
        if not isinstance(erase, bool):
            raise BadJsonError("erase must be true or false")
        await hs.auth_handler.check_ui_auth(request, body, [[LOGIN_TYPE_PASSWORD]],
                                            requester_user_id=requester.user_id)
        await deactivate_account(hs, requester.user_id)
        return 200, {"id_server_unbind_result": "no-support"}

    async def threepids(request: Any) -> tuple[int, JsonDict]:
        # Spec "Adding Account Administrative Contact Information": this server binds no e-mail addresses or
        # phone numbers to accounts (the org chart keeps them as profile fields), so the list is always empty.
        await hs.auth.get_user_by_req(request)
        return 200, {"threepids": []}

    router.register("GET", CLIENT_PREFIX + r"/account/whoami", whoami, "whoami")
    router.register("GET", CLIENT_PREFIX + r"/account/3pid", threepids, "account_3pid")
    router.register("POST", CLIENT_PREFIX + r"/account/password", change_password, "account_password")
    router.register("POST", CLIENT_PREFIX + r"/account/deactivate", deactivate, "account_deactivate")


async def deactivate_account(hs: Any, user_id: str) -> None:
    """Deactivate ``user_id`` for good: every device and token goes, the password is cleared, the user leaves
    every joined room (when the room handlers exist). The user ID stays taken."""
    await hs.device_handler.delete_all_devices(user_id)
    await hs.account_store.delete_access_tokens_for_user(user_id)
    await hs.account_store.set_deactivated(user_id)
    room_store = getattr(hs, "room_store", None)
    member_handler = getattr(hs, "room_member_handler", None)
    if room_store is None or member_handler is None:
        return
    requester = Requester(user_id, None, None)
    for room_id in sorted(await room_store.get_rooms_for_user(user_id)):
        try:
            await member_handler.update_membership(requester, user_id, room_id, "leave")
        except Exception:  # noqa: BLE001 - one room's failure must not keep the user in the others
            logger.exception("deactivation of %s: could not leave %s", user_id, room_id)

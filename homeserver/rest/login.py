"""``GET/POST /login``, ``POST /logout``, ``POST /logout/all``.

Spec: Client-Server API, "Login" (``m.login.password``, identifier types, ``device_id`` reuse,
``initial_device_display_name``) and "Logout". Logging out deletes the device along with its token, as the spec
says ("The device associated with the access token is also deleted").
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import LOGIN_TYPE_APPSERVICE, LOGIN_TYPE_PASSWORD, authenticate
from homeserver.http.errors import (
    BadJsonError,
    Codes,
    ForbiddenError,
    MatrixError,
    MissingParamError,
    UnknownTokenError,
)
from homeserver.http.ratelimit import Ratelimiter
from homeserver.http.server import CLIENT_PREFIX, parse_json_object

JsonDict = dict[str, Any]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET|POST /login``, ``POST /logout``, ``POST /logout/all`` and ``POST /refresh`` on ``router``, served
    by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Login", "Logout" and "Refreshing access tokens".
    """
    rc = hs.config.rc_login
    from homeserver.config import RateLimit

    default = RateLimit(0.17, 3)
    by_address = Ratelimiter(hs.clock, rc.get("address", default))
    by_account = Ratelimiter(hs.clock, rc.get("account", default))
    failed_attempts = Ratelimiter(hs.clock, rc.get("failed_attempts", default))

    async def get_flows(request: Any) -> tuple[int, JsonDict]:
        flows: list[JsonDict] = [{"type": LOGIN_TYPE_PASSWORD}]
        if getattr(getattr(hs, "appservices", None), "check_login", None) is not None:
            flows.append({"type": LOGIN_TYPE_APPSERVICE})
        return 200, {"flows": flows}

    async def login(request: Any) -> tuple[int, JsonDict]:
        body = parse_json_object(request)
        login_type = body.get("type")
        if not isinstance(login_type, str):
            raise BadJsonError("type must be a string")
        device_id = body.get("device_id")
        if device_id is not None and (not isinstance(device_id, str) or not device_id or len(device_id) > 512):
            raise BadJsonError("device_id must be a non-empty string")
        display_name = body.get("initial_device_display_name")
        if display_name is not None and not isinstance(display_name, str):
            raise BadJsonError("initial_device_display_name must be a string")
        if login_type == LOGIN_TYPE_APPSERVICE:
            check = getattr(getattr(hs, "appservices", None), "check_login", None)
            if check is None:
                raise MatrixError(400, "Unknown login type", Codes.UNKNOWN)
            # Hook for the appservice component: authenticate the as_token, return the namespaced user ID.
            user_id = await check(request, body)
        elif login_type == LOGIN_TYPE_PASSWORD:
            by_address.check(request.get_client_ip())
            user_id = await _password_login(hs, body, by_account, failed_attempts)
        else:
            raise MatrixError(400, f"Unknown login type {login_type}", Codes.UNKNOWN)
        device_id, token = await hs.registration_handler.register_device(user_id, device_id, display_name)
        return 200, {"user_id": user_id, "access_token": token, "device_id": device_id,
                     "home_server": hs.hostname}

    async def logout(request: Any) -> tuple[int, JsonDict]:
        requester = await hs.auth.get_user_by_req(request, allow_deactivated=True)
        if requester.device_id is not None and requester.app_service is None:
            await hs.device_handler.delete_devices(requester.user_id, [requester.device_id])
        if requester.access_token_id is not None:
            await hs.account_store.delete_access_token_by_id(requester.access_token_id)
        return 200, {}

    async def logout_all(request: Any) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request, allow_deactivated=True)
        await hs.device_handler.delete_all_devices(requester.user_id)
        await hs.account_store.delete_access_tokens_for_user(requester.user_id)
        return 200, {}

    async def refresh(request: Any) -> tuple[int, JsonDict]:
        # Spec "Refreshing access tokens": this server never issues refresh tokens (login and register ignore
        # refresh_token: true), so no refresh token can be valid.
        body = parse_json_object(request)
        if "refresh_token" not in body:
            raise MissingParamError("Missing refresh_token")
        if not isinstance(body["refresh_token"], str):
            raise BadJsonError("refresh_token must be a string")
        raise UnknownTokenError("Refresh tokens are not issued by this server")

    router.register("GET", CLIENT_PREFIX + r"/login", get_flows, "login_flows")
    router.register("POST", CLIENT_PREFIX + r"/login", login, "login")
    router.register("POST", CLIENT_PREFIX + r"/logout", logout, "logout")
    router.register("POST", CLIENT_PREFIX + r"/logout/all", logout_all, "logout_all")
    router.register("POST", CLIENT_PREFIX + r"/refresh", refresh, "refresh")


async def _password_login(hs: Any, body: JsonDict, by_account: Ratelimiter, failed_attempts: Ratelimiter) -> str:
    """The user a ``m.login.password`` body proves; 403 ``M_FORBIDDEN`` for a wrong password or unknown user
    (indistinguishable on purpose), 429 when the account's (failed) attempts are over their limits."""
    password = body.get("password")
    if not isinstance(password, str):
        raise BadJsonError("password must be a string")
    user_id = await hs.auth_handler.resolve_login_user(body)
    key = user_id or "<unknown>"
    by_account.check(key)
    failed_attempts.check(key, update=False)
    if user_id is None or not await hs.auth_handler.validate_password(user_id, password):
        failed_attempts.check(key)
        raise ForbiddenError("Invalid username or password")
    return user_id

"""``POST /register`` (User-Interactive Auth with ``m.login.dummy``) and ``GET /register/available``.

Spec: Client-Server API, "Account registration and management" -> ``/register``, ``/register/available``.
matrix-nio sends ``auth: {type: m.login.dummy}`` without a session in a single request; Element first gets the
401 with flows and a session, then completes the dummy stage. Both work.
"""

from __future__ import annotations

from typing import Any

from homeserver.handlers.auth import LOGIN_TYPE_APPSERVICE, LOGIN_TYPE_DUMMY, MAX_PASSWORD_LENGTH
from homeserver.http.errors import (
    BadJsonError,
    Codes,
    ForbiddenError,
    MatrixError,
    MissingParamError,
)
from homeserver.http.ratelimit import Ratelimiter
from homeserver.http.server import CLIENT_PREFIX, parse_json_object, parse_string

JsonDict = dict[str, Any]


def _optional_str(body: JsonDict, key: str, max_len: int | None = None) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJsonError(f"{key} must be a string")
    if max_len is not None and len(value) > max_len:
        raise MatrixError(400, f"{key} is longer than {max_len} characters", Codes.INVALID_PARAM)
    return value


def _optional_bool(body: JsonDict, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadJsonError(f"{key} must be true or false")
    return value


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /register`` and ``GET /register/available`` on ``router``, served by ``hs``'s handlers and
    stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Account registration and management".
    """
    ratelimiter = Ratelimiter(hs.clock, hs.config.rc_registration)

    async def register(request: Any) -> tuple[int, JsonDict]:
        kind = parse_string(request, "kind", "user")
        if kind == "guest":
            raise ForbiddenError("Guest access is disabled", Codes.GUEST_ACCESS_FORBIDDEN)
        if kind != "user":
            raise MatrixError(400, f"Invalid kind {kind!r}", Codes.INVALID_PARAM)
        body = parse_json_object(request)
        auth = body.get("auth")
        # Appservices put the type at the top level (spec: Application Service API, "Server admin style
        # permissions"); some clients nest it in ``auth``.
        if body.get("type") == LOGIN_TYPE_APPSERVICE or (
                isinstance(auth, dict) and auth.get("type") == LOGIN_TYPE_APPSERVICE):
            return await _register_appservice_user(hs, request, body)
        if not hs.config.enable_registration:
            raise ForbiddenError("Registration has been disabled")
        client_ip = request.get_client_ip()
        # Look without taking a token: only a completed registration counts against the limit.
        ratelimiter.check(client_ip, update=False)

        username = _optional_str(body, "username")
        password = _optional_str(body, "password", MAX_PASSWORD_LENGTH)
        if password == "":
            # An account anyone can log into: refused before the auth flow, so nothing of it is kept.
            raise MatrixError(400, "The password must not be empty", Codes.WEAK_PASSWORD)
        device_id = _optional_str(body, "device_id", 512)
        display_name = _optional_str(body, "initial_device_display_name", 512)
        inhibit_login = _optional_bool(body, "inhibit_login")
        _optional_bool(body, "refresh_token")
        if username is not None:
            username = username.lower()
            await hs.registration_handler.check_username(username)
            _check_not_exclusive(hs, username)

        result = await hs.auth_handler.check_ui_auth(request, body, [[LOGIN_TYPE_DUMMY]])

        # Fields sent only with an earlier request of the same session still count (except the password).
        merged = result.clientdict
        if username is None and isinstance(merged.get("username"), str):
            username = merged["username"].lower()
            _check_not_exclusive(hs, username)
        if device_id is None and isinstance(merged.get("device_id"), str):
            device_id = merged["device_id"]
        if display_name is None and isinstance(merged.get("initial_device_display_name"), str):
            display_name = merged["initial_device_display_name"]
        if "inhibit_login" not in body and isinstance(merged.get("inhibit_login"), bool):
            inhibit_login = merged["inhibit_login"]
        if password is None:
            raise MissingParamError("Missing params: password")

        ratelimiter.check(client_ip)
        user_id = await hs.registration_handler.register_user(username, password)
        return 200, await _login_reply(hs, user_id, device_id, display_name, inhibit_login)

    async def available(request: Any) -> tuple[int, JsonDict]:
        ratelimiter.check(request.get_client_ip(), update=False)
        username = parse_string(request, "username", required=True)
        assert username is not None
        await hs.registration_handler.check_username(username)
        _check_not_exclusive(hs, username)
        return 200, {"available": True}

    router.register("POST", CLIENT_PREFIX + r"/register", register, "register")
    router.register("GET", CLIENT_PREFIX + r"/register/available", available, "register_available")


async def _login_reply(hs: Any, user_id: str, device_id: str | None, display_name: str | None,
                       inhibit_login: bool) -> JsonDict:
    if inhibit_login:
        return {"user_id": user_id, "home_server": hs.hostname}
    device_id, token = await hs.registration_handler.register_device(user_id, device_id, display_name)
    return {"user_id": user_id, "access_token": token, "device_id": device_id, "home_server": hs.hostname}


def _check_not_exclusive(hs: Any, localpart: str) -> None:
    """400 ``M_EXCLUSIVE`` if an application service claims the user ID exclusively (when appservices exist)."""
    is_exclusive = getattr(getattr(hs, "appservices", None), "is_exclusive_user", None)
    if is_exclusive is not None and is_exclusive(f"@{localpart}:{hs.hostname}"):
        raise MatrixError(400, "This user ID is reserved by an application service.", Codes.EXCLUSIVE)


async def _register_appservice_user(hs: Any, request: Any, body: JsonDict) -> tuple[int, JsonDict]:
    """``auth: {type: m.login.application_service}`` with the appservice's ``as_token`` (spec: Application
    Service API, "Server admin style permissions" / registration).

    Hook for the appservice component: ``await hs.appservices.check_registration(request, localpart) ->
    appservice_id`` must authenticate the as_token and check the user is in the service's namespace (raising
    401/403 ``M_EXCLUSIVE``/...). Works even when open registration is disabled.
    """
    check = getattr(getattr(hs, "appservices", None), "check_registration", None)
    if check is None:
        raise MatrixError(400, "Application service registration is not available", Codes.UNKNOWN)
    username = _optional_str(body, "username")
    if username is None:
        raise MissingParamError("Missing params: username")
    username = username.lower()
    # Checked before the account exists: a refused request must create nothing.
    device_id = _optional_str(body, "device_id", 512)
    display_name = _optional_str(body, "initial_device_display_name", 512)
    inhibit_login = _optional_bool(body, "inhibit_login")
    appservice_id = await check(request, username)
    user_id = await hs.registration_handler.register_user(username, None, appservice_id=appservice_id)
    return 200, await _login_reply(hs, user_id, device_id, display_name, inhibit_login)

"""Admin endpoints: Synapse-compatible shared-secret registration and the spec's ``whois``.

- ``GET/POST /_synapse/admin/v1/register``: the protocol of Synapse's ``register_new_matrix_user`` (so that tool,
  our ``scripts/register_new_user`` and existing automation work unchanged). GET gives a single-use nonce valid for
  60 s; POST carries ``nonce``, ``username``, ``password``, ``admin`` and ``mac``, the hex HMAC-SHA1 keyed by
  ``registration_shared_secret`` over ``nonce \\0 username \\0 password \\0 ("admin" | "notadmin")`` (and
  ``\\0 user_type`` when given).
- ``GET /_matrix/client/v3/admin/whois/{userId}`` (spec: Client-Server API, "Server Administration"): the user's
  devices and last-seen connections, for server admins and for the user themself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from homeserver.handlers.auth import MAX_PASSWORD_LENGTH, authenticate
from homeserver.http.errors import BadJsonError, Codes, ForbiddenError, MatrixError, MissingParamError
from homeserver.http.server import CLIENT_PREFIX, PARAM, parse_json_object

JsonDict = dict[str, Any]
NONCE_LIFETIME_S = 60.0
MAX_OUTSTANDING_NONCES = 10_000


def compute_registration_mac(secret: str, nonce: str, username: str, password: str, admin: bool,
                             user_type: str | None = None) -> str:
    """Hex HMAC-SHA1 of the shared-secret registration request (Synapse's algorithm)."""
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha1)
    mac.update(nonce.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(username.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(password.encode("utf-8"))
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode("utf-8"))
    return mac.hexdigest()


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``GET|POST /_synapse/admin/v1/register`` (shared-secret registration with nonces) and
    ``GET /admin/whois/{userId}`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Server Administration" (whois); Synapse's shared-secret registration protocol.
    """
    nonces: dict[str, float] = {}

    def _secret() -> str:
        secret = hs.config.registration_shared_secret
        if not secret:
            raise MatrixError(400, "Shared secret registration is not enabled", Codes.FORBIDDEN)
        return secret

    def _prune(now: float) -> None:
        for nonce, created in list(nonces.items()):
            if now - created > NONCE_LIFETIME_S:
                del nonces[nonce]

    async def get_nonce(request: Any) -> tuple[int, JsonDict]:
        _secret()
        now = hs.clock.seconds()
        _prune(now)
        if len(nonces) >= MAX_OUTSTANDING_NONCES:
            raise MatrixError(429, "Too many outstanding registration nonces", Codes.LIMIT_EXCEEDED,
                              retry_after_ms=int(NONCE_LIFETIME_S * 1000))
        nonce = secrets.token_hex(32)
        nonces[nonce] = now
        return 200, {"nonce": nonce}

    async def shared_secret_register(request: Any) -> tuple[int, JsonDict]:
        secret = _secret()
        body = parse_json_object(request)
        for key in ("nonce", "username", "password", "mac"):
            if key not in body:
                raise MissingParamError(f"Missing params: {key}")
            if not isinstance(body[key], str) or "\x00" in body[key]:
                raise BadJsonError(f"{key} must be a string without NUL characters")
        admin = body.get("admin", False)
        if not isinstance(admin, bool):
            raise BadJsonError("admin must be true or false")
        user_type = body.get("user_type")
        if user_type is not None and (not isinstance(user_type, str) or "\x00" in user_type):
            raise BadJsonError("user_type must be a string")
        displayname = body.get("displayname")
        if displayname is not None and not isinstance(displayname, str):
            raise BadJsonError("displayname must be a string")
        if len(body["password"]) > MAX_PASSWORD_LENGTH:
            raise MatrixError(400, "Password too long", Codes.INVALID_PARAM)
        if not body["password"]:
            raise MatrixError(400, "The password must not be empty", Codes.WEAK_PASSWORD)
        created = nonces.pop(body["nonce"], None)
        if created is None or hs.clock.seconds() - created > NONCE_LIFETIME_S:
            raise MatrixError(400, "unrecognised nonce", Codes.UNKNOWN)
        want = compute_registration_mac(secret, body["nonce"], body["username"], body["password"], admin,
                                        user_type)
        if not hmac.compare_digest(want, body["mac"].lower()):
            raise ForbiddenError("HMAC incorrect")
        localpart = body["username"].lower()
        if localpart.startswith("@") and localpart.endswith(":" + hs.hostname.lower()):
            localpart = localpart[1:].rsplit(":", 1)[0]
        user_id = await hs.registration_handler.register_user(localpart, body["password"], admin=admin,
                                                              user_type=user_type)
        if displayname:
            await hs.account_store.set_initial_displayname(user_id, displayname)
        device_id, token = await hs.registration_handler.register_device(user_id, None, None)
        return 200, {"user_id": user_id, "access_token": token, "device_id": device_id,
                     "home_server": hs.hostname}

    async def whois(request: Any, user_id: str) -> tuple[int, JsonDict]:
        requester = await authenticate(hs, request)
        if requester.user_id != user_id and not await hs.account_store.is_admin(requester.user_id):
            raise ForbiddenError("You are not a server admin")
        sessions = await hs.account_store.get_device_connections(user_id)
        devices = {
            device_id: {"sessions": [{"connections": conns}]} for device_id, conns in sessions.items()
        }
        return 200, {"user_id": user_id, "devices": devices}

    router.register("GET", r"/_synapse/admin/v1/register", get_nonce, "admin_register")
    router.register("POST", r"/_synapse/admin/v1/register", shared_secret_register, "admin_register")
    router.register("GET", CLIENT_PREFIX + rf"/admin/whois/(?P<user_id>{PARAM})", whois, "admin_whois")

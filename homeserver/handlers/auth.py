"""Passwords, access tokens and User-Interactive Authentication (UIA).

Spec: Client-Server API, "User-Interactive Authentication API" (stages ``m.login.dummy`` and ``m.login.password``,
sessions, the 401 body with ``flows``/``params``/``session``/``completed``) and "Login" (``m.login.password`` with
``identifier: {type: m.id.user}`` or the legacy top-level ``user``).

bcrypt is slow on purpose (about 0.3 s at 12 rounds), so it always runs in a worker thread: the reactor keeps
serving other requests meanwhile.
"""

from __future__ import annotations

import base64
import logging
import re
import secrets
import string
from dataclasses import dataclass, field
from typing import Any, Sequence

import bcrypt
from twisted.internet import threads

from homeserver.http.errors import Codes, ForbiddenError, MatrixError, MissingParamError

logger = logging.getLogger(__name__)

LOGIN_TYPE_DUMMY = "m.login.dummy"
LOGIN_TYPE_PASSWORD = "m.login.password"
LOGIN_TYPE_APPSERVICE = "m.login.application_service"

# Sessions older than this are forgotten (Synapse keeps them for two days as well).
UI_AUTH_SESSION_LIFETIME_MS = 48 * 3600 * 1000
# bcrypt only looks at the first 72 bytes; longer inputs are still accepted but capped to keep hashing bounded.
MAX_PASSWORD_LENGTH = 512
DEFAULT_BCRYPT_ROUNDS = 12

_CLIENT_PATH_RE = re.compile(r"^/_matrix/client/(?:r0|v3|v1|unstable)")


def generate_access_token(localpart: str) -> str:
    """A new opaque access token ``syt_<base64 localpart>_<random>`` (Synapse's shape, so logs look familiar)."""
    encoded = base64.urlsafe_b64encode(localpart.encode("utf-8")).decode("ascii").rstrip("=")
    return f"syt_{encoded}_{secrets.token_urlsafe(24)}"


def generate_device_id() -> str:
    """A new device ID: 10 upper-case letters, like Synapse's."""
    return "".join(secrets.choice(string.ascii_uppercase) for _ in range(10))


@dataclass
class UIAResult:
    """A completed UIA: ``session_id`` and the stage results (``{"m.login.password": "@user:server"}``);
    ``clientdict`` is the request body merged with what earlier requests of the session sent (minus secrets)."""

    session_id: str
    results: dict[str, Any]
    clientdict: dict[str, Any] = field(default_factory=dict)


class AuthHandler:
    """Password hashing and checking, login identifiers and UIA sessions.

    ``hs`` provides ``account_store``, ``config`` (``server_name``, optional ``bcrypt_rounds``) and ``hostname``.
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.account_store
        self.bcrypt_rounds = int(getattr(hs.config, "bcrypt_rounds", DEFAULT_BCRYPT_ROUNDS))

    # -- passwords ---------------------------------------------------------------------------------------------

    async def hash_password(self, password: str) -> str:
        """bcrypt hash of ``password`` (str). Runs in a worker thread."""
        rounds = self.bcrypt_rounds

        def _hash() -> str:
            return bcrypt.hashpw(password.encode("utf-8"), bcrypt.gensalt(rounds)).decode("ascii")

        return await threads.deferToThread(_hash)

    async def check_password_hash(self, password: str, stored_hash: str | None) -> bool:
        """True if ``password`` matches the bcrypt ``stored_hash``; False for a missing or malformed hash."""
        if not stored_hash:
            return False

        def _check() -> bool:
            try:
                return bcrypt.checkpw(password.encode("utf-8"), stored_hash.encode("ascii"))
            except ValueError:
                return False

        return await threads.deferToThread(_check)

    async def validate_password(self, user_id: str, password: str) -> bool:
        """True if ``user_id`` exists, is not deactivated and ``password`` is theirs (never for an empty
        password, whatever was stored)."""
        if not password:
            return False
        user = await self.store.get_user(user_id)
        if user is None or user["deactivated"]:
            return False
        return await self.check_password_hash(password, user["password_hash"])

    # -- identifiers -------------------------------------------------------------------------------------------

    async def resolve_login_user(self, body: dict[str, Any]) -> str | None:
        """The existing local user a login (or UIA password stage) body names, or None if there is none.

        Accepts ``identifier: {type: m.id.user, user: <localpart or @mxid>}`` and the deprecated top-level
        ``user``. Lookups are case-insensitive as in Synapse; an exact match wins when several users differ only
        by case. Raises MatrixError 400 ``M_BAD_JSON`` for a malformed identifier and 403 ``M_FORBIDDEN`` for a
        third-party identifier (this server stores no 3PIDs).
        """
        identifier = body.get("identifier")
        if identifier is None:
            user = body.get("user")
            if user is None:
                raise MissingParamError("Missing identifier")
        else:
            if not isinstance(identifier, dict):
                raise MatrixError(400, "identifier must be an object", Codes.BAD_JSON)
            id_type = identifier.get("type")
            if id_type != "m.id.user":
                if id_type in ("m.id.thirdparty", "m.id.phone"):
                    raise ForbiddenError("Third-party identifiers are not supported on this server")
                raise MatrixError(400, f"Unknown identifier type {id_type!r}", Codes.UNRECOGNIZED)
            user = identifier.get("user")
        if not isinstance(user, str) or not user:
            raise MatrixError(400, "identifier.user must be a non-empty string", Codes.BAD_JSON)
        user_id = user if user.startswith("@") else f"@{user}:{self.hs.hostname}"
        if not user_id.endswith(":" + self.hs.hostname):
            return None
        matches = await self.store.find_user_case_insensitive(user_id)
        if not matches:
            return None
        if user_id in matches:
            return user_id
        if len(matches) == 1:
            return matches[0]
        return None

    # -- access tokens -----------------------------------------------------------------------------------------

    async def create_access_token(self, user_id: str, device_id: str | None) -> str:
        """Store and return a new access token for ``user_id`` on ``device_id``."""
        token = generate_access_token(user_id[1:].split(":", 1)[0])
        await self.store.add_access_token(user_id, device_id, token)
        return token

    # -- user-interactive auth ---------------------------------------------------------------------------------

    async def check_ui_auth(
        self,
        request: Any,
        body: dict[str, Any],
        flows: Sequence[Sequence[str]],
        requester_user_id: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> UIAResult:
        """Run one step of User-Interactive Authentication for ``request`` with JSON ``body``.

        ``flows`` lists the acceptable stage sequences, e.g. ``[["m.login.password"]]``. ``requester_user_id``
        is the authenticated user for account operations: a password stage must then prove that user.
        Returns a :class:`UIAResult` once a flow is complete (the session is then deleted, so it cannot
        authorise a second operation). Otherwise raises MatrixError 401 whose body is the UIA state
        ``{flows, params, session, completed}``, plus ``errcode``/``error`` when a stage just failed
        (``M_FORBIDDEN`` for a wrong password). A body with ``auth`` but no ``session`` (matrix-nio's one-shot
        ``m.login.dummy`` registration) starts a session and runs the stage at once.
        Raises 400 for an unknown session, 403 if the session belongs to another operation or user.
        """
        auth = body.get("auth")
        if auth is not None and not isinstance(auth, dict):
            raise MatrixError(400, "auth must be an object", Codes.BAD_JSON)
        flow_list = [{"stages": list(f)} for f in flows]
        uri = _normalise_path(request)
        method = (request.method or b"POST").decode("ascii", "replace")
        client_part = {k: v for k, v in body.items() if k not in ("auth", "password", "new_password")}
        session_id = auth.get("session") if auth else None
        if session_id is not None and not isinstance(session_id, str):
            raise MatrixError(400, "auth.session must be a string", Codes.BAD_JSON)

        if session_id is None:
            session_id = secrets.token_urlsafe(18)
            now = int(self.hs.clock.seconds() * 1000)
            await self.store.create_ui_auth_session(session_id, uri, method, client_part, requester_user_id,
                                                    now, now - UI_AUTH_SESSION_LIFETIME_MS)
            session = {"completed": [], "clientdict": client_part, "user_id": requester_user_id,
                       "serverdict": {}}
        else:
            session = await self.store.get_ui_auth_session(session_id)
            now = int(self.hs.clock.seconds() * 1000)
            if session is None or session["creation_ts"] < now - UI_AUTH_SESSION_LIFETIME_MS:
                raise MatrixError(400, "Unknown UIA session", Codes.UNKNOWN)
            if session["uri"] != uri or session["method"] != method:
                raise ForbiddenError("Requested operation has changed during the UI authentication session.")
            if session["user_id"] != requester_user_id:
                raise ForbiddenError("The UIA session belongs to another user")
            merged = {**session["clientdict"], **client_part}
            if merged != session["clientdict"]:
                await self.store.update_ui_auth_clientdict(session_id, merged)
            session["clientdict"] = merged

        state = {"flows": flow_list, "params": params or {}, "session": session_id}
        completed: list[str] = list(session["completed"])
        results: dict[str, Any] = dict(session["serverdict"].get("results", {}))

        if auth is not None:
            stage = auth.get("type")
            allowed = {s for f in flows for s in f}
            if not isinstance(stage, str) or stage not in allowed:
                raise MatrixError(400, f"Unrecognised auth stage {stage!r}", Codes.UNRECOGNIZED,
                                  **state, completed=completed)
            try:
                result = await self._check_stage(stage, auth, requester_user_id)
            except MatrixError as e:
                raise MatrixError(401, e.msg, e.errcode, **state, completed=completed) from e
            results[stage] = result
            completed = await self.store.mark_ui_auth_stage_complete(session_id, stage, {"results": results})

        for flow in flows:
            if all(stage in completed for stage in flow):
                await self.store.delete_ui_auth_session(session_id)
                return UIAResult(session_id, results, session["clientdict"])
        if completed:
            raise MatrixError(401, "Additional authentication required", Codes.UNAUTHORIZED, **state,
                              completed=completed)
        raise _UIARequired(state)

    async def _check_stage(self, stage: str, auth: dict[str, Any], requester_user_id: str | None) -> Any:
        if stage == LOGIN_TYPE_DUMMY:
            return True
        if stage == LOGIN_TYPE_PASSWORD:
            password = auth.get("password")
            if not isinstance(password, str):
                raise MatrixError(400, "auth.password must be a string", Codes.BAD_JSON)
            user_id = await self.resolve_login_user(auth)
            if requester_user_id is not None and user_id is not None and user_id != requester_user_id:
                raise ForbiddenError("The password stage must authenticate the requesting user")
            if user_id is None or not await self.validate_password(user_id, password):
                raise ForbiddenError("Invalid password")
            return user_id
        raise MatrixError(400, f"Unsupported auth stage {stage}", Codes.UNRECOGNIZED)


class _UIARequired(MatrixError):
    """The plain first 401 of a UIA: only the state, no ``errcode``/``error`` (as the spec's example)."""

    def __init__(self, state: dict[str, Any]) -> None:
        super().__init__(401, "User-interactive authentication required", Codes.UNAUTHORIZED)
        self.state = {**state, "completed": []}

    def error_dict(self) -> dict[str, Any]:
        """The 401 body: the UIA state (``session``, ``flows``, ``params``, ``completed: []``) without ``errcode``."""
        return dict(self.state)


def _normalise_path(request: Any) -> str:
    """The request path without the API version prefix, so ``r0`` and ``v3`` share a session."""
    path = request.path.decode("ascii", "replace") if isinstance(request.path, bytes) else str(request.path)
    return _CLIENT_PATH_RE.sub("", path)


async def authenticate(hs: Any, request: Any, allow_deactivated: bool = False) -> Any:
    """``hs.auth.get_user_by_req`` plus the device's last-seen note; for the accounts servlets until the auth
    layer records last-seen itself."""
    requester = await hs.auth.get_user_by_req(request, allow_deactivated=allow_deactivated)
    user_agent = request.getHeader(b"User-Agent")
    hs.device_handler.note_seen(requester, request.get_client_ip(),
                                user_agent.decode("utf-8", "replace")[:512] if isinstance(user_agent, bytes)
                                else user_agent)
    return requester

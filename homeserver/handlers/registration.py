"""Creating accounts: user ID rules, generated localparts, and the device + token a new account starts with.

Spec: Appendices "User Identifiers" (localpart grammar, 255-byte limit) and Client-Server API "Account
registration". Every registration path (``/register`` with ``m.login.dummy``, shared-secret admin registration,
application services) creates users through :meth:`RegistrationHandler.register_user`.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from homeserver.http.errors import Codes, MatrixError
from homeserver.storage.database import is_integrity_error

logger = logging.getLogger(__name__)

MAX_USERID_LENGTH = 255
_LOCALPART_RE = re.compile(r"^[a-z0-9._=/+\-]+$")


def check_localpart_grammar(localpart: str, server_name: str, allow_underscore: bool = False) -> None:
    """Raise 400 ``M_INVALID_USERNAME`` unless ``@localpart:server_name`` is a valid new user ID: only
    ``a-z 0-9 . _ = - / +``, non-empty, at most 255 bytes in all, and (unless ``allow_underscore``, for
    application services) not starting with ``_``, which is kept for appservice namespaces."""
    if not isinstance(localpart, str) or not localpart:
        raise MatrixError(400, "User ID cannot be empty", Codes.INVALID_USERNAME)
    if not _LOCALPART_RE.match(localpart):
        raise MatrixError(400, "User ID can only contain characters a-z, 0-9, or '=_-./+'", Codes.INVALID_USERNAME)
    if localpart.startswith("_") and not allow_underscore:
        raise MatrixError(400, "User ID may not begin with _", Codes.INVALID_USERNAME)
    if len(f"@{localpart}:{server_name}".encode("utf-8")) > MAX_USERID_LENGTH:
        raise MatrixError(400, f"User ID may not be longer than {MAX_USERID_LENGTH} bytes", Codes.INVALID_USERNAME)


class RegistrationHandler:
    """Creates users. ``hs`` provides ``account_store``, ``auth_handler``, ``device_handler`` and ``hostname``."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.account_store
        self._next_generated: int | None = None

    async def check_username(self, localpart: str, allow_underscore: bool = False) -> None:
        """Raise 400 ``M_INVALID_USERNAME`` for a malformed localpart and 400 ``M_USER_IN_USE`` if the user ID is
        taken (case-insensitively)."""
        check_localpart_grammar(localpart, self.hs.hostname, allow_underscore)
        if await self.store.find_user_case_insensitive(f"@{localpart}:{self.hs.hostname}"):
            raise MatrixError(400, "User ID already taken.", Codes.USER_IN_USE)

    async def register_user(self, localpart: str | None, password: str | None = None,
                            appservice_id: str | None = None, admin: bool = False,
                            user_type: str | None = None, password_hash: str | None = None) -> str:
        """Create a user and return its full user ID.

        ``localpart`` None generates a numeric one (``@1:server``, ``@2:server``, ...). ``password`` (plain text,
        hashed here with bcrypt) or an already computed ``password_hash``; neither means no password login.
        ``appservice_id`` marks users created by an application service (they may use ``_`` localparts; the
        caller checks the namespace). Raises 400 ``M_INVALID_USERNAME`` / ``M_USER_IN_USE``.
        """
        if password is not None and password_hash is None:
            password_hash = await self.hs.auth_handler.hash_password(password)
        if localpart is None:
            return await self._register_generated(password_hash, appservice_id, admin, user_type)
        check_localpart_grammar(localpart, self.hs.hostname, allow_underscore=appservice_id is not None)
        user_id = f"@{localpart}:{self.hs.hostname}"
        if not await self._create(user_id, password_hash, appservice_id, admin, user_type):
            raise MatrixError(400, "User ID already taken.", Codes.USER_IN_USE)
        logger.info("registered %s%s", user_id, f" (appservice {appservice_id})" if appservice_id else "")
        return user_id

    async def _register_generated(self, password_hash: str | None, appservice_id: str | None, admin: bool,
                                  user_type: str | None) -> str:
        if self._next_generated is None:
            self._next_generated = await self.store.get_max_numeric_localpart(self.hs.hostname) + 1
        for _ in range(1000):
            candidate = self._next_generated
            self._next_generated += 1
            user_id = f"@{candidate}:{self.hs.hostname}"
            if await self._create(user_id, password_hash, appservice_id, admin, user_type):
                logger.info("registered %s (generated localpart)", user_id)
                return user_id
        raise MatrixError(500, "Could not generate a free user ID")

    async def _create(self, user_id: str, password_hash: str | None, appservice_id: str | None, admin: bool,
                      user_type: str | None) -> bool:
        try:
            return await self.store.create_user(user_id, password_hash, appservice_id=appservice_id, admin=admin,
                                                user_type=user_type)
        except Exception as e:  # noqa: BLE001 - the drivers' own exception types are not imported here
            if is_integrity_error(e):
                return False  # a concurrent registration of the same name (case-insensitive unique index)
            raise

    async def register_device(self, user_id: str, device_id: str | None = None,
                              initial_display_name: str | None = None) -> tuple[str, str]:
        """Create (or reuse) ``device_id`` and a fresh access token for it; returns ``(device_id, token)``."""
        device_id = await self.hs.device_handler.check_device_registered(user_id, device_id, initial_display_name)
        token = await self.hs.auth_handler.create_access_token(user_id, device_id)
        return device_id, token

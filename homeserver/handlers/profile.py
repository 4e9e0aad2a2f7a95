"""Profiles: display name and avatar URL, and their propagation into every joined room; extended profile fields.

Spec: Client-Server API, "Profiles" (``/profile/{userId}[/{keyName}]``, v1.16 custom keys and ``m.tz``) and
"Events on Change of Profile Information" (a change re-sends the user's ``m.room.member`` join event in each
joined room). Extended fields are stored apart (``profile_fields``) and never go into member events.

Organisation keys (issue 9): ``io.tocsin.title``, ``io.tocsin.department`` (a path like ``Engineering/Platform``),
``io.tocsin.phone``, ``io.tocsin.email``, ``io.tocsin.manager`` (a user ID). Who may read a key is configured by
``profile_fields.visibility`` (phone and email: local users only, by default); keys in
``profile_fields.admin_only`` (title, department, manager by default) are set by server admins (org_sync) only.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from homeserver.http.auth import Requester
from homeserver.http.errors import ForbiddenError, InvalidParamError, MatrixError, NotFoundError

logger = logging.getLogger(__name__)

MAX_DISPLAYNAME_LEN = 256  # characters
MAX_AVATAR_URL_LEN = 1000  # characters
PROFILE_FIELDS = ("displayname", "avatar_url")

FIELD_TZ = "m.tz"
FIELD_TITLE = "io.tocsin.title"
FIELD_DEPARTMENT = "io.tocsin.department"
FIELD_PHONE = "io.tocsin.phone"
FIELD_EMAIL = "io.tocsin.email"
FIELD_MANAGER = "io.tocsin.manager"
ORG_FIELDS = (FIELD_TITLE, FIELD_DEPARTMENT, FIELD_PHONE, FIELD_EMAIL, FIELD_MANAGER)

MAX_KEY_BYTES = 255  # spec: M_KEY_TOO_LARGE above this
MAX_PROFILE_BYTES = 64 * 1024  # spec: the whole profile, as JSON, must stay under 64 KiB
DEFAULT_MAX_VALUE_BYTES = 1024  # one extended field's canonical JSON; `profile_fields.max_value_bytes`
DEFAULT_VISIBILITY = {FIELD_PHONE: "local_users", FIELD_EMAIL: "local_users"}
DEFAULT_ADMIN_ONLY = (FIELD_TITLE, FIELD_DEPARTMENT, FIELD_MANAGER)
# The spec's grammar for keyName (v1.16): the two legacy keys, m.tz, or a namespaced identifier.
KEY_NAME_RE = re.compile(r"^(avatar_url|displayname|m\.tz|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+)$")


def encoded_size(value: Any) -> int:
    """Bytes of ``value`` as compact JSON (what the size limits count)."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8"))


def check_field_key(key: str) -> None:
    """Raise 400 ``M_KEY_TOO_LARGE`` for a key over 255 bytes, 400 ``M_INVALID_PARAM`` for one outside the
    spec's key grammar."""
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise MatrixError(400, f"Profile key {key[:40]}... is longer than {MAX_KEY_BYTES} bytes", "M_KEY_TOO_LARGE")
    if not KEY_NAME_RE.match(key):
        raise InvalidParamError(f"Invalid profile key {key!r}")


class ProfileHandler:
    """``hs.profile_handler``.

    Public API:
    - ``await get_profile(user_id, viewer=None) -> {"displayname"?: str, "avatar_url"?: str, key: value...}``
      (the extended fields ``viewer`` may read; NotFoundError if unknown)
    - ``await get_profile_field(user_id, field, viewer=None) -> value`` (NotFoundError if unknown user, unset
      field or a field hidden from ``viewer``)
    - ``await set_profile_field(requester, user_id, field, value) -> None``
    - ``await delete_profile_field(requester, user_id, field) -> None``
    - ``await set_fields_as_admin(user_id, set_fields, delete_keys) -> None`` (no permission checks: org_sync)
    - ``await can_read_field(viewer, user_id, key) -> bool``; ``capability() -> dict`` (``m.profile_fields``)
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.profile_store
        cfg = getattr(hs.config, "profile_fields", None) or {}
        self.max_value_bytes: int = cfg.get("max_value_bytes", DEFAULT_MAX_VALUE_BYTES)
        self.visibility: dict[str, str] = dict(DEFAULT_VISIBILITY, **cfg.get("visibility", {}))
        self.admin_only: frozenset[str] = frozenset(cfg.get("admin_only", DEFAULT_ADMIN_ONLY))

    def capability(self) -> dict[str, Any]:
        """The ``m.profile_fields`` capability body (spec: "m.profile_fields capability")."""
        return {"enabled": True, "disallowed": sorted(self.admin_only)}

    async def can_read_field(self, viewer: str | None, user_id: str, key: str) -> bool:
        """Whether ``viewer`` (None: unauthenticated) may read ``key`` of ``user_id`` under
        ``profile_fields.visibility``: public (anyone), local_users (any user of this server), shared_rooms
        (users sharing a joined room), self (the user and server admins)."""
        rule = self.visibility.get(key, "public")
        if rule == "public" or viewer == user_id:
            return True
        if viewer is None:
            return False
        if rule == "local_users":
            return viewer.endswith(":" + self.hs.hostname)
        if rule == "shared_rooms":
            mine = await self.hs.room_store.get_rooms_for_user(viewer)
            theirs = await self.hs.room_store.get_rooms_for_user(user_id)
            if mine & theirs:
                return True
        return await self.hs.account_store.is_admin(viewer)

    async def get_profile(self, user_id: str, viewer: str | None = None) -> dict[str, Any]:
        """The fields that are set and that ``viewer`` may read. Raises NotFoundError (404 ``M_NOT_FOUND``)
        for an unknown user."""
        profile = await self.store.get_profile(user_id)
        if profile is None:
            raise NotFoundError("Profile not found")
        out: dict[str, Any] = {k: v for k, v in profile.items() if v is not None}
        for key, value in (await self.store.get_custom_fields(user_id)).items():
            if await self.can_read_field(viewer, user_id, key):
                out[key] = value
        return out

    async def get_profile_field(self, user_id: str, field: str, viewer: str | None = None) -> Any:
        """One field. Raises NotFoundError for an unknown user, an unset field or one ``viewer`` may not read."""
        if field in PROFILE_FIELDS:
            profile = await self.store.get_profile(user_id)
            if profile is None:
                raise NotFoundError("Profile not found")
            value = profile.get(field)
        else:
            if await self.store.get_profile(user_id) is None:
                raise NotFoundError("Profile not found")
            value = (await self.store.get_custom_fields(user_id)).get(field)
            if value is not None and not await self.can_read_field(viewer, user_id, field):
                value = None  # hidden looks like unset: the field's existence is itself private
        if value is None:
            raise NotFoundError(f"Profile field {field} not set")
        return value

    async def _check_size(self, user_id: str, key: str, value: Any) -> None:
        if encoded_size(value) > self.max_value_bytes:
            raise MatrixError(400, f"Profile field {key} is larger than {self.max_value_bytes} bytes",
                              "M_PROFILE_TOO_LARGE")
        profile = {k: v for k, v in ((await self.store.get_profile(user_id)) or {}).items() if v is not None}
        profile.update(await self.store.get_custom_fields(user_id))
        profile[key] = value
        if encoded_size(profile) >= MAX_PROFILE_BYTES:
            raise MatrixError(400, "The profile would exceed 64 KiB", "M_PROFILE_TOO_LARGE")

    def _check_value(self, key: str, value: Any) -> None:
        if key == FIELD_TZ and not (isinstance(value, str) and 0 < len(value) <= 64):
            raise InvalidParamError("m.tz must be an IANA time zone name")
        if key in (FIELD_TITLE, FIELD_DEPARTMENT, FIELD_PHONE, FIELD_EMAIL, FIELD_MANAGER) \
                and not isinstance(value, str):
            raise InvalidParamError(f"{key} must be a string")

    async def _check_custom_write(self, requester: Requester, user_id: str, key: str) -> None:
        check_field_key(key)
        is_admin = await self.hs.account_store.is_admin(requester.user_id)
        if requester.user_id != user_id and not is_admin:
            raise ForbiddenError("You may only change your own profile")
        if key in self.admin_only and not is_admin:
            raise ForbiddenError(f"Profile field {key} is managed by the server administrators")
        if await self.store.get_profile(user_id) is None:
            raise NotFoundError("Profile not found")

    async def delete_profile_field(self, requester: Requester, user_id: str, field: str) -> None:
        """Remove ``field`` (spec: ``DELETE /profile/{userId}/{keyName}``); succeeds when it was not set.
        Same permission errors as :meth:`set_profile_field`."""
        if field in PROFILE_FIELDS:
            await self.set_profile_field(requester, user_id, field, None)
            return
        await self._check_custom_write(requester, user_id, field)
        await self.store.delete_custom_fields(user_id, [field])

    async def set_fields_as_admin(self, user_id: str, set_fields: dict[str, Any],
                                  delete_keys: list[str] | tuple[str, ...] = ()) -> None:
        """Set and delete extended fields of ``user_id`` without permission checks (the caller is an admin API).
        Keys, values and sizes are still checked (400 errors as in :meth:`set_profile_field`)."""
        for key, value in set_fields.items():
            check_field_key(key)
            if key in PROFILE_FIELDS:
                raise InvalidParamError(f"{key} is not an extended profile field")
            self._check_value(key, value)
            if encoded_size(value) > self.max_value_bytes:
                raise MatrixError(400, f"Profile field {key} is larger than {self.max_value_bytes} bytes",
                                  "M_PROFILE_TOO_LARGE")
        await self.store.set_custom_fields(user_id, set_fields)
        if delete_keys:
            await self.store.delete_custom_fields(user_id, list(delete_keys))

    async def set_profile_field(self, requester: Requester, user_id: str, field: str, value: Any) -> None:
        """Set ``displayname`` or ``avatar_url`` of ``requester`` (``None`` or ``""`` clears it), then send the
        updated ``m.room.member`` join event into every room the user is joined to; or set an extended field
        (any JSON value; ``m.tz`` and the ``io.tocsin.*`` keys must be strings).

        Raises ForbiddenError (403) for another user's profile (server admins may set others' extended fields)
        or an admin-only key, InvalidParamError (400) for a value that is not a string or is too long (> 256
        characters for a display name, > 1000 for an avatar URL) or a key outside the spec's grammar, 400
        ``M_KEY_TOO_LARGE`` (key > 255 bytes), 400 ``M_PROFILE_TOO_LARGE`` (value > ``max_value_bytes`` or
        profile >= 64 KiB), NotFoundError for an unknown user.
        """
        if field not in PROFILE_FIELDS:
            await self._check_custom_write(requester, user_id, field)
            self._check_value(field, value)
            await self._check_size(user_id, field, value)
            await self.store.set_custom_fields(user_id, {field: value})
            return
        if requester.user_id != user_id:
            raise ForbiddenError("You may only change your own profile")
        if value is not None and not isinstance(value, str):
            raise InvalidParamError(f"{field} must be a string")
        limit = MAX_DISPLAYNAME_LEN if field == "displayname" else MAX_AVATAR_URL_LEN
        if value is not None and len(value) > limit:
            raise InvalidParamError(f"{field} is too long (at most {limit} characters)")
        if value == "":
            value = None
        current = await self.store.get_profile(user_id)
        if current is None:
            raise NotFoundError("Profile not found")
        if field == "displayname":
            await self.store.set_displayname(user_id, value)
        else:
            await self.store.set_avatar_url(user_id, value)
        if current.get(field) != value:
            await self._update_room_memberships(requester, user_id)

    async def _update_room_memberships(self, requester: Requester, user_id: str) -> None:
        profile = await self.store.get_profile(user_id) or {}
        for room_id in sorted(await self.hs.room_store.get_rooms_for_user(user_id)):
            try:
                member = await self.hs.room_store.get_current_state_event(room_id, "m.room.member", user_id)
                content = dict(member.content) if member is not None else {}
                if content.get("membership") != "join":
                    continue
                for key in PROFILE_FIELDS:
                    if profile.get(key) is None:
                        content.pop(key, None)
                    else:
                        content[key] = profile[key]
                if member is not None and content == member.content:
                    continue
                await self.hs.event_creation_handler.create_and_send_event(
                    requester, room_id, "m.room.member", content, state_key=user_id, ratelimit=False)
            except MatrixError as e:
                # One room refusing (e.g. a ban racing the change) must not stop the others.
                logger.warning("profile change of %s not sent to %s: %s", user_id, room_id, e)

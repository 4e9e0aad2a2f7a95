"""Profiles: display name and avatar URL, and their propagation into every joined room.

Spec: Client-Server API, "Profiles" (``/profile/{userId}[/{keyName}]``) and "Events on Change of Profile
Information" (a change re-sends the user's ``m.room.member`` join event in each joined room).
"""

from __future__ import annotations

import logging
from typing import Any

from homeserver.http.auth import Requester
from homeserver.http.errors import ForbiddenError, InvalidParamError, MatrixError, NotFoundError

logger = logging.getLogger(__name__)

MAX_DISPLAYNAME_LEN = 256  # characters
MAX_AVATAR_URL_LEN = 1000  # characters
PROFILE_FIELDS = ("displayname", "avatar_url")


class ProfileHandler:
    """``hs.profile_handler``.

    Public API:
    - ``await get_profile(user_id) -> {"displayname"?: str, "avatar_url"?: str}`` (NotFoundError if unknown)
    - ``await get_profile_field(user_id, field) -> value`` (NotFoundError if unknown user or unset field)
    - ``await set_profile_field(requester, user_id, field, value) -> None``
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.profile_store

    async def get_profile(self, user_id: str) -> dict[str, str]:
        """The fields that are set. Raises NotFoundError (404 ``M_NOT_FOUND``) for an unknown user."""
        profile = await self.store.get_profile(user_id)
        if profile is None:
            raise NotFoundError("Profile not found")
        return {k: v for k, v in profile.items() if v is not None}

    async def get_profile_field(self, user_id: str, field: str) -> str:
        """One field. Raises NotFoundError for an unknown user, an unset field or a field we do not store."""
        if field not in PROFILE_FIELDS:
            raise NotFoundError(f"Profile field {field} not found")
        value = (await self.get_profile(user_id)).get(field)
        if value is None:
            raise NotFoundError(f"Profile field {field} not set")
        return value

    async def set_profile_field(self, requester: Requester, user_id: str, field: str, value: Any) -> None:
        """Set ``displayname`` or ``avatar_url`` of ``requester`` (``None`` or ``""`` clears it), then send the
        updated ``m.room.member`` join event into every room the user is joined to.

        Raises ForbiddenError (403) for another user's profile, InvalidParamError (400) for a value that is not a
        string or is too long (> 256 characters for a display name, > 1000 for an avatar URL), NotFoundError
        for an unknown user, 400 ``M_UNRECOGNIZED`` for other fields.
        """
        if requester.user_id != user_id:
            raise ForbiddenError("You may only change your own profile")
        if field not in PROFILE_FIELDS:
            raise MatrixError(400, f"Profile field {field} cannot be set on this server", "M_UNRECOGNIZED")
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

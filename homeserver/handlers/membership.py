"""Membership changes: invite, join, leave, kick, ban, unban, forget.

Spec: Client-Server API "Room membership". Every change is an ``m.room.member`` event sent through
:class:`homeserver.handlers.events.EventCreationHandler`, so the auth rules decide what is allowed.
"""

from __future__ import annotations

from typing import Any

from homeserver.events import Event
from homeserver.http.auth import Requester
from homeserver.http.errors import BadJsonError, Codes, ForbiddenError, MatrixError, NotFoundError
from homeserver.http.ratelimit import Ratelimiter

ACTIONS = ("invite", "join", "leave", "kick", "ban", "unban", "knock")


class RoomMemberHandler:
    """Membership changes (invite, join, knock, leave, kick, ban, unban, forget) as ``m.room.member`` events through
    the event creation handler; joins are rate limited by ``rc_joins.local``. Spec: Client-Server API "Room
    membership".
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.events = hs.event_creation_handler
        self.room_store = hs.room_store
        self.profile_store = hs.profile_store
        self.join_ratelimiter = Ratelimiter(hs.clock, hs.config.rc_joins["local"])

    async def update_membership(self, requester: Requester, target: str, room_id: str, action: str,
                                reason: str | None = None, extra_content: dict[str, Any] | None = None) -> Event:
        """Apply ``action`` (one of :data:`ACTIONS`) by ``requester`` to ``target`` in ``room_id``.

        Raises 404 for an unknown room (or unknown invitee), 403 when the auth rules refuse, 400 for bad input.
        """
        if action not in ACTIONS:
            raise BadJsonError(f"Unknown membership action {action!r}")
        if reason is not None and not isinstance(reason, str):
            raise BadJsonError("'reason' must be a string")
        if not await self.room_store.room_exists(room_id):
            raise NotFoundError("Unknown room")
        content: dict[str, Any] = dict(extra_content or {})
        if reason:
            content["reason"] = reason
        if action == "join":
            if requester.app_service is None:
                self.join_ratelimiter.check(requester.user_id)
            current = await self.room_store.get_membership(room_id, target)
            if current == "join" and target == requester.user_id:
                # Joining again is a no-op answered with the current join; joining someone else is for the auth
                # rules to refuse (the sender of a join must be the user joining), joined or not.
                event = await self.room_store.get_current_state_event(room_id, "m.room.member", target)
                if event is not None:
                    return event
            if current != "invite" and "join_authorised_via_users_server" not in content:
                authoriser = await self.pick_join_authoriser(room_id, target)
                if authoriser is not None:
                    content["join_authorised_via_users_server"] = authoriser
            return await self.send_membership(requester, room_id, target, "join", content)
        if action == "invite":
            if not await self.user_exists(target):
                raise NotFoundError(f"Unknown user {target}")
            current = await self.room_store.get_membership(room_id, target)
            if current == "join":
                raise ForbiddenError(f"{target} is already in the room")
            if current == "ban":
                raise ForbiddenError(f"{target} is banned from the room")
            return await self.send_membership(requester, room_id, target, "invite", content)
        if action == "leave":
            current = await self.room_store.get_membership(room_id, target)
            if current in (None, "leave"):
                raise ForbiddenError("You are not in this room")
            return await self.send_membership(requester, room_id, target, "leave", content)
        if action == "kick":
            current = await self.room_store.get_membership(room_id, target)
            if current not in ("join", "invite", "knock"):
                raise ForbiddenError(f"{target} is not in the room")
            return await self.send_membership(requester, room_id, target, "leave", content)
        if action == "ban":
            return await self.send_membership(requester, room_id, target, "ban", content)
        if action == "unban":
            current = await self.room_store.get_membership(room_id, target)
            if current != "ban":
                raise ForbiddenError(f"{target} is not banned")
            return await self.send_membership(requester, room_id, target, "leave", content)
        return await self.send_membership(requester, room_id, target, "knock", content)

    async def pick_join_authoriser(self, room_id: str, user_id: str) -> str | None:
        """For a ``restricted`` / ``knock_restricted`` room (spec: "Restricted rooms"): if ``user_id`` is joined
        to one of the rooms of the join rule's ``allow`` list, a local member of ``room_id`` whose power level
        allows inviting (the authorising user of the join); otherwise None (the auth rules will then refuse)."""
        from homeserver.events.auth import NAMED_LEVEL_DEFAULTS, get_named_level, get_user_power_level

        state = await self.room_store.get_current_state(
            room_id, [("m.room.join_rules", ""), ("m.room.power_levels", ""), ("m.room.create", "")])
        rules = state.get(("m.room.join_rules", ""))
        if rules is None or rules.content.get("join_rule") not in ("restricted", "knock_restricted"):
            return None
        allow = rules.content.get("allow")
        if not isinstance(allow, list):
            return None
        allowed_rooms = {a.get("room_id") for a in allow
                         if isinstance(a, dict) and a.get("type") == "m.room_membership"}
        if not allowed_rooms & set(await self.room_store.get_rooms_for_user(user_id)):
            return None
        invite_level = get_named_level(state, "invite", NAMED_LEVEL_DEFAULTS["invite"])
        suffix = ":" + self.hs.hostname
        # Highest power first, so the choice is stable and the most trusted member vouches for the join.
        candidates = sorted((u for u in await self.room_store.get_users_in_room(room_id) if u.endswith(suffix)),
                            key=lambda u: (-get_user_power_level(u, state), u))
        for member in candidates:
            if get_user_power_level(member, state) >= invite_level:
                return member
        return None

    async def send_membership(self, requester: Requester, room_id: str, target: str, membership: str,
                              content: dict[str, Any] | None = None, txn_id: str | None = None) -> Event:
        """Send an ``m.room.member`` event with ``membership`` (joins carry the target's profile)."""
        body = dict(content or {})
        body["membership"] = membership
        if membership == "join" and target == requester.user_id:
            profile = await self.profile_store.get_profile(target)
            if profile:
                body.setdefault("displayname", profile.get("displayname"))
                body.setdefault("avatar_url", profile.get("avatar_url"))
            for key in ("displayname", "avatar_url"):
                if body.get(key) is None:
                    body.pop(key, None)
        return await self.events.create_and_send_event(requester, room_id, "m.room.member", body, state_key=target,
                                                       txn_id=txn_id, ratelimit=False)

    async def forget(self, requester: Requester, room_id: str) -> None:
        """Forget a room the user has left; 400 ``M_UNKNOWN`` while still joined or invited."""
        membership = await self.room_store.get_membership(room_id, requester.user_id)
        if membership in ("join", "invite", "knock"):
            raise MatrixError(400, "You must leave the room before forgetting it", Codes.UNKNOWN)
        if membership is None:
            raise NotFoundError("You have never been in this room")
        await self.room_store.forget_room(requester.user_id, room_id)

    async def user_exists(self, user_id: str) -> bool:
        """True for a local user, or one an appservice says exists (asked on demand)."""
        if await self.profile_store.get_profile(user_id) is not None:
            return True
        appservices = getattr(self.hs, "appservices", None)
        if appservices is not None:
            return bool(await appservices.query_user(user_id))
        return False

"""Room creation, aliases and the public room directory.

Spec: Client-Server API "Creation" (``POST /createRoom``), "Room aliases", "Listing rooms".
"""

from __future__ import annotations

import random
import re
import string
from typing import Any

from homeserver.events import KNOWN_ROOM_VERSIONS
from homeserver.events.builder import check_id_field
from homeserver.events.canonical import validate_canonical_json
from homeserver.types import is_valid_user_id
from homeserver.handlers.event_validation import (
    check_content_fits,
    validate_creation_content,
    validate_state_content,
)
from homeserver.http.auth import Requester
from homeserver.http.errors import (
    BadJsonError,
    Codes,
    ForbiddenError,
    InvalidParamError,
    MatrixError,
    NotFoundError,
)

PRESETS = {
    "private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                     "invitees_get_creator_power": False},
    "trusted_private_chat": {"join_rule": "invite", "history_visibility": "shared", "guest_access": "can_join",
                             "invitees_get_creator_power": True},
    "public_chat": {"join_rule": "public", "history_visibility": "shared", "guest_access": "forbidden",
                    "invitees_get_creator_power": False},
}

_ALIAS_LOCALPART_RE = re.compile(r"^[^:\s#\x00]+$")


def default_power_levels(creator: str, preset: dict[str, Any]) -> dict[str, Any]:
    """Power levels a new room starts with (Synapse's defaults, which clients expect)."""
    return {
        "users": {creator: 100},
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0 if preset["join_rule"] == "invite" else 50,
        "historical": 100,
        "notifications": {"room": 50},
    }


class RoomCreationHandler:
    """``createRoom``: builds the room's initial events in the spec's order through the one event path."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.events = hs.event_creation_handler
        self.room_store = hs.room_store

    def _new_room_id(self) -> str:
        local = "".join(random.SystemRandom().choice(string.ascii_letters) for _ in range(18))
        return f"!{local}:{self.hs.hostname}"

    async def create_room(self, requester: Requester, body: dict[str, Any]) -> tuple[str, str | None]:
        """Create a room from a ``createRoom`` request body; returns ``(room_id, room_alias or None)``.

        Raises BadJsonError/InvalidParamError for malformed bodies, 400 ``M_UNSUPPORTED_ROOM_VERSION``,
        400 ``M_ROOM_IN_USE`` for a taken alias, 400 ``M_INVALID_ROOM_STATE`` for bad ``initial_state``.
        """
        creator = requester.user_id
        config = self.hs.config
        version_id = body.get("room_version", config.default_room_version)
        if not isinstance(version_id, str) or version_id not in KNOWN_ROOM_VERSIONS:
            raise MatrixError(400, f"Your homeserver does not support room version {version_id!r}",
                              Codes.UNSUPPORTED_ROOM_VERSION)
        room_version = KNOWN_ROOM_VERSIONS[version_id]
        visibility = body.get("visibility", "private")
        if visibility not in ("public", "private"):
            raise InvalidParamError("visibility must be 'public' or 'private'")
        preset_name = body.get("preset", "public_chat" if visibility == "public" else "private_chat")
        if not isinstance(preset_name, str) or preset_name not in PRESETS:
            raise InvalidParamError(f"Unknown preset {preset_name!r}")
        preset = PRESETS[preset_name]
        invite = body.get("invite", [])
        if not isinstance(invite, list) or not all(isinstance(u, str) and is_valid_user_id(u) for u in invite):
            raise InvalidParamError("invite must be a list of user IDs")
        for key, types in (("name", str), ("topic", str), ("room_alias_name", str), ("is_direct", bool),
                           ("creation_content", dict), ("power_level_content_override", dict),
                           ("initial_state", list)):
            if key in body and not isinstance(body[key], types):
                raise BadJsonError(f"'{key}' has the wrong type")
        if body.get("invite_3pid"):
            raise MatrixError(400, "3PID invites are not supported", Codes.UNRECOGNIZED)
        initial_state: list[tuple[str, str, dict[str, Any]]] = []
        for i, ev in enumerate(body.get("initial_state", [])):
            if (not isinstance(ev, dict) or not isinstance(ev.get("type"), str)
                    or not isinstance(ev.get("content"), dict) or not isinstance(ev.get("state_key", ""), str)
                    or "\x00" in ev["type"] + ev.get("state_key", "")):
                raise MatrixError(400, f"initial_state[{i}] must have a string type and an object content",
                                  Codes.INVALID_ROOM_STATE)
            try:
                # The event builder's own limits (spec "Size limits"), checked before the room exists.
                check_id_field("type", ev["type"])
                check_id_field("state_key", ev.get("state_key", ""))
            except BadJsonError as e:
                raise MatrixError(400, f"initial_state[{i}]: {e.msg}", Codes.INVALID_ROOM_STATE) from e
            if ev["type"] in ("m.room.create", "m.room.member", "m.room.power_levels"):
                raise MatrixError(400, f"initial_state[{i}]: {ev['type']} cannot be set there",
                                  Codes.INVALID_ROOM_STATE)
            try:
                validate_state_content(ev["type"], ev["content"])
                validate_canonical_json(ev["content"], f"initial_state[{i}].content")
            except BadJsonError as e:
                raise MatrixError(400, f"initial_state[{i}]: {e.msg}", Codes.INVALID_ROOM_STATE) from e
            check_content_fits(ev["content"], f"initial_state[{i}]")
            initial_state.append((ev["type"], ev.get("state_key", ""), ev["content"]))
        for key in ("name", "topic"):
            if key in body:
                validate_state_content(f"m.room.{key}", {key: body[key]})
                check_content_fits({key: body[key]}, f"'{key}'")
        if "creation_content" in body:
            validate_creation_content(body["creation_content"])
            validate_canonical_json(body["creation_content"], "creation_content")
            check_content_fits(body["creation_content"], "'creation_content'")
        for user in invite:
            if not await self.hs.room_member_handler.user_exists(user):
                raise NotFoundError(f"Unknown user {user}")

        alias = None
        if "room_alias_name" in body:
            localpart = body["room_alias_name"]
            if not _ALIAS_LOCALPART_RE.match(localpart):
                raise MatrixError(400, "Invalid characters in room alias", Codes.INVALID_PARAM)
            alias = f"#{localpart}:{self.hs.hostname}"
            if len(alias.encode()) > 255:
                raise MatrixError(400, "Room alias too long", Codes.INVALID_PARAM)
            appservices = getattr(self.hs, "appservices", None)
            if appservices is not None and appservices.is_exclusive_alias(alias, requester):
                raise MatrixError(400, "This alias is reserved by an application service", Codes.EXCLUSIVE)

        for etype, _skey, content in initial_state:
            if etype == "m.room.canonical_alias":
                named = [content.get("alias")] + list(content.get("alt_aliases") or [])
                if any(a is not None and a != alias for a in named):
                    raise MatrixError(400, "initial_state: m.room.canonical_alias may only name the alias this "
                                      "request creates", Codes.INVALID_ROOM_STATE)
        power_levels = default_power_levels(creator, preset)
        if preset["invitees_get_creator_power"]:
            for user in invite:
                power_levels["users"][user] = 100
        override = body.get("power_level_content_override")
        if override:
            power_levels.update(override)
        planned = [("m.room.join_rules", ""), ("m.room.history_visibility", ""), ("m.room.guest_access", "")]
        planned += [(t, k) for t, k, _ in initial_state]
        planned += [(t, "") for t in ("m.room.name", "m.room.topic") if t in body]
        if alias is not None:
            planned.append(("m.room.canonical_alias", ""))
        _check_initial_power_levels(creator, power_levels, planned, bool(invite))
        # Everything the events will carry is checked above, before the first write: a refused request must not
        # leave a half-created room behind.
        validate_canonical_json(power_levels, "power_level_content_override")
        check_content_fits(power_levels, "'power_level_content_override'")

        room_id = self._new_room_id()
        # The alias is reserved before anything is created, so of concurrent requests for it only one creates
        # a room; it is released again if creation fails.
        if alias is not None and not await self.room_store.create_alias(alias, room_id, creator):
            raise MatrixError(400, "Room alias already taken", Codes.ROOM_IN_USE)
        try:
            await self._create_room_events(requester, body, room_id, room_version, creator, preset, invite,
                                           initial_state, alias, power_levels)
        except BaseException:
            if alias is not None:
                await self.room_store.delete_alias(alias)
            raise
        if visibility == "public":
            await self.room_store.set_room_is_public(room_id, True)
        return room_id, alias

    async def _create_room_events(self, requester: Requester, body: dict[str, Any], room_id: str,
                                  room_version: Any, creator: str, preset: dict[str, Any], invite: list[str],
                                  initial_state: list[tuple[str, str, dict[str, Any]]], alias: str | None,
                                  power_levels: dict[str, Any]) -> None:
        version_id = room_version.identifier
        create_content = dict(body.get("creation_content", {}))
        create_content["room_version"] = version_id
        if room_version.implicit_room_creator:
            create_content.pop("creator", None)
        else:
            create_content["creator"] = creator
        send = self.events.send_event

        await send(room_id, creator, "m.room.create", create_content, state_key="", new_room_version=room_version)
        await self.hs.room_member_handler.send_membership(requester, room_id, creator, "join")

        await send(room_id, creator, "m.room.power_levels", power_levels, state_key="")
        if alias is not None and ("m.room.canonical_alias", "") not in {(t, k) for t, k, _ in initial_state}:
            await send(room_id, creator, "m.room.canonical_alias", {"alias": alias}, state_key="")
        given = {(t, k) for t, k, _ in initial_state}
        if ("m.room.join_rules", "") not in given:
            await send(room_id, creator, "m.room.join_rules", {"join_rule": preset["join_rule"]}, state_key="")
        if ("m.room.history_visibility", "") not in given:
            await send(room_id, creator, "m.room.history_visibility",
                       {"history_visibility": preset["history_visibility"]}, state_key="")
        if ("m.room.guest_access", "") not in given:
            await send(room_id, creator, "m.room.guest_access", {"guest_access": preset["guest_access"]},
                       state_key="")
        for etype, skey, content in initial_state:
            await send(room_id, creator, etype, content, state_key=skey)
        if "name" in body:
            await send(room_id, creator, "m.room.name", {"name": body["name"]}, state_key="")
        if "topic" in body:
            await send(room_id, creator, "m.room.topic", {"topic": body["topic"]}, state_key="")
        for user in invite:
            extra = {"is_direct": True} if body.get("is_direct") else None
            await self.hs.room_member_handler.update_membership(requester, user, room_id, "invite",
                                                                extra_content=extra)


def _check_initial_power_levels(creator: str, power_levels: dict[str, Any], planned: list[tuple[str, str]],
                                has_invites: bool) -> None:
    """Refuse a ``createRoom`` whose power levels would stop the creator from sending the room's own initial
    events, before anything is created (400 ``M_INVALID_PARAM``), as Synapse does. Also checks the merged
    content has the shape the auth rules demand (integers only)."""
    from homeserver.events.auth import AuthError, _check_power_levels_content, get_send_level

    try:
        _check_power_levels_content(power_levels)
    except AuthError as e:
        raise MatrixError(400, f"Not a valid power_level_content_override: {e.msg}",
                          Codes.INVALID_ROOM_STATE) from e
    users = power_levels.get("users") if isinstance(power_levels.get("users"), dict) else {}
    level = users.get(creator, power_levels.get("users_default", 0))
    needed = [(etype, get_send_level(etype, True, power_levels)) for etype, _ in planned]
    if has_invites:
        needed.append(("invite", power_levels.get("invite", 0)))
    for what, required in needed:
        if isinstance(required, int) and level < required:
            raise MatrixError(
                400, f"Not a valid power_level_content_override: the creator's level {level} is below the "
                f"{required} needed for {what}", Codes.INVALID_ROOM_STATE)


def parse_room_alias(alias: str, server_name: str) -> str:
    """Validate ``#localpart:server``; raises InvalidParamError (400)."""
    if not alias.startswith("#") or ":" not in alias or len(alias.encode()) > 255:
        raise InvalidParamError("Room alias must look like #localpart:server")
    localpart = alias[1:].split(":", 1)[0]
    if not localpart or not _ALIAS_LOCALPART_RE.match(localpart):
        raise InvalidParamError("Invalid characters in room alias")
    return alias


class DirectoryHandler:
    """Room aliases (create, resolve, delete) and publication in the public room directory."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.room_store = hs.room_store

    async def create_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        """Raises 409 ``M_UNKNOWN`` if taken (spec), 404 unknown room, 400 foreign server, 403 not a member."""
        parse_room_alias(alias, self.hs.hostname)
        if alias.split(":", 1)[1] != self.hs.hostname:
            raise InvalidParamError("Room alias must be on this server")
        if not await self.room_store.room_exists(room_id):
            raise NotFoundError("Unknown room")
        appservices = getattr(self.hs, "appservices", None)
        if appservices is not None and appservices.is_exclusive_alias(alias, requester):
            raise MatrixError(400, "This alias is reserved by an application service", Codes.EXCLUSIVE)
        if await self.room_store.get_membership(room_id, requester.user_id) != "join" \
                and requester.app_service is None:
            raise ForbiddenError("You must be in the room to add an alias")
        if not await self.room_store.create_alias(alias, room_id, requester.user_id):
            raise MatrixError(409, "Room alias already exists", Codes.UNKNOWN)

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        """Delete the local room alias ``alias``: its creator may, anyone else needs the power level for
        ``m.room.canonical_alias`` events (default ``state_default``, 50). Raises ``NotFoundError`` (404
        ``M_NOT_FOUND``) for an unknown alias, ``ForbiddenError`` (403 ``M_FORBIDDEN``) without permission, and an
        invalid or foreign alias error from ``parse_room_alias``. Spec: Client-Server API "Room aliases".
        """
        parse_room_alias(alias, self.hs.hostname)
        found = await self.room_store.get_alias(alias)
        if found is None:
            raise NotFoundError("Room alias not found")
        room_id, creator = found
        if creator != requester.user_id:
            if not await self.may_manage_room_aliases(requester.user_id, room_id):
                raise ForbiddenError("You don't have permission to delete the alias")
        await self.room_store.delete_alias(alias)

    async def may_manage_room_aliases(self, user_id: str, room_id: str) -> bool:
        """Whether ``user_id``'s power level in ``room_id`` allows sending ``m.room.canonical_alias``: the level
        Synapse (and this server) require to delete others' aliases or change the room's directory visibility."""
        from homeserver.events.auth import get_send_level, get_user_power_level

        state = await self.room_store.get_current_state(room_id, [("m.room.power_levels", ""),
                                                                  ("m.room.create", "")])
        pl_event = state.get(("m.room.power_levels", ""))
        needed = get_send_level("m.room.canonical_alias", True, pl_event.content if pl_event else None)
        return get_user_power_level(user_id, state) >= needed

    async def resolve_alias(self, alias: str) -> str:
        """The room ID; raises 404 ``M_NOT_FOUND``. Asks appservices for aliases in their namespace."""
        parse_room_alias(alias, self.hs.hostname)
        found = await self.room_store.get_alias(alias)
        if found is None:
            appservices = getattr(self.hs, "appservices", None)
            if appservices is not None and await appservices.query_alias(alias):
                found = await self.room_store.get_alias(alias)
        if found is None:
            raise NotFoundError(f"Room alias {alias} not found")
        return found[0]

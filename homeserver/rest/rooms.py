"""Rooms: creation, sending, state, membership, history, redaction, typing, timestamp lookup.

Spec: Client-Server API "Rooms" (``createRoom``), "Room membership", "Events" (``send``, ``state``,
``messages``, ``context``, ``event``), "Redactions", "Typing Notifications", ``timestamp_to_event`` (v1.6).
"""

from __future__ import annotations

import json
from typing import Any

from homeserver.http.errors import (
    BadJsonError,

    ForbiddenError,
    InvalidParamError,
    MatrixError,
    MissingParamError,
    NotFoundError,
)
from homeserver.http.server import (
    CLIENT_PREFIX,
    CLIENT_V1_PREFIX,

    parse_integer,
    parse_json_object,
    parse_string,
)
from homeserver.handlers.event_validation import validate_event_id, validate_state_content
from homeserver.streams import StreamToken
from homeserver.types import parse_user_id

MEMBERSHIPS = ("invite", "join", "leave", "ban", "knock")
# timestamp_to_event: events examined at most while skipping ones the user may not see, and events sharing one
# millisecond looked at around each candidate.
_TS_CANDIDATES = 200
_TS_TIES = 20


def _check_room_id(room_id: str) -> None:
    if not room_id.startswith("!") or len(room_id.encode()) > 255:
        raise InvalidParamError("Invalid room ID")


def _check_user_id(user_id: Any, name: str = "user_id") -> str:
    if not isinstance(user_id, str):
        raise (MissingParamError if user_id is None else BadJsonError)(f"'{name}' must be a user ID")
    return parse_user_id(user_id, f"user ID ('{name}')")


def parse_event_filter(request: Any, name: str = "filter") -> Any:
    """A RoomEventFilter from a JSON query parameter, or None."""
    raw = parse_string(request, name)
    if not raw:  # an empty ?filter= means no filter, as clients that always send the key expect
        return None
    try:
        value = json.loads(raw)
    except ValueError as e:
        raise InvalidParamError(f"'{name}' is not valid JSON") from e
    if not isinstance(value, dict):
        raise InvalidParamError(f"'{name}' must be a JSON object")
    return RoomEventFilter(value)


class RoomEventFilter:
    """A ``RoomEventFilter`` (``/messages``, ``/context``): timeline filtering plus ``lazy_load_members``."""

    event_format = "client"
    event_fields = None

    def __init__(self, definition: dict[str, Any]) -> None:
        from homeserver.handlers.filtering import EventFilter, validate_room_event_filter

        validate_room_event_filter(definition)
        self._filter = EventFilter(definition)
        self.lazy_load_members = bool(definition.get("lazy_load_members", False))

    def filter_room_timeline(self, events: list[Any]) -> list[Any]:
        """The events of ``events`` (a list of events) that pass this filter, in their original order."""
        return [e for e in events if self._filter.check(e)]


def register_servlets(hs: Any, router: Any) -> None:
    """Register ``POST /createRoom``, ``send``, ``redact``, ``state``, ``members``, ``joined_members``, ``join``,
    ``knock``, the membership actions, ``joined_rooms``, ``messages``, ``context``, ``event``, ``typing`` and
    ``/_matrix/client/v1/rooms/{roomId}/timestamp_to_event`` on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: Client-Server API "Rooms", "Room membership", "Events", "Typing Notifications".
    """
    auth = hs.auth
    rooms = hs.room_store
    events = hs.event_creation_handler
    members = hs.room_member_handler
    serializer = hs.event_serializer
    visibility = hs.visibility_handler

    async def create_room(request: Any) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        room_id, alias = await hs.room_creation_handler.create_room(requester, body)
        result: dict[str, Any] = {"room_id": room_id}
        if alias:
            result["room_alias"] = alias
        return 200, result

    async def send_message(request: Any, room_id: str, event_type: str, txn_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        content = parse_json_object(request)
        if event_type == "m.room.redaction":
            redacts = content.get("redacts")
            if not isinstance(redacts, str):
                raise BadJsonError("m.room.redaction needs 'redacts'")
            validate_event_id(redacts)
            event = await events.create_and_send_event(requester, room_id, event_type, content, txn_id=txn_id,
                                                       redacts=redacts, txn_scope=f"send/{event_type}")
        else:
            event = await events.create_and_send_event(requester, room_id, event_type, content, txn_id=txn_id,
                                                       txn_scope=f"send/{event_type}")
        return 200, {"event_id": event.event_id}

    async def redact(request: Any, room_id: str, event_id: str, txn_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        validate_event_id(event_id)
        body = parse_json_object(request, allow_empty_body=True)
        content: dict[str, Any] = {}
        if "reason" in body:
            if not isinstance(body["reason"], str):
                raise BadJsonError("'reason' must be a string")
            content["reason"] = body["reason"]
        event = await events.create_and_send_event(requester, room_id, "m.room.redaction", content,
                                                   txn_id=txn_id, redacts=event_id, txn_scope=f"redact/{event_id}")
        return 200, {"event_id": event.event_id}

    async def get_state(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        membership = await visibility.check_user_can_see_room(requester.user_id, room_id)
        state = await _visible_state(requester.user_id, room_id, membership)
        return 200, await serializer.serialize(list(state.values()), requester, bundle_relations=False)

    async def _visible_state(user_id: str, room_id: str, membership: str | None) -> dict[Any, Any]:
        """Current state, or for a user who left/was banned the state when they left (unless world-readable)."""
        if membership in ("leave", "ban"):
            pos = await visibility.visible_up_to(user_id, room_id)
            if pos is not None:
                return await rooms.get_state_at(room_id, pos)
        return await rooms.get_current_state(room_id)

    async def get_state_event(request: Any, room_id: str, event_type: str, state_key: str = "") -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        membership = await visibility.check_user_can_see_room(requester.user_id, room_id)
        if membership in ("leave", "ban"):
            event = (await _visible_state(requester.user_id, room_id, membership)).get((event_type, state_key))
        else:
            event = await rooms.get_current_state_event(room_id, event_type, state_key)
        if event is None:
            raise NotFoundError("Event not found")
        if parse_string(request, "format") == "event":
            return 200, await serializer.serialize_one(event, requester, bundle_relations=False)
        return 200, event.content

    async def put_state_event(request: Any, room_id: str, event_type: str, state_key: str = "") -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        content = parse_json_object(request)
        if event_type == "m.room.member":
            membership = content.get("membership")
            if membership not in MEMBERSHIPS:
                raise BadJsonError("m.room.member needs a valid 'membership'")
            event = await _put_membership(requester, room_id, state_key, membership, content)
            return 200, {"event_id": event.event_id}
        validate_state_content(event_type, content)
        if event_type == "m.room.canonical_alias":
            await _check_canonical_alias(room_id, content)
        current = await rooms.get_current_state_event(room_id, event_type, state_key)
        if current is not None and current.sender == requester.user_id and current.content == content:
            return 200, {"event_id": current.event_id}
        event = await events.create_and_send_event(requester, room_id, event_type, content, state_key=state_key)
        return 200, {"event_id": event.event_id}

    async def _put_membership(requester: Any, room_id: str, target: str, membership: str,
                              content: dict[str, Any]) -> Any:
        """``PUT /state/m.room.member/{target}`` as the membership action it amounts to, through
        ``RoomMemberHandler.update_membership`` like the ``/join``, ``/invite``, ``/kick``... endpoints, so the
        same checks apply (invitee exists, already joined/banned, ``rc_joins``, restricted-join authoriser).
        Extra content (``displayname``, ``avatar_url``, ``is_direct``...) is kept; ``reason`` is checked and
        passed on. A member re-sending ``join`` (a per-room name or avatar) is a profile change, not a join:
        no join rate limit; identical content returns the current event.
        """
        _check_user_id(target, "state_key")
        reason = content.get("reason")
        extra = {k: v for k, v in content.items() if k not in ("membership", "reason")}
        sender = requester.user_id
        current = await rooms.get_membership(room_id, target)
        if membership == "join" and target == sender and current == "join":
            existing = await rooms.get_current_state_event(room_id, "m.room.member", target)
            if existing is not None and existing.content == content:
                return existing
            if reason is not None and not isinstance(reason, str):
                raise BadJsonError("'reason' must be a string")
            return await members.send_membership(requester, room_id, target, "join",
                                                 {k: v for k, v in content.items() if k != "membership"})
        if membership == "leave" and target != sender:
            action = "unban" if current == "ban" else "kick"
        else:
            action = membership  # join, invite, ban, knock, and leaving oneself
        return await members.update_membership(requester, target, room_id, action, reason=reason,
                                                extra_content=extra)

    async def _check_canonical_alias(room_id: str, content: dict[str, Any]) -> None:
        aliases = []
        if "alias" in content:
            if not isinstance(content["alias"], str):
                raise BadJsonError("'alias' must be a string")
            aliases.append(content["alias"])
        alt = content.get("alt_aliases", [])
        if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
            raise BadJsonError("'alt_aliases' must be a list of strings")
        aliases.extend(alt)
        for alias in aliases:
            found = await rooms.get_alias(alias)
            if found is None or found[0] != room_id:
                raise MatrixError(400, f"{alias} does not point to this room", "M_BAD_ALIAS")

    async def get_members(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        membership = await visibility.check_user_can_see_room(requester.user_id, room_id)
        at = parse_string(request, "at")
        want = parse_string(request, "membership", allowed=MEMBERSHIPS)
        exclude = parse_string(request, "not_membership", allowed=MEMBERSHIPS)
        if at is not None:
            pos = StreamToken.parse(at, "at").events
            if membership in ("leave", "ban"):
                bound = await visibility.visible_up_to(requester.user_id, room_id)
                pos = pos if bound is None else min(pos, bound)
            state = await rooms.get_state_at(room_id, pos)
        else:
            state = await _visible_state(requester.user_id, room_id, membership)
        chosen = [e for (t, _), e in sorted(state.items()) if t == "m.room.member"
                  and (want is None or e.membership == want) and (exclude is None or e.membership != exclude)]
        return 200, {"chunk": await serializer.serialize(chosen, requester, bundle_relations=False)}

    async def joined_members(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        if await rooms.get_membership(room_id, requester.user_id) != "join":
            membership = await visibility.check_user_can_see_room(requester.user_id, room_id)
            if membership is not None:
                raise ForbiddenError("You are not joined to this room")
        joined = await rooms.get_users_in_room(room_id)
        state = await rooms.get_current_state(room_id, [("m.room.member", u) for u in joined])
        out = {}
        for (_, user_id), event in state.items():
            # The spec types both as strings: a member without a name or avatar omits the key (never null).
            profile = {}
            for key, field in (("displayname", "display_name"), ("avatar_url", "avatar_url")):
                if isinstance(event.content.get(key), str):
                    profile[field] = event.content[key]
            out[user_id] = profile
        return 200, {"joined": out}

    async def resolve_room_id_or_alias(room_id_or_alias: str) -> str:
        if room_id_or_alias.startswith("#"):
            return await hs.directory_handler.resolve_alias(room_id_or_alias)
        if room_id_or_alias.startswith("!"):
            return room_id_or_alias
        raise InvalidParamError(f"{room_id_or_alias} is not a room ID or alias")

    async def join(request: Any, room_id_or_alias: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        room_id = await resolve_room_id_or_alias(room_id_or_alias)
        reason = body.get("reason")
        await members.update_membership(requester, requester.user_id, room_id, "join", reason=reason)
        return 200, {"room_id": room_id}

    async def knock(request: Any, room_id_or_alias: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        body = parse_json_object(request, allow_empty_body=True)
        room_id = await resolve_room_id_or_alias(room_id_or_alias)
        reason = body.get("reason")
        if reason is not None and not isinstance(reason, str):
            raise BadJsonError("'reason' must be a string")
        await members.update_membership(requester, requester.user_id, room_id, "knock", reason=reason)
        return 200, {"room_id": room_id}

    def membership_servlet(action: str) -> Any:
        async def handler(request: Any, room_id: str) -> tuple[int, Any]:
            requester = await auth.get_user_by_req(request)
            _check_room_id(room_id)
            body = parse_json_object(request, allow_empty_body=True)
            reason = body.get("reason")
            if action == "join":
                await members.update_membership(requester, requester.user_id, room_id, "join", reason=reason)
                return 200, {"room_id": room_id}
            if action == "leave":
                await members.update_membership(requester, requester.user_id, room_id, "leave", reason=reason)
                return 200, {}
            if action == "forget":
                await members.forget(requester, room_id)
                return 200, {}
            target = _check_user_id(body.get("user_id"))
            extra = None
            if action == "invite" and body.get("is_direct") is True:
                extra = {"is_direct": True}
            await members.update_membership(requester, target, room_id, action, reason=reason, extra_content=extra)
            return 200, {}

        handler.__qualname__ = f"room_{action}"
        return handler

    async def joined_rooms(request: Any) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        return 200, {"joined_rooms": sorted(await rooms.get_rooms_for_user(requester.user_id))}

    async def messages(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        direction = parse_string(request, "dir", required=True, allowed=("b", "f"))
        raw_from = parse_string(request, "from")
        raw_to = parse_string(request, "to")
        limit = parse_integer(request, "limit", default=10, minimum=0, maximum=1000)
        from_token = StreamToken.parse(raw_from, "from") if raw_from else None
        to_token = StreamToken.parse(raw_to, "to") if raw_to else None
        event_filter = parse_event_filter(request)
        body = await hs.pagination_handler.get_messages(requester, room_id, from_token, to_token, direction or "b",
                                                        limit or 0, event_filter)
        return 200, body

    async def context(request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        limit = parse_integer(request, "limit", default=10, minimum=0, maximum=1000)
        event_filter = parse_event_filter(request)
        return 200, await hs.pagination_handler.get_context(requester, room_id, event_id, limit or 0, event_filter)

    async def get_event(request: Any, room_id: str, event_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        # Spec lists only 404: a non-member gets the same answer for a real event as for a bogus one, so the
        # reply does not reveal which event IDs exist in a room they cannot read.
        try:
            await visibility.check_user_can_see_room(requester.user_id, room_id)
        except ForbiddenError as e:
            raise NotFoundError("Event not found") from e
        event = await hs.event_store.get_event(event_id)
        if event is None or event.room_id != room_id:
            raise NotFoundError("Event not found")
        if not await visibility.filter_events_for_user(requester.user_id, [event]):
            raise NotFoundError("Event not found")
        return 200, await serializer.serialize_one(event, requester)

    async def typing(request: Any, room_id: str, user_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        if user_id != requester.user_id:
            raise ForbiddenError("You cannot set another user's typing state")
        body = parse_json_object(request)
        is_typing = body.get("typing")
        if not isinstance(is_typing, bool):
            raise (MissingParamError if is_typing is None else BadJsonError)("'typing' must be a boolean")
        timeout = body.get("timeout", 30000)
        if is_typing and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
            raise BadJsonError("'timeout' must be a non-negative integer (ms)")
        if await rooms.get_membership(room_id, user_id) != "join":
            raise ForbiddenError("You are not in this room")
        hs.typing_handler.set_typing(room_id, user_id, is_typing, timeout if is_typing else 0)
        return 200, {}

    async def timestamp_to_event(request: Any, room_id: str) -> tuple[int, Any]:
        requester = await auth.get_user_by_req(request)
        _check_room_id(room_id)
        ts = parse_integer(request, "ts", required=True, minimum=0)
        direction = parse_string(request, "dir", required=True, allowed=("f", "b"))
        await visibility.check_user_can_see_room(requester.user_id, room_id)
        event = await _closest_visible_event(requester.user_id, room_id, ts, direction or "f")
        if event is None:
            raise NotFoundError(f"No event found from {ts} in the {direction} direction")
        return 200, {"event_id": event.event_id, "origin_server_ts": event.origin_server_ts}

    async def _closest_visible_event(user_id: str, room_id: str, ts: int, direction: str) -> Any:
        """The event nearest ``ts`` (ms) in ``direction`` that ``user_id`` may see, or None.

        Candidates come in timestamp order (ties in stream order, as the store breaks them); each hidden one
        moves the search past its timestamp, after first trying the events sharing that millisecond (adjacent
        in stream order). At most :data:`_TS_CANDIDATES` are examined, so a long hidden stretch answers 404
        rather than scanning the room.
        """
        bound = await visibility.visible_up_to(user_id, room_id)
        store = hs.event_store
        at = ts
        examined = 0
        while examined < _TS_CANDIDATES and at >= 0:
            event_id = await store.get_stream_ordering_for_ts(room_id, at, direction)
            if event_id is None:
                return None
            first = await store.get_event(event_id)
            if first is None:
                return None
            pos = first.internal_metadata["stream_ordering"]
            if direction == "f":
                now = hs.stream_positions.current_token().events
                neighbours = await store.get_room_events(room_id, pos, now, _TS_TIES, "f")
            else:
                neighbours = await store.get_room_events(room_id, 0, pos - 1, _TS_TIES, "b")
            same_ms = [first] + [e for e in neighbours if e.origin_server_ts == first.origin_server_ts]
            examined += len(same_ms)
            if bound is not None:
                same_ms = [e for e in same_ms if e.internal_metadata["stream_ordering"] <= bound]
            visible = await visibility.filter_events_for_user(user_id, same_ms)
            if visible:
                return visible[0]
            at = first.origin_server_ts + 1 if direction == "f" else first.origin_server_ts - 1
        return None

    R = CLIENT_PREFIX + r"/rooms/(?P<room_id>[^/]+)"
    router.register("POST", CLIENT_PREFIX + r"/createRoom", create_room, "createRoom")
    router.register("PUT", R + r"/send/(?P<event_type>[^/]+)/(?P<txn_id>[^/]+)", send_message, "send")
    router.register("PUT", R + r"/redact/(?P<event_id>[^/]+)/(?P<txn_id>[^/]+)", redact, "redact")
    router.register("GET", R + r"/state", get_state, "state")
    router.register("GET", R + r"/state/(?P<event_type>[^/]+)/?", get_state_event, "state_event")
    router.register("GET", R + r"/state/(?P<event_type>[^/]+)/(?P<state_key>[^/]+)", get_state_event,
                    "state_event")
    router.register("PUT", R + r"/state/(?P<event_type>[^/]+)/?", put_state_event, "state_event")
    router.register("PUT", R + r"/state/(?P<event_type>[^/]+)/(?P<state_key>[^/]+)", put_state_event,
                    "state_event")
    router.register("GET", R + r"/members", get_members, "members")
    router.register("GET", R + r"/joined_members", joined_members, "joined_members")
    router.register("POST", CLIENT_PREFIX + r"/join/(?P<room_id_or_alias>[^/]+)", join, "join")
    router.register("POST", CLIENT_PREFIX + r"/knock/(?P<room_id_or_alias>[^/]+)", knock, "knock")
    for action in ("join", "leave", "forget", "invite", "kick", "ban", "unban"):
        router.register("POST", R + f"/{action}", membership_servlet(action), f"room_{action}")
    router.register("GET", CLIENT_PREFIX + r"/joined_rooms", joined_rooms, "joined_rooms")
    router.register("GET", R + r"/messages", messages, "messages")
    router.register("GET", R + r"/context/(?P<event_id>[^/]+)", context, "context")
    router.register("GET", R + r"/event/(?P<event_id>[^/]+)", get_event, "event")
    router.register("PUT", R + r"/typing/(?P<user_id>[^/]+)", typing, "typing")
    router.register("GET", CLIENT_V1_PREFIX + r"/rooms/(?P<room_id>[^/]+)/timestamp_to_event", timestamp_to_event,
                    "timestamp_to_event")


"""The event authorization rules of room versions 10 and 11, and the power-level helpers handlers share.

Spec: Room versions -> "Room Version 10" / "Room Version 11" -> "Authorization rules" (the numbered steps cited
below are v11's; v10 differs only in step 1.4, ``creator`` required in ``m.room.create``, and in where the room
creator comes from), plus "Auth events selection" (Server-Server API) and ``m.room.power_levels`` defaults.

All functions are pure: the caller supplies the event's auth state (current state or the state its
``auth_events`` reference) as a mapping ``(event_type, state_key) -> Event``. Entries the rules do not look at
are ignored, so passing the full current room state is fine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from signedjson.sign import SignatureVerifyException, verify_signed_json
from unpaddedbase64 import decode_base64

from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS, RoomVersion
from homeserver.http.errors import AuthError

StateKey = tuple[str, str]

# Defaults for the named levels of m.room.power_levels (spec: m.room.power_levels content descriptions).
NAMED_LEVEL_DEFAULTS: dict[str, int] = {"invite": 0, "kick": 50, "ban": 50, "redact": 50}
# With no m.room.power_levels event, state_default is 0 rather than 50 (spec: m.room.power_levels).
STATE_DEFAULT_WITH_POWER_LEVELS = 50
CREATOR_LEVEL_WITHOUT_POWER_LEVELS = 100

_POWER_LEVEL_INT_KEYS = ("users_default", "events_default", "state_default", "ban", "redact", "kick", "invite")
_POWER_LEVEL_MAP_KEYS = ("events", "notifications")
_USER_ID_RE = re.compile(r"^@[^:]+:.+$")

CREATE = ("m.room.create", "")
POWER_LEVELS = ("m.room.power_levels", "")
JOIN_RULES = ("m.room.join_rules", "")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _server_of(user_id: str) -> str:
    return user_id.split(":", 1)[1] if ":" in user_id else ""


def _server_of_room(room_id: str) -> str:
    return room_id.split(":", 1)[1] if ":" in room_id else ""


def _int_or(value: Any, default: int) -> int:
    # Accepted v10/v11 power levels are integers by rule 9.1; the default only guards malformed state.
    return value if _is_int(value) else default


def _power_levels_content(auth_state: Mapping[StateKey, Event]) -> dict[str, Any] | None:
    event = auth_state.get(POWER_LEVELS)
    return event.content if event is not None else None


def get_room_creator(create_event: Event) -> str | None:
    """The room creator: v11 the ``sender`` of ``m.room.create``; v10 its ``content.creator``."""
    if create_event.room_version.implicit_room_creator:
        return create_event.sender
    creator = create_event.content.get("creator")
    return creator if isinstance(creator, str) else None


def get_user_power_level(user_id: str, auth_state: Mapping[StateKey, Event]) -> int:
    """A user's power level (int).

    With an ``m.room.power_levels`` event: ``users[user_id]``, else ``users_default`` (default 0).
    Without one: 100 for the room creator, 0 for everyone else.
    """
    content = _power_levels_content(auth_state)
    if content is not None:
        users = content.get("users")
        if isinstance(users, dict) and user_id in users:
            return _int_or(users[user_id], 0)
        return _int_or(content.get("users_default"), 0)
    create = auth_state.get(CREATE)
    if create is not None and get_room_creator(create) == user_id:
        return CREATOR_LEVEL_WITHOUT_POWER_LEVELS
    return 0


def get_send_level(
    event_type: str, state_key_is_not_none: bool, power_levels_content: Mapping[str, Any] | None
) -> int:
    """The power level needed to send an event of ``event_type``.

    ``events[event_type]`` if set, else ``state_default`` (50; 0 without a power-levels event) for state events,
    ``events_default`` (0) otherwise. ``power_levels_content`` is the ``m.room.power_levels`` content or ``None``.
    """
    if power_levels_content is None:
        return 0
    events = power_levels_content.get("events")
    if isinstance(events, dict) and event_type in events:
        return _int_or(events[event_type], 0)
    if state_key_is_not_none:
        return _int_or(power_levels_content.get("state_default"), STATE_DEFAULT_WITH_POWER_LEVELS)
    return _int_or(power_levels_content.get("events_default"), 0)


def get_named_level(auth_state: Mapping[StateKey, Event], name: str, default: int) -> int:
    """The level named ``name`` (``invite``, ``kick``, ``ban``, ``redact``) or ``default`` when unset.

    Use ``NAMED_LEVEL_DEFAULTS[name]`` for the spec's defaults (invite 0, kick/ban/redact 50).
    """
    content = _power_levels_content(auth_state)
    if content is None:
        return default
    return _int_or(content.get(name), default)


def _membership_of(user_id: str, auth_state: Mapping[StateKey, Event]) -> str:
    event = auth_state.get(("m.room.member", user_id))
    if event is None:
        return "leave"
    return event.membership or "leave"


def _join_rule(auth_state: Mapping[StateKey, Event]) -> str:
    event = auth_state.get(JOIN_RULES)
    if event is None:
        # No join rules event: treated as "invite" (as Synapse does) so invited users can still join.
        return "invite"
    join_rule = event.content.get("join_rule")
    return join_rule if isinstance(join_rule, str) else "invite"


def auth_types_for_event(
    room_version: RoomVersion, type: str, sender: str, state_key: str | None, content: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """The ``(type, state_key)`` pairs whose current state events become the event's ``auth_events``.

    Spec: Server-Server API -> "Auth events selection". ``m.room.create`` needs none; every other event needs the
    create event, the power levels, and the sender's membership; membership events also need the target's
    membership, the join rules (join/invite/knock), the third-party-invite by token, and the authorising user's
    membership for restricted joins. The result has no duplicates.
    """
    if type == "m.room.create":
        return []
    wanted: list[tuple[str, str]] = [CREATE, POWER_LEVELS, ("m.room.member", sender)]
    if type == "m.room.member" and state_key is not None:
        wanted.append(("m.room.member", state_key))
        membership = content.get("membership")
        if membership in ("join", "invite", "knock"):
            wanted.append(JOIN_RULES)
        if membership == "invite":
            third_party_invite = content.get("third_party_invite")
            if isinstance(third_party_invite, dict):
                signed = third_party_invite.get("signed")
                token = signed.get("token") if isinstance(signed, dict) else None
                if isinstance(token, str):
                    wanted.append(("m.room.third_party_invite", token))
        authoriser = content.get("join_authorised_via_users_server")
        if membership == "join" and room_version.restricted_join_rule and isinstance(authoriser, str):
            wanted.append(("m.room.member", authoriser))
    deduplicated: list[tuple[str, str]] = []
    for key in wanted:
        if key not in deduplicated:
            deduplicated.append(key)
    return deduplicated


def check_auth_event_selection(room_version: RoomVersion, event: Event, auth_events: Sequence[Event]) -> None:
    """Authorization rule 2: the event's ``auth_events`` themselves are well chosen.

    Rejects duplicate ``(type, state_key)`` entries, entries the selection algorithm would not pick, and a missing
    ``m.room.create``. (Rule 2.3, "auth events that were rejected", is the store's knowledge, not checked here.)

    Raises:
        AuthError: 403.
    """
    allowed = set(auth_types_for_event(room_version, event.type, event.sender, event.state_key, event.content))
    seen: set[tuple[str, str]] = set()
    for auth_event in auth_events:
        key = (auth_event.type, auth_event.state_key or "")
        if auth_event.state_key is None:
            raise AuthError(f"Auth event {auth_event.event_id} is not a state event")
        if key in seen:
            raise AuthError(f"Duplicate auth event for {key}")
        if key not in allowed:
            raise AuthError(f"Unexpected auth event for {key}")
        seen.add(key)
    if event.type != "m.room.create" and CREATE not in seen:
        raise AuthError("No m.room.create event in auth events")


def _check_create(room_version: RoomVersion, event: Event) -> None:
    # Rule 1.
    if event.prev_event_ids:
        raise AuthError("m.room.create must not have prev_events")
    if _server_of_room(event.room_id) != _server_of(event.sender):
        raise AuthError("m.room.create sender's server does not match the room ID's server")
    requested_version = event.content.get("room_version")
    if requested_version is not None and requested_version not in KNOWN_ROOM_VERSIONS:
        raise AuthError(f"Unknown room version {requested_version!r}")
    if not room_version.implicit_room_creator and not isinstance(event.content.get("creator"), str):
        raise AuthError("m.room.create content has no creator")


def _verify_third_party_invite(event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    """Rule 4.4.1: an invite backed by a signed third-party invite. Returns normally iff allowed."""
    target = event.state_key or ""
    if _membership_of(target, auth_state) == "ban":
        raise AuthError("Target user is banned")
    third_party_invite = event.content.get("third_party_invite")
    signed = third_party_invite.get("signed") if isinstance(third_party_invite, dict) else None
    if not isinstance(signed, dict):
        raise AuthError("third_party_invite has no signed block")
    mxid, token = signed.get("mxid"), signed.get("token")
    if not isinstance(mxid, str) or not isinstance(token, str):
        raise AuthError("third_party_invite.signed lacks mxid or token")
    if mxid != target:
        raise AuthError("third_party_invite mxid does not match the state_key")
    invite_event = auth_state.get(("m.room.third_party_invite", token))
    if invite_event is None:
        raise AuthError("No m.room.third_party_invite for this token")
    if invite_event.sender != event.sender:
        raise AuthError("Sender does not match the sender of the m.room.third_party_invite")
    public_keys: list[str] = []
    if isinstance(invite_event.content.get("public_key"), str):
        public_keys.append(invite_event.content["public_key"])
    for entry in invite_event.content.get("public_keys") or []:
        if isinstance(entry, dict) and isinstance(entry.get("public_key"), str):
            public_keys.append(entry["public_key"])
    signatures = signed.get("signatures")
    if not isinstance(signatures, dict):
        raise AuthError("third_party_invite.signed has no signatures")
    for signer, keys in signatures.items():
        if not isinstance(keys, dict):
            continue
        for key_id in keys:
            if not isinstance(key_id, str) or not key_id.startswith("ed25519:"):
                continue
            for public_key in public_keys:
                try:
                    verify_key = VerifyKey(decode_base64(public_key))
                    verify_key.alg, verify_key.version = key_id.split(":", 1)  # type: ignore[attr-defined]
                    verify_signed_json(signed, signer, verify_key)
                    return
                except (SignatureVerifyException, BadSignatureError, ValueError, TypeError):
                    continue
    raise AuthError("No valid signature on third_party_invite.signed")


def _check_membership(room_version: RoomVersion, event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    # Rule 4.
    target = event.state_key
    membership = event.membership
    if target is None or membership is None:
        raise AuthError("m.room.member needs a state_key and content.membership")
    sender = event.sender
    authoriser = event.content.get("join_authorised_via_users_server")
    if authoriser is not None:
        # Rule 4.2. Only the signature's presence can be checked without keys; the caller verifies it
        # cryptographically with verify_event_signature (for local events it is our own signature).
        if not isinstance(authoriser, str) or _server_of(authoriser) not in event.signatures:
            raise AuthError("join_authorised_via_users_server is not signed by that user's server")

    sender_membership = _membership_of(sender, auth_state)
    target_membership = _membership_of(target, auth_state)
    create = auth_state[CREATE]

    if membership == "join":
        # Rule 4.3.
        prev = event.prev_event_ids
        if len(prev) == 1 and prev[0] == create.event_id and get_room_creator(create) == target:
            return
        if sender != target:
            raise AuthError("Cannot force another user to join")
        if sender_membership == "ban":
            raise AuthError("User is banned from the room")
        join_rule = _join_rule(auth_state)
        if join_rule == "invite" or (join_rule == "knock" and room_version.knock_join_rule):
            if sender_membership in ("invite", "join"):
                return
            raise AuthError("Room is invite-only and the user is not invited")
        if (join_rule == "restricted" and room_version.restricted_join_rule) or (
            join_rule == "knock_restricted" and room_version.knock_restricted_join_rule
        ):
            if sender_membership in ("invite", "join"):
                return
            if not isinstance(authoriser, str):
                raise AuthError("Restricted join has no join_authorised_via_users_server")
            if _membership_of(authoriser, auth_state) != "join":
                raise AuthError("The authorising user is not joined to the room")
            invite_level = get_named_level(auth_state, "invite", NAMED_LEVEL_DEFAULTS["invite"])
            if get_user_power_level(authoriser, auth_state) < invite_level:
                raise AuthError("The authorising user cannot invite")
            return
        if join_rule == "public":
            return
        raise AuthError(f"Cannot join a room with join rule {join_rule!r}")

    if membership == "invite":
        # Rule 4.4.
        if "third_party_invite" in event.content:
            _verify_third_party_invite(event, auth_state)
            return
        if sender_membership != "join":
            raise AuthError("Inviter is not joined to the room")
        if target_membership in ("join", "ban"):
            raise AuthError(f"Target user is already {'joined' if target_membership == 'join' else 'banned'}")
        invite_level = get_named_level(auth_state, "invite", NAMED_LEVEL_DEFAULTS["invite"])
        if get_user_power_level(sender, auth_state) < invite_level:
            raise AuthError("Sender's power level is too low to invite")
        return

    if membership == "leave":
        # Rule 4.5.
        if sender == target:
            if sender_membership in ("invite", "join", "knock"):
                return
            raise AuthError(f"Cannot leave from membership {sender_membership!r}")
        if sender_membership != "join":
            raise AuthError("Sender is not joined to the room")
        sender_level = get_user_power_level(sender, auth_state)
        if target_membership == "ban" and sender_level < get_named_level(
            auth_state, "ban", NAMED_LEVEL_DEFAULTS["ban"]
        ):
            raise AuthError("Sender's power level is too low to unban")
        kick_level = get_named_level(auth_state, "kick", NAMED_LEVEL_DEFAULTS["kick"])
        if sender_level >= kick_level and get_user_power_level(target, auth_state) < sender_level:
            return
        raise AuthError("Sender's power level is too low to kick this user")

    if membership == "ban":
        # Rule 4.6.
        if sender_membership != "join":
            raise AuthError("Sender is not joined to the room")
        sender_level = get_user_power_level(sender, auth_state)
        ban_level = get_named_level(auth_state, "ban", NAMED_LEVEL_DEFAULTS["ban"])
        if sender_level >= ban_level and get_user_power_level(target, auth_state) < sender_level:
            return
        raise AuthError("Sender's power level is too low to ban this user")

    if membership == "knock" and room_version.knock_join_rule:
        # Rule 4.7.
        join_rule = _join_rule(auth_state)
        if not (join_rule == "knock" or (join_rule == "knock_restricted" and room_version.knock_restricted_join_rule)):
            raise AuthError("Room does not allow knocking")
        if sender != target:
            raise AuthError("Cannot knock on behalf of another user")
        # The spec lets an invited user knock (only ban and join are excluded); Synapse is stricter here.
        if sender_membership in ("ban", "join"):
            raise AuthError(f"Cannot knock with membership {sender_membership!r}")
        return

    raise AuthError(f"Unknown membership {membership!r}")


def _check_power_levels_content(content: Mapping[str, Any]) -> None:
    # Rules 9.1-9.3 (v10+: integers only, no numeric strings).
    for key in _POWER_LEVEL_INT_KEYS:
        if key in content and not _is_int(content[key]):
            raise AuthError(f"Power level '{key}' must be an integer")
    for key in _POWER_LEVEL_MAP_KEYS:
        if key in content:
            value = content[key]
            if not isinstance(value, dict) or not all(_is_int(v) for v in value.values()):
                raise AuthError(f"Power levels '{key}' must be an object of integers")
    if "users" in content:
        users = content["users"]
        if not isinstance(users, dict):
            raise AuthError("Power levels 'users' must be an object")
        for user_id, level in users.items():
            if not isinstance(user_id, str) or not _USER_ID_RE.match(user_id):
                raise AuthError(f"Power levels 'users' key {user_id!r} is not a user ID")
            if not _is_int(level):
                raise AuthError(f"Power level of {user_id} must be an integer")


def _check_power_levels_change(event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    # Rule 9.
    new = event.content
    _check_power_levels_content(new)
    old_event = auth_state.get(POWER_LEVELS)
    if old_event is None:
        return
    old = old_event.content
    sender = event.sender
    sender_level = get_user_power_level(sender, auth_state)

    for key in _POWER_LEVEL_INT_KEYS:
        old_value, new_value = old.get(key), new.get(key)
        if old_value == new_value:
            continue
        if _is_int(old_value) and old_value > sender_level:
            raise AuthError(f"Cannot change '{key}' from a level above your own")
        if _is_int(new_value) and new_value > sender_level:
            raise AuthError(f"Cannot set '{key}' above your own level")

    for key in _POWER_LEVEL_MAP_KEYS:
        old_map = old.get(key) if isinstance(old.get(key), dict) else {}
        new_map = new.get(key) if isinstance(new.get(key), dict) else {}
        for name in set(old_map) | set(new_map):
            old_value, new_value = old_map.get(name), new_map.get(name)
            if old_value == new_value:
                continue
            if _is_int(old_value) and old_value > sender_level:
                raise AuthError(f"Cannot change '{key}.{name}' from a level above your own")
            if _is_int(new_value) and new_value > sender_level:
                raise AuthError(f"Cannot set '{key}.{name}' above your own level")

    old_users = old.get("users") if isinstance(old.get("users"), dict) else {}
    new_users = new.get("users") if isinstance(new.get("users"), dict) else {}
    for user_id in set(old_users) | set(new_users):
        old_value, new_value = old_users.get(user_id), new_users.get(user_id)
        if old_value == new_value:
            continue
        if user_id != sender and _is_int(old_value) and old_value >= sender_level:
            raise AuthError(f"Cannot change the level of {user_id}, who is at or above your own level")
        if _is_int(new_value) and new_value > sender_level:
            raise AuthError(f"Cannot give {user_id} a level above your own")


def check_auth_rules(room_version: RoomVersion, event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    """Decide whether ``event`` is allowed by the authorization rules given the room state before it.

    Args:
        room_version: the room's version (10 or 11).
        event: the event to check.
        auth_state: ``(type, state_key) -> Event`` for the state the event is authorised against; entries the
            rules do not need are ignored. Must contain ``m.room.create`` for every event but the create event.

    Raises:
        AuthError: 403 ``M_FORBIDDEN`` with the reason, when the event is not allowed.

    Not decided here: whether a redaction may redact a particular event (the sender meeting the ``redact`` level,
    or redacting their own event) - see ``check_redaction_allowed``; cryptographic signature checks
    (``hashing.verify_event_signature``); rule 2's shape of the ``auth_events`` list (``check_auth_event_selection``).
    """
    if event.type == "m.room.create":
        _check_create(room_version, event)
        return

    create = auth_state.get(CREATE)
    if create is None:
        raise AuthError("No m.room.create event in the auth state")
    if event.room_id != create.room_id:
        raise AuthError("The m.room.create event belongs to another room")
    # Rule 3.
    if create.content.get("m.federate", True) is False and _server_of(event.sender) != _server_of(create.sender):
        raise AuthError("This room is not federated")

    if event.type == "m.room.member":
        _check_membership(room_version, event, auth_state)
        return

    # Rule 5.
    if _membership_of(event.sender, auth_state) != "join":
        raise AuthError(f"{event.sender} is not joined to the room")

    sender_level = get_user_power_level(event.sender, auth_state)
    if event.type == "m.room.third_party_invite":
        # Rule 6.
        if sender_level >= get_named_level(auth_state, "invite", NAMED_LEVEL_DEFAULTS["invite"]):
            return
        raise AuthError("Sender's power level is too low to invite")

    # Rule 7.
    required = get_send_level(event.type, event.is_state(), _power_levels_content(auth_state))
    if sender_level < required:
        raise AuthError(f"Sending {event.type} needs power level {required}; sender has {sender_level}")

    # Rule 8.
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("State keys starting with @ are reserved for that user")

    if event.type == "m.room.power_levels":
        _check_power_levels_change(event, auth_state)


def check_redaction_allowed(
    redaction: Event, redacted_sender: str | None, auth_state: Mapping[StateKey, Event]
) -> bool:
    """Whether ``redaction`` may take effect on an event sent by ``redacted_sender``.

    Spec: Client-Server API -> "Redactions" and Room versions v3+ "Handling redactions": allowed when the sender's
    level is at least ``redact`` (default 50), or when the redacted event was sent by a user on the same server as
    the redaction's sender. For clients of this server we apply the stricter Synapse-style rule: the same *user*.
    ``redacted_sender`` is ``None`` when the target event is unknown (then only the ``redact`` level counts).
    """
    if redacted_sender is not None and redacted_sender == redaction.sender:
        return True
    redact_level = get_named_level(auth_state, "redact", NAMED_LEVEL_DEFAULTS["redact"])
    return get_user_power_level(redaction.sender, auth_state) >= redact_level

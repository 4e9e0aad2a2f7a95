"""Checks on the content of events clients send, before the auth rules see them.

The auth rules (homeserver/events/auth.py) answer "may this sender do this?" with 403; a malformed
``m.room.power_levels`` or ``m.room.join_rules`` content is a bad request, not a refusal, so it gets 400
``M_BAD_JSON`` here first (Synapse's EventValidator draws the same line). Events the server builds itself do not
pass through here.
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical import MAX_PDU_SIZE, encode_canonical_json
from homeserver.http.errors import BadJsonError, InvalidParamError, TooLargeError

# Room for the PDU's own fields (IDs, hashes, signatures, prev/auth events) around the content.
PDU_OVERHEAD_BYTES = 2048

_JOIN_RULES = ("public", "invite", "knock", "restricted", "knock_restricted", "private")
_HISTORY_VISIBILITY = ("world_readable", "shared", "invited", "joined")
_STRING_FIELDS = {
    "m.room.name": "name",
    "m.room.topic": "topic",
    "m.room.encryption": "algorithm",
}


def validate_event_id(event_id: str, what: str = "event ID") -> None:
    """``$``-prefixed, at most 255 bytes; raises InvalidParamError (400 ``M_INVALID_PARAM``)."""
    if not event_id.startswith("$") or len(event_id.encode()) > 255 or len(event_id) < 2:
        raise InvalidParamError(f"{event_id!r} is not a valid {what}")


def validate_state_content(event_type: str, content: dict[str, Any]) -> None:
    """Shape checks for state events a client sends (``PUT /state``, ``createRoom`` ``initial_state``).

    Raises BadJsonError (400 ``M_BAD_JSON``) naming the bad field.
    """
    if event_type == "m.room.create":
        raise BadJsonError("m.room.create can only be sent by createRoom")
    if event_type == "m.room.power_levels":
        from homeserver.events.auth import AuthError, _check_power_levels_content

        try:
            _check_power_levels_content(content)
        except AuthError as e:
            raise BadJsonError(e.msg) from e
    elif event_type == "m.room.join_rules":
        if content.get("join_rule") not in _JOIN_RULES:
            raise BadJsonError(f"join_rule must be one of {', '.join(_JOIN_RULES)}")
        allow = content.get("allow", [])
        if not isinstance(allow, list) or not all(isinstance(a, dict) for a in allow):
            raise BadJsonError("allow must be a list of objects")
    elif event_type == "m.room.history_visibility":
        if content.get("history_visibility") not in _HISTORY_VISIBILITY:
            raise BadJsonError(f"history_visibility must be one of {', '.join(_HISTORY_VISIBILITY)}")
    elif event_type in _STRING_FIELDS:
        field = _STRING_FIELDS[event_type]
        if field in content and not isinstance(content[field], str):
            raise BadJsonError(f"'{field}' must be a string")
        if event_type == "m.room.encryption" and field not in content:
            raise BadJsonError("'algorithm' is required")


def validate_creation_content(content: dict[str, Any]) -> None:
    """Shape checks for ``createRoom``'s ``creation_content`` on the ``m.room.create`` fields the spec defines
    (``type`` a string, ``m.federate`` a boolean, ``predecessor`` an object with a string ``room_id`` and an
    optional string ``event_id``); other keys are the client's own. Spec: event schema ``m.room.create``.

    Raises BadJsonError (400 ``M_BAD_JSON``) naming the bad field.
    """
    if "type" in content and not isinstance(content["type"], str):
        raise BadJsonError("creation_content.type must be a string")
    if "m.federate" in content and not isinstance(content["m.federate"], bool):
        raise BadJsonError("creation_content.m.federate must be a boolean")
    if "predecessor" in content:
        predecessor = content["predecessor"]
        if not isinstance(predecessor, dict) or not isinstance(predecessor.get("room_id"), str):
            raise BadJsonError("creation_content.predecessor must be an object with a string room_id")
        if "event_id" in predecessor and not isinstance(predecessor["event_id"], str):
            raise BadJsonError("creation_content.predecessor.event_id must be a string")


def check_content_fits(content: dict[str, Any], what: str) -> None:
    """Refuse content that cannot fit in a 65536-byte event even before the event is built (413)."""
    size = len(encode_canonical_json(content))
    if size + PDU_OVERHEAD_BYTES > MAX_PDU_SIZE:
        raise TooLargeError(f"{what} is {size} bytes; an event may be at most {MAX_PDU_SIZE} bytes in all")

"""Build complete, hashed and signed PDUs for events this server creates.

Every path that creates an event (createRoom, send, state, membership, appservices, admin) goes through
``build_event`` so the limits and the format are enforced in one place.
Spec: Server-Server API -> "PDUs", "Size limits"; Room versions 10/11 -> "Event format".
"""

from __future__ import annotations

from typing import Any

from nacl.signing import SigningKey

from homeserver.events.canonical import (
    copy_json,
    CANONICALJSON_MAX_INT,
    MAX_PDU_SIZE,
    validate_canonical_json,
)
from homeserver.events.event import Event, share_pdu_strings
from homeserver.events.hashing import add_hashes_and_signatures_returning_id
from homeserver.events.room_versions import RoomVersion
from homeserver.http.errors import BadJsonError, TooLargeError

# Spec, "Size limits": these fields are each at most 255 bytes (UTF-8).
MAX_ID_FIELD_BYTES = 255


def check_id_field(name: str, value: Any) -> None:
    """``value`` must be a string of at most :data:`MAX_ID_FIELD_BYTES` UTF-8 bytes (spec, "Size limits": event
    types, state keys, IDs). Raises BadJsonError (400 ``M_BAD_JSON``) naming ``name``."""
    if not isinstance(value, str):
        raise BadJsonError(f"'{name}' must be a string")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadJsonError(f"'{name}' contains an unpaired UTF-16 surrogate") from None
    if len(encoded) > MAX_ID_FIELD_BYTES:
        raise BadJsonError(f"'{name}' is longer than {MAX_ID_FIELD_BYTES} bytes")


def _check_event_ids(name: str, values: Any) -> list[str]:
    if not isinstance(values, (list, tuple)):
        raise BadJsonError(f"'{name}' must be a list of event IDs")
    for value in values:
        check_id_field(name, value)
        if not value.startswith("$"):
            raise BadJsonError(f"'{name}' entry {value!r} is not an event ID")
    return list(values)


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str,
    type: str,
    sender: str,
    content: dict[str, Any],
    state_key: str | None = None,
    prev_event_ids: list[str],
    auth_event_ids: list[str],
    depth: int,
    origin_server_ts: int,
    server_name: str,
    signing_key: SigningKey,
    redacts: str | None = None,
    unsigned: dict[str, Any] | None = None,
) -> Event:
    """Create a signed PDU and wrap it in an ``Event`` whose ``event_id`` is its reference hash.

    The PDU holds ``auth_events``, ``content``, ``depth``, ``hashes``, ``origin_server_ts`` (ms), ``prev_events``,
    ``room_id``, ``sender``, ``signatures``, ``type``, ``state_key`` for state events, top-level ``redacts`` for v10
    redactions (v11 puts ``redacts`` into ``content``), and ``unsigned`` if given. It has no ``event_id`` field.
    The caller's ``content`` is copied, never modified.

    Raises:
        BadJsonError: 400 if ``content`` is not an object or not strict canonical JSON, if ``room_id``, ``type``,
            ``sender`` or ``state_key`` is over 255 bytes, if ``depth``/``origin_server_ts`` are not integers in
            range, or if ``redacts`` is given for an event that is not ``m.room.redaction``.
        TooLargeError: 413 ``M_TOO_LARGE`` if the signed PDU's canonical JSON exceeds 65536 bytes.
    """
    for name, value in (("room_id", room_id), ("type", type), ("sender", sender)):
        check_id_field(name, value)
    if state_key is not None:
        check_id_field("state_key", state_key)
    if not isinstance(content, dict):
        raise BadJsonError("Event content must be a JSON object")
    validate_canonical_json(content, "content")
    for name, value in (("depth", depth), ("origin_server_ts", origin_server_ts)):
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= CANONICALJSON_MAX_INT:
            raise BadJsonError(f"'{name}' must be a non-negative integer")
    if unsigned is not None:
        if not isinstance(unsigned, dict):
            raise BadJsonError("'unsigned' must be a JSON object")
        validate_canonical_json(unsigned, "unsigned")

    content = copy_json(content)
    pdu: dict[str, Any] = {
        "auth_events": _check_event_ids("auth_events", auth_event_ids),
        "content": content,
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": _check_event_ids("prev_events", prev_event_ids),
        "room_id": room_id,
        "sender": sender,
        "type": type,
    }
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if type != "m.room.redaction":
            raise BadJsonError("'redacts' is only valid on m.room.redaction events")
        check_id_field("redacts", redacts)
        if room_version.redacts_in_content:
            content["redacts"] = redacts
        else:
            pdu["redacts"] = redacts

    event_id = add_hashes_and_signatures_returning_id(room_version, pdu, server_name, signing_key)
    if unsigned:
        pdu["unsigned"] = copy_json(unsigned)

    event = Event(share_pdu_strings(pdu), room_version, event_id)
    size = len(event.canonical_json())
    if size > MAX_PDU_SIZE:
        raise TooLargeError(f"Event is {size} bytes as canonical JSON; the limit is {MAX_PDU_SIZE}")
    return event

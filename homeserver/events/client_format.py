"""Shaping events for clients (``ClientEvent``) and for federation, including ``event_fields`` filtering.

Spec: Client-Server API -> "Room Events" (``ClientEvent`` / ``ClientEventWithoutRoomID``), "Filtering"
(``event_fields``: dot-separated paths, ``\\`` escapes a literal ``.`` or ``\\``) and "Redactions".
"""

from __future__ import annotations

from typing import Any

from homeserver.events.canonical import copy_json
from homeserver.events.event import Event


def split_field_path(field: str) -> list[str]:
    """Split an ``event_fields`` entry on unescaped dots: ``content.m\\.relates_to`` -> ``["content", "m.relates_to"]``.

    ``\\.`` is a literal dot and ``\\\\`` a literal backslash; a backslash before any other character is kept.
    """
    parts: list[str] = []
    current: list[str] = []
    index = 0
    while index < len(field):
        char = field[index]
        if char == "\\" and index + 1 < len(field) and field[index + 1] in ".\\":
            current.append(field[index + 1])
            index += 2
            continue
        if char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
        index += 1
    parts.append("".join(current))
    return parts


def filter_event_fields(event_dict: dict[str, Any], fields: list[str]) -> dict[str, Any]:
    """Keep only the listed dotted paths of ``event_dict`` (a new dict; missing paths are skipped).

    A path through a non-object value is skipped. An empty ``fields`` list keeps nothing.
    """
    result: dict[str, Any] = {}
    for field in fields:
        path = split_field_path(field)
        source: Any = event_dict
        found = True
        for part in path:
            if isinstance(source, dict) and part in source:
                source = source[part]
            else:
                found = False
                break
        if not found:
            continue
        target = result
        for part in path[:-1]:
            existing = target.get(part)
            if not isinstance(existing, dict):
                existing = target[part] = {}
            target = existing
        target[path[-1]] = copy_json(source)
    return result


def serialize_event(
    event: Event,
    now_ms: int,
    *,
    event_format: str = "client",
    include_room_id: bool = True,
    event_fields: list[str] | None = None,
    unsigned_extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON a client (or another server) receives for ``event``.

    Args:
        event: the event (its PDU is not modified).
        now_ms: current time in ms; ``unsigned.age`` is ``now_ms - origin_server_ts``.
        event_format: ``"client"`` for ``ClientEvent`` (``content``, ``event_id``, ``origin_server_ts``,
            ``room_id`` (if ``include_room_id``), ``sender``, ``state_key`` for state events, ``type``, ``unsigned``,
            and ``redacts`` for redactions) or ``"federation"`` (the whole PDU plus ``event_id``).
        include_room_id: ``False`` for ``ClientEventWithoutRoomID`` (e.g. inside ``/sync`` rooms).
        event_fields: the filter's dotted paths to keep (``None`` keeps everything).
        unsigned_extra: per-request ``unsigned`` data such as ``prev_content``, ``redacted_because`` (already
            serialized), ``transaction_id``, ``membership``; it overrides ``internal_metadata["unsigned"]``.

    Raises:
        ValueError: unknown ``event_format``.
    """
    unsigned: dict[str, Any] = {}
    if event_format == "federation":
        result = event.get_pdu_json()
        pdu_unsigned = result.get("unsigned")
        if isinstance(pdu_unsigned, dict):
            unsigned.update(pdu_unsigned)
        result["event_id"] = event.event_id
        if not include_room_id:
            result.pop("room_id", None)
    elif event_format == "client":
        result = {
            "content": copy_json(event.content),
            "event_id": event.event_id,
            "origin_server_ts": event.origin_server_ts,
            "sender": event.sender,
            "type": event.type,
        }
        if include_room_id:
            result["room_id"] = event.room_id
        if event.is_state():
            result["state_key"] = event.state_key
        redacts = event.redacts
        if redacts is not None:
            # v11 keeps redacts in content; the top-level copy keeps clients written for v1-v10 working.
            result["redacts"] = redacts
    else:
        raise ValueError(f"Unknown event_format {event_format!r}")

    stored_unsigned = event.internal_metadata.get("unsigned")
    if isinstance(stored_unsigned, dict):
        unsigned.update(copy_json(stored_unsigned))
    if unsigned_extra:
        unsigned.update(unsigned_extra)
    unsigned["age"] = now_ms - event.origin_server_ts
    result["unsigned"] = unsigned

    if event_fields is not None:
        result = filter_event_fields(result, event_fields)
    return result

"""The ``Event`` class: a PDU dict plus its room version, event ID and the server's private metadata.

Spec: Server-Server API -> "PDUs" and Room versions 10/11 -> "Event format".
"""

from __future__ import annotations

import sys
from typing import Any

from homeserver.events.canonical import copy_json, encode_canonical_json
from homeserver.events.hashing import compute_event_id
from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import RoomVersion


_SHARED_STRING_KEYS = ("room_id", "sender", "type", "state_key")
_SHARED_ID_LIST_KEYS = ("auth_events", "prev_events")


def share_pdu_strings(pdu: dict[str, Any]) -> dict[str, Any]:
    """The PDU as an event keeps it: the strings events repeat interned (``sys.intern``: ``room_id``, ``sender``,
    ``type``, ``state_key`` and the IDs in ``auth_events``/``prev_events``, since every event of a room names the
    same few auth events), so a cached event shares them with every other event (about a fifth of its memory),
    in a new dict of the same items, sized for them (a dict from ``orjson.loads`` is over-allocated: 632 bytes
    instead of 464 for a membership event). Values are the same; anything that is not a string is left as it
    is; ``pdu`` itself is changed (the interned values) but no longer needed."""
    for key in _SHARED_STRING_KEYS:
        value = pdu.get(key)
        if type(value) is str:
            pdu[key] = sys.intern(value)
    for key in _SHARED_ID_LIST_KEYS:
        ids = pdu.get(key)
        if type(ids) is list:
            pdu[key] = [sys.intern(i) if type(i) is str else i for i in ids]
    return {key: value for key, value in pdu.items()}


class Event:
    """A persisted-or-about-to-be-persisted room event (PDU).

    Args:
        pdu: the PDU as a JSON dict (``auth_events``, ``content``, ``depth``, ``hashes``, ``origin_server_ts`` (ms),
            ``prev_events``, ``room_id``, ``sender``, ``signatures``, ``type``, optional ``state_key``, ``redacts``
            (v10 redactions), ``unsigned``). The Event keeps this dict; treat it and ``content`` as read-only.
        room_version: the rules of the event's room.
        event_id: the known event ID; if ``None`` it is computed once from the reference hash on first use.

    ``internal_metadata`` is a plain dict the server fills (``stream_ordering``, ``txn_id``, ``token_id``,
    ``outlier``, ``unsigned`` for client-visible unsigned data, ``redacted``...). It is never part of the PDU.
    """

    __slots__ = ("_pdu", "room_version", "_event_id", "internal_metadata", "_canonical")

    def __init__(self, pdu: dict[str, Any], room_version: RoomVersion, event_id: str | None = None) -> None:
        self._pdu = pdu
        self.room_version = room_version
        self._event_id = event_id
        self.internal_metadata: dict[str, Any] = {}
        self._canonical: bytes | None = None

    @property
    def event_id(self) -> str:
        """``$``-prefixed event ID (reference hash for v10/v11)."""
        if self._event_id is None:
            self._event_id = compute_event_id(self.room_version, self._pdu)
        return self._event_id

    @property
    def room_id(self) -> str:
        return self._pdu["room_id"]

    @property
    def type(self) -> str:
        return self._pdu["type"]

    @property
    def sender(self) -> str:
        return self._pdu["sender"]

    @property
    def state_key(self) -> str | None:
        """The state key, ``None`` for non-state (message) events. ``""`` is a valid state key."""
        return self._pdu.get("state_key")

    @property
    def content(self) -> dict[str, Any]:
        content = self._pdu.get("content")
        return content if isinstance(content, dict) else {}

    @property
    def origin_server_ts(self) -> int:
        """Milliseconds since the Unix epoch on the originating server."""
        return self._pdu["origin_server_ts"]

    @property
    def depth(self) -> int:
        return self._pdu["depth"]

    @property
    def prev_event_ids(self) -> list[str]:
        return list(self._pdu.get("prev_events", ()))

    @property
    def auth_event_ids(self) -> list[str]:
        return list(self._pdu.get("auth_events", ()))

    @property
    def signatures(self) -> dict[str, dict[str, str]]:
        signatures = self._pdu.get("signatures")
        return signatures if isinstance(signatures, dict) else {}

    @property
    def redacts(self) -> str | None:
        """For ``m.room.redaction``: the redacted event's ID (v11: ``content.redacts``; v10: top-level ``redacts``)."""
        if self._pdu.get("type") != "m.room.redaction":
            return None
        if self.room_version.redacts_in_content:
            value = self.content.get("redacts")
        else:
            value = self._pdu.get("redacts")
        return value if isinstance(value, str) else None

    @property
    def membership(self) -> str | None:
        """``content.membership`` of an ``m.room.member`` event, else ``None``."""
        if self._pdu.get("type") != "m.room.member":
            return None
        value = self.content.get("membership")
        return value if isinstance(value, str) else None

    def is_state(self) -> bool:
        """Whether this is a state event (has a ``state_key``, possibly ``""``)."""
        return "state_key" in self._pdu and self._pdu["state_key"] is not None

    def is_redacted(self) -> bool:
        """Whether the server has replaced this event's PDU by its redacted form."""
        return bool(self.internal_metadata.get("redacted"))

    def canonical_json(self, unsigned: dict[str, Any] | None = None) -> bytes:
        """The PDU as canonical JSON bytes; with ``unsigned``, that object replaces the PDU's ``unsigned``.

        Computed once per event for the plain PDU (the PDU is read-only), e.g. by the size check when the event
        is built and again when it is stored.
        """
        if unsigned:
            return encode_canonical_json({**self._pdu, "unsigned": unsigned})
        if self._canonical is None:
            self._canonical = encode_canonical_json(self._pdu)
        return self._canonical

    def forget_canonical_json(self) -> None:
        """Drop the canonical JSON kept by :meth:`canonical_json` (about as large as the PDU): called once the
        event is stored, so that an event held in the event cache keeps its PDU only."""
        self._canonical = None

    def get_pdu_json(self) -> dict[str, Any]:
        """A deep copy of the PDU (safe to mutate, e.g. to serialize or send over federation)."""
        return copy_json(self._pdu)

    def get_dict(self, key: str, default: Any = None) -> Any:
        """A read-only look at one top-level PDU field (no copy)."""
        return self._pdu.get(key, default)

    def __repr__(self) -> str:
        return (
            f"<Event {self._event_id or '?'} type={self._pdu.get('type')!r} "
            f"state_key={self._pdu.get('state_key')!r} sender={self._pdu.get('sender')!r}>"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Event) and self.event_id == other.event_id

    def __hash__(self) -> int:
        return hash(self.event_id)


def prune_event(event: Event) -> Event:
    """The redacted copy of ``event``: same event ID, pruned PDU, ``internal_metadata`` copied plus ``redacted``.

    Spec: Client-Server API -> "Redactions". The event ID stays the same because it is a hash of the redacted form.
    """
    pruned = Event(prune_event_dict(event.room_version, event._pdu), event.room_version, event.event_id)
    pruned.internal_metadata = dict(event.internal_metadata)
    pruned.internal_metadata["redacted"] = True
    return pruned

"""Turning stored events into what a particular client receives (ClientEvent JSON).

Adds per-request ``unsigned`` data: ``transaction_id`` for the device that sent the event (spec: "Transaction
identifiers": only to the sending device) and ``redacted_because`` for redacted events.
"""

from __future__ import annotations

from typing import Any

from homeserver.events import Event
from homeserver.events.client_format import serialize_event
from homeserver.http.auth import Requester


class EventSerializer:
    """Stored events -> ClientEvent JSON for one requester, adding ``unsigned.transaction_id`` for the sending device
    and ``redacted_because`` (spec: Client-Server API "Room Events", "Transaction identifiers").
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.event_store = hs.event_store

    def now_ms(self) -> int:
        """The clock's current time in milliseconds since the epoch (for ``unsigned.age``)."""
        return int(self.hs.clock.seconds() * 1000)

    async def serialize(self, events: list[Event], requester: Requester | None, *, include_room_id: bool = True,
                        event_format: str = "client", event_fields: list[str] | None = None,
                        bundle_relations: bool = True) -> list[dict[str, Any]]:
        """ClientEvent dicts for ``events`` as seen by ``requester`` (None: no per-device data)."""
        if not events:
            return []
        now = self.now_ms()
        redaction_ids = [e.internal_metadata["redacted_because"] for e in events
                         if "redacted_because" in e.internal_metadata]
        redactions = await self.event_store.get_events(redaction_ids) if redaction_ids else {}
        relations: dict[str, dict[str, Any]] = {}
        relations_handler = getattr(self.hs, "relations_handler", None)
        if bundle_relations and relations_handler is not None and requester is not None:
            relations = await relations_handler.get_bundled_aggregations(events, requester.user_id)
        out = []
        for event in events:
            extra: dict[str, Any] = {}
            if requester is not None and event.sender == requester.user_id:
                device = event.internal_metadata.get("device_id")
                txn_id = event.internal_metadata.get("txn_id")
                scope = requester.device_id or f"token:{requester.access_token_id}"
                if txn_id is not None and device == scope:
                    extra["transaction_id"] = txn_id
            redaction_id = event.internal_metadata.get("redacted_because")
            if redaction_id is not None and redaction_id in redactions:
                extra["redacted_because"] = serialize_event(redactions[redaction_id], now)
            if event.event_id in relations:
                extra["m.relations"] = relations[event.event_id]
            out.append(serialize_event(event, now, event_format=event_format, include_room_id=include_room_id,
                                       event_fields=event_fields, unsigned_extra=extra or None))
        return out

    async def serialize_one(self, event: Event, requester: Requester | None, **kw: Any) -> dict[str, Any]:
        """Serialize one event as :meth:`serialize` would (same keyword arguments); a ClientEvent dict."""
        return (await self.serialize([event], requester, **kw))[0]

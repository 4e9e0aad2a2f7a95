"""A persisted room on a gated SQLite database with an EventStore over it, for event-store unit tests."""

from __future__ import annotations

from typing import Any

from homeserver.events import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage.events import EventStore
from homeserver.streams import StreamPositions
from tests.unit.events.events_testlib import ALICE, Room
from tests.unit.gated_db_testlib import gated_db

V10 = KNOWN_ROOM_VERSIONS["10"]


class World:
    """A persisted room with one secret message, and helpers to persist more (as the event persister does)."""

    def __init__(self, tmp_path: Any) -> None:
        self.db = gated_db(tmp_path)
        self.store = EventStore(self.db, StreamPositions())
        self.room = Room(V10, ALICE, join_rule="public")
        self.position = 0
        for event in sorted(self.room.state.values(), key=lambda e: e.depth):
            self.persist(event, is_new_room=event.type == "m.room.create")
        self.secret = self.room.send("m.room.message", ALICE, {"msgtype": "m.text", "body": "password hunter3"})
        self.persist(self.secret)

    def persist(self, event: Event, is_new_room: bool = False) -> None:
        self.position += 1
        pos = self.position
        self.db.run_interaction_sync(
            "persist", lambda txn: self.store.persist_event_txn(txn, event, pos, is_new_room=is_new_room))
        self.store.after_persist(event, pos)

    def redaction(self) -> Event:
        return self.room.apply(self.room.make("m.room.redaction", ALICE, {}, redacts=self.secret.event_id))

    def persist_sql_only(self, event: Event) -> int:
        """The redaction's transaction commits; its after_persist (cache invalidation) has not run yet."""
        self.position += 1
        pos = self.position
        self.db.run_interaction_sync("persist", lambda txn: self.store.persist_event_txn(txn, event, pos))
        return pos

    def fresh_store(self) -> EventStore:
        """The same database seen by a freshly started process (empty caches)."""
        self.store = EventStore(self.db, StreamPositions())
        return self.store

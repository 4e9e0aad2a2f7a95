"""EventCreationHandler: when the persist of a lower stream position fails, events already persisted at higher
positions are announced at once, not only with the next successful event (homeserver/handlers/events.py)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from twisted.internet import defer

from homeserver.config import RateLimit
from homeserver.handlers.events import EventCreationHandler, txn_endpoint_scope
from homeserver.streams import StreamIdGenerator
from tests.unit.accounts_testlib import FakeReactor
from tests.unit.gated_db_testlib import gated_db, result, start


class _Notifier:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[str], list[str]]] = []

    def notify(self, stream: str, position: int, users: Any = (), rooms: Any = ()) -> None:
        self.calls.append((stream, position, list(users), list(rooms)))


class _EventStore:
    def __init__(self) -> None:
        self.stream_ids = StreamIdGenerator(0)
        self.persisted: list[tuple[str, int]] = []

    def persist_event_txn(self, txn: Any, event: Any, position: int, **kw: Any) -> None:
        pass

    def after_persist(self, event: Any, position: int) -> None:
        self.persisted.append((event.event_id, position))


class _RoomStore:
    def on_event_persisted(self, event: Any, position: int) -> None:
        pass

    def forget_new_room(self, room_id: str) -> None:
        pass


def _event(event_id: str) -> Any:
    return SimpleNamespace(event_id=event_id, type="m.room.message", state_key=None, room_id="!pager:test")


def _handler(tmp_path: Any) -> tuple[Any, _Notifier, _EventStore, EventCreationHandler]:
    """An EventCreationHandler on a gated database with recording fakes: (db, notifier, event store, handler)."""
    db = gated_db(tmp_path)
    notifier, store = _Notifier(), _EventStore()
    hs = SimpleNamespace(clock=FakeReactor(), db=db, event_store=store, room_store=_RoomStore(), notifier=notifier,
                         config=SimpleNamespace(rc_message=RateLimit(0, 0)))
    return db, notifier, store, EventCreationHandler(hs)


def test_failed_persist_announces_later_positions(tmp_path: Any) -> None:
    db, notifier, store, handler = _handler(tmp_path)
    db.hold = 2
    first = start(handler._persist(_event("$first"), [], False, None))  # position 1
    second = start(handler._persist(_event("$second"), [], False, None))  # position 2
    db.gates[1].deliver()  # position 2 commits, but 1 is still in flight: nothing announced yet
    assert result(second) is None
    assert store.persisted == [("$second", 2)]
    assert notifier.calls == []
    db.gates[0].fail(RuntimeError("disk full"))  # position 1 fails
    with pytest.raises(RuntimeError):
        result(first)
    assert store.stream_ids.current() == 2
    assert notifier.calls == [("events", 2, [], ["!pager:test"])]
    assert handler._pending_notify == []


def test_txn_endpoint_scope() -> None:
    assert txn_endpoint_scope("m.room.message", {"body": "x"}, None) == "send/m.room.message"
    # /redact: the target is in the path only; /send/m.room.redaction: the target is in the body.
    assert txn_endpoint_scope("m.room.redaction", {"reason": "r"}, "$a") == "redact/$a"
    assert txn_endpoint_scope("m.room.redaction", {"redacts": "$a"}, "$a") == "send/m.room.redaction"


def test_cancelled_persist_still_completes_before_the_caller_resumes(tmp_path: Any) -> None:
    """A caller cancelled mid-persist (its client went away) resumes only after the commit, the caches and the
    announcement: the event is never left committed but unknown to the in-memory room state."""
    db, notifier, store, handler = _handler(tmp_path)
    db.hold = 1
    persisting = handler._persist(_event("$sent"), [], False, None)
    box: dict[str, Any] = {}
    persisting.addBoth(lambda v: box.setdefault("result", v))
    persisting.cancel()
    assert box == {}  # held: the transaction is still in flight
    db.gates[0].deliver()
    assert store.persisted == [("$sent", 1)]
    assert notifier.calls == [("events", 1, [], ["!pager:test"])]
    assert store.stream_ids.current() == 1
    assert box["result"].check(defer.CancelledError)

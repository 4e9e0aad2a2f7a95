"""EventStore cache vs redactions, with the database's ordering forced: a read that started before a redaction's
invalidation must never put the unredacted copy (back) into the event cache (homeserver/storage/events.py)."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.events import Event
from homeserver.storage import events as events_module
from tests.unit.event_store_world import V10, World
from tests.unit.events.events_testlib import ALICE, Room
from tests.unit.gated_db_testlib import result as _result
from tests.unit.gated_db_testlib import start as _start

def _assert_redacted(event: Event, redaction: Event) -> None:
    assert event.content == {}
    assert event.internal_metadata["redacted_because"] == redaction.event_id


def test_get_events_fill_that_read_before_a_redaction_is_not_cached(tmp_path: Any) -> None:
    world = World(tmp_path)
    store = world.fresh_store()
    secret_id = world.secret.event_id
    world.db.hold = 1
    box = _start(store.get_events([secret_id]))
    world.db.gates[0].run_sql()  # reads the event before the redaction exists
    redaction = world.redaction()
    world.persist(redaction)  # commit, then after_persist invalidates the target
    world.db.gates[0].deliver()
    # The racing read began before the redaction: it may answer with what it read, but must not cache it.
    assert _result(box)[secret_id].content["body"] == "password hunter3"
    assert secret_id not in store._cache
    _assert_redacted(_result(_start(store.get_event(secret_id))), redaction)
    assert store._cache[secret_id].content == {}


def test_messages_read_between_redaction_commit_and_invalidation_is_not_cached(tmp_path: Any) -> None:
    # The reviewer's ordering (SQLite group commit): a /messages read runs on the database thread after the
    # redaction's SQL and is delivered after the redaction's after_persist, while the full copy was cached.
    world = World(tmp_path)
    store = world.fresh_store()
    secret_id = world.secret.event_id
    assert _result(_start(store.get_event(secret_id))).content["body"] == "password hunter3"  # cached
    redaction = world.redaction()
    world.db.hold = 1
    box = _start(store.get_room_events(world.room.room_id, 0, world.position + 1, 5, "b"))
    pos = world.persist_sql_only(redaction)
    world.db.gates[0].run_sql()
    store.after_persist(redaction, pos)
    world.db.gates[0].deliver()
    chunk = _result(box)
    assert chunk[0].event_id == redaction.event_id
    _assert_redacted(next(e for e in chunk if e.event_id == secret_id), redaction)
    _assert_redacted(store._cache[secret_id], redaction)
    _assert_redacted(_result(_start(store.get_event(secret_id))), redaction)


def test_messages_read_before_redaction_commit_delivered_after_invalidation(tmp_path: Any) -> None:
    # PostgreSQL ordering: the /messages read runs on another connection before the redaction commits and its
    # events come back after the invalidation.
    world = World(tmp_path)
    store = world.fresh_store()
    secret_id = world.secret.event_id
    world.db.hold = 2  # the ID query and the event fill
    box = _start(store.get_room_events(world.room.room_id, 0, world.position, 5, "b"))
    world.db.gates[0].deliver()  # IDs read; the event fill is now held back
    world.db.gates[1].run_sql()  # the fill reads the full copy
    redaction = world.redaction()
    world.persist(redaction)
    world.db.gates[1].deliver()
    assert [e.event_id for e in _result(box)][0] == secret_id
    assert secret_id not in store._cache
    _assert_redacted(_result(_start(store.get_event(secret_id))), redaction)


def test_full_copy_of_a_redacted_event_is_refused_by_the_cache(tmp_path: Any) -> None:
    world = World(tmp_path)
    store = world.store
    full_copy = world.secret
    redaction = world.redaction()
    world.persist(redaction)
    store._cache_put(full_copy)
    assert world.secret.event_id not in store._cache
    _assert_redacted(_result(_start(store.get_event(world.secret.event_id))), redaction)


def test_fill_older_than_forgotten_invalidations_is_not_cached(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(events_module, "_INVALIDATION_LOG_MAX", 3)
    world = World(tmp_path)
    store = world.fresh_store()
    secret_id = world.secret.event_id
    world.db.hold = 1
    box = _start(store.get_events([secret_id]))
    world.db.gates[0].run_sql()
    store.invalidate(secret_id)
    for i in range(5):  # pushes the invalidation of secret_id out of the bounded log
        store.invalidate(f"$other{i}")
    assert secret_id not in store._invalidated
    world.db.gates[0].deliver()
    assert secret_id in _result(box)
    assert secret_id not in store._cache
    # A fill that starts now is cached again.
    _result(_start(store.get_events([secret_id])))
    assert secret_id in store._cache


@pytest.mark.parametrize("invalidated_other", [False, True])
def test_unrelated_invalidation_does_not_block_fill(tmp_path: Any, invalidated_other: bool) -> None:
    world = World(tmp_path)
    store = world.fresh_store()
    secret_id = world.secret.event_id
    world.db.hold = 1
    box = _start(store.get_events([secret_id]))
    if invalidated_other:
        store.invalidate("$unrelated")
    world.db.gates[0].deliver()
    assert _result(box)[secret_id].content["body"] == "password hunter3"
    assert store._cache[secret_id].content["body"] == "password hunter3"


def test_redaction_naming_another_rooms_event_leaves_it_cached_in_full(tmp_path: Any) -> None:
    """A redaction only acts within its own room: one sent elsewhere naming the secret neither redacts it nor
    marks it as redacted for the cache (which would keep it out of the cache for good)."""
    world = World(tmp_path)
    store = world.store
    elsewhere = Room(V10, ALICE, join_rule="public", room_id="!elsewhere:test")
    assert elsewhere.room_id != world.room.room_id
    for event in sorted(elsewhere.state.values(), key=lambda e: e.depth):
        world.persist(event, is_new_room=event.type == "m.room.create")
    foreign = elsewhere.apply(elsewhere.make("m.room.redaction", ALICE, {}, redacts=world.secret.event_id))
    world.persist(foreign)
    assert world.secret.event_id not in store._redacted
    store._cache_put(world.secret)
    assert store._cache[world.secret.event_id].content["body"] == "password hunter3"
    fresh = world.fresh_store()
    assert _result(_start(fresh.get_event(world.secret.event_id))).content["body"] == "password hunter3"
    assert fresh._cache[world.secret.event_id].content["body"] == "password hunter3"

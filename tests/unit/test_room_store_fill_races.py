"""RoomStore caches vs concurrent joins, with the database ordering forced (homeserver/storage/rooms.py): a
fill that read before a membership change committed and returns after on_event_persisted ran must not be
stored; the joined-rooms cache is bounded (least recently read dropped first)."""

from __future__ import annotations

from typing import Any

from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.storage import rooms as rooms_module
from homeserver.storage.events import EventStore
from homeserver.storage.rooms import RoomStore
from homeserver.streams import StreamPositions
from tests.unit.events.events_testlib import ALICE, BOB, CAROL, Room
from tests.unit.gated_db_testlib import GatedDatabase, gated_db, result, start

V10 = KNOWN_ROOM_VERSIONS["10"]


class _World:
    def __init__(self, tmp_path: Any, room_id: str = "!room:test") -> None:
        self.db: GatedDatabase = gated_db(tmp_path)
        self.events = EventStore(self.db, StreamPositions())
        self.position = 0
        self.rooms = RoomStore(self.db, self.events)
        self.room = self.new_room(room_id)

    def new_room(self, room_id: str) -> Room:
        room = Room(V10, ALICE, join_rule="public")
        room.room_id = room_id
        # Room() built its first events under its default ID: rebuild them for this one.
        room.state.clear()
        room.last, room.depth = [], 0
        for etype, content, skey in (("m.room.create", {"room_version": "10", "creator": ALICE}, ""),
                                     ("m.room.member", {"membership": "join"}, ALICE),
                                     ("m.room.join_rules", {"join_rule": "public"}, "")):
            self.persist(room.send(etype, ALICE, content, skey), is_new_room=etype == "m.room.create")
        return room

    def persist(self, event: Any, is_new_room: bool = False) -> None:
        self.position += 1
        pos = self.position
        self.db.run_interaction_sync(
            "persist", lambda txn: self.events.persist_event_txn(txn, event, pos, is_new_room=is_new_room))
        self.events.after_persist(event, pos)
        self.rooms.on_event_persisted(event, pos)

    def join(self, user_id: str, room: Room | None = None) -> None:
        room = room or self.room
        self.persist(room.send("m.room.member", user_id, {"membership": "join"}, user_id))


def test_rooms_for_user_fill_racing_a_join_is_not_cached(tmp_path: Any) -> None:
    world = _World(tmp_path)
    world.db.hold = 1
    box = start(world.rooms.get_rooms_for_user(BOB))
    world.db.gates[0].run_sql()  # reads Bob's rooms before his join commits
    world.join(BOB)  # commit + on_event_persisted (no cached entry for Bob to patch yet)
    world.db.gates[0].deliver()
    assert result(box) == frozenset()  # what it read, once
    assert BOB not in world.rooms._user_rooms
    assert result(start(world.rooms.get_rooms_for_user(BOB))) == frozenset({world.room.room_id})
    assert world.rooms._user_rooms[BOB] == frozenset({world.room.room_id})
    assert world.rooms._user_room_fills._inflight == {}


def test_rooms_for_user_fill_overlapping_a_join_then_cached_and_patched(tmp_path: Any) -> None:
    world = _World(tmp_path)
    world.db.hold = 1
    box = start(world.rooms.get_rooms_for_user(BOB))
    world.join(BOB, world.new_room("!other:test"))  # Bob joins another room before the read's SQL runs
    world.db.gates[0].deliver()
    # The join's cache update ran while the fill was in flight: not stored even though it read after the commit.
    assert result(box) == frozenset({"!other:test"})
    assert BOB not in world.rooms._user_rooms
    assert result(start(world.rooms.get_rooms_for_user(BOB))) == frozenset({"!other:test"})
    # Stored now; later joins patch the cached set.
    world.join(BOB)
    assert world.rooms._user_rooms[BOB] == frozenset({"!other:test", world.room.room_id})


def test_unrelated_join_does_not_block_rooms_for_user_fill(tmp_path: Any) -> None:
    world = _World(tmp_path)
    world.db.hold = 1
    box = start(world.rooms.get_rooms_for_user(ALICE))
    world.join(CAROL)
    world.db.gates[0].deliver()
    assert result(box) == frozenset({world.room.room_id})
    assert world.rooms._user_rooms[ALICE] == frozenset({world.room.room_id})


def test_room_fill_racing_a_join_is_not_cached(tmp_path: Any) -> None:
    world = _World(tmp_path)
    world.rooms = RoomStore(world.db, world.events)  # a fresh process: nothing of the room cached
    world.db.hold = 1
    box = start(world.rooms.get_users_in_room(world.room.room_id))
    world.db.gates[0].run_sql()  # the room's state is read before Bob's join commits
    world.join(BOB)
    world.db.gates[0].deliver()
    assert result(box) == frozenset({ALICE})
    assert world.room.room_id not in world.rooms._rooms
    assert result(start(world.rooms.get_users_in_room(world.room.room_id))) == frozenset({ALICE, BOB})
    assert result(start(world.rooms.get_membership(world.room.room_id, BOB))) == "join"
    latest = result(start(world.rooms.get_latest_event(world.room.room_id)))
    assert latest[0] == world.room.last[0]
    assert world.rooms._room_fills._inflight == {}


def test_user_rooms_cache_is_bounded_lru(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(rooms_module, "_USER_ROOMS_CACHE_MAX", 2)
    world = _World(tmp_path)
    world.join(BOB)
    for user in (ALICE, BOB):
        result(start(world.rooms.get_rooms_for_user(user)))
    result(start(world.rooms.get_rooms_for_user(ALICE)))  # Alice is now the most recently read
    assert result(start(world.rooms.get_rooms_for_user(CAROL))) == frozenset()
    assert list(world.rooms._user_rooms) == [ALICE, CAROL]
    # An evicted user is read again from the database, correctly.
    assert result(start(world.rooms.get_rooms_for_user(BOB))) == frozenset({world.room.room_id})
    assert len(world.rooms._user_rooms) == 2

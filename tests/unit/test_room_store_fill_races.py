"""RoomStore caches vs concurrent joins, with the database ordering forced (homeserver/storage/rooms.py): a
fill that read before a membership change committed and returns after on_event_persisted ran must not be
stored; the joined-rooms and current-state caches are bounded (least recently read dropped first)."""

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


def test_room_cache_is_bounded_lru_and_keeps_a_room_being_created(tmp_path: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(rooms_module, "_ROOM_CACHE_MAX", 2)
    world = _World(tmp_path, "!r1:test")
    r2, r3 = world.new_room("!r2:test"), world.new_room("!r3:test")
    members = lambda room_id: result(start(world.rooms.get_users_in_room(room_id)))  # noqa: E731
    for room_id in ("!r1:test", "!r2:test", "!r1:test"):  # r1 is now the most recently read
        assert members(room_id) == frozenset({ALICE})
    assert members("!r3:test") == frozenset({ALICE})
    assert list(world.rooms._rooms) == ["!r1:test", "!r3:test"]
    # A change while a room is not cached is there when it is read again from the database.
    world.join(BOB, r2)
    assert members("!r2:test") == frozenset({ALICE, BOB})
    assert list(world.rooms._rooms) == ["!r3:test", "!r2:test"]
    # A cached room follows the events persisted after it was read.
    world.join(CAROL, r3)
    assert world.rooms._rooms["!r3:test"].joined == {ALICE, CAROL}
    # A room being created (nothing persisted yet, nothing to reload it from) is never the one dropped.
    world.rooms.new_room("!new:test", V10)
    for room_id in ("!r1:test", "!r2:test", "!r3:test"):
        members(room_id)
    assert list(world.rooms._rooms) == ["!new:test", "!r3:test"]  # the least recently read, yet kept
    assert result(start(world.rooms.get_room_version("!new:test"))) is V10
    # Once its create event is persisted it is an ordinary entry, dropped when least recently read.
    new = world.new_room("!new:test")
    assert world.rooms._rooms["!new:test"].latest_event_id == new.last[0]
    members("!r1:test")  # the version read above made it the most recently read: r3 goes
    assert list(world.rooms._rooms) == ["!new:test", "!r1:test"]
    members("!r3:test")
    assert list(world.rooms._rooms) == ["!r1:test", "!r3:test"]
    assert members("!new:test") == frozenset({ALICE})


def test_users_in_the_same_rooms_share_one_cached_set_and_each_follows_their_own_joins(tmp_path: Any) -> None:
    world = _World(tmp_path)
    world.join(BOB)
    world.join(CAROL)
    sets = {u: result(start(world.rooms.get_rooms_for_user(u))) for u in (ALICE, BOB, CAROL)}
    assert sets[ALICE] == sets[BOB] == sets[CAROL] == frozenset({world.room.room_id})
    assert sets[ALICE] is sets[BOB] is sets[CAROL]  # one object for the three entries
    other = world.new_room("!other:test")  # Alice creates and joins it
    world.join(BOB, other)
    both = frozenset({world.room.room_id, other.room_id})
    assert world.rooms._user_rooms[ALICE] == world.rooms._user_rooms[BOB] == both
    assert world.rooms._user_rooms[ALICE] is world.rooms._user_rooms[BOB]
    assert world.rooms._user_rooms[CAROL] == frozenset({world.room.room_id})  # unchanged by the others' joins
    world.persist(other.send("m.room.member", BOB, {"membership": "leave"}, BOB))
    assert world.rooms._user_rooms[BOB] == frozenset({world.room.room_id})
    assert world.rooms._user_rooms[BOB] is world.rooms._user_rooms[CAROL]
    assert result(start(world.rooms.get_rooms_for_user(ALICE))) == both

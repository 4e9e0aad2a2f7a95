"""DeviceListStore reads membership events only of the given rooms and says when it had to stop; the handler then
reports every user the client shares a room with as changed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from homeserver.handlers.e2e_keys import E2EKeysHandler
from homeserver.storage.device_lists import DeviceListStore
from homeserver.streams import StreamPositions, StreamToken
from tests.unit.accounts_testlib import run, sqlite_db


def _store_with_memberships(rows: list[tuple[str, str, str, int]]) -> DeviceListStore:
    db = sqlite_db()

    def _txn(txn: Any) -> None:
        for room_id, user_id, membership, so in rows:
            txn.execute("INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership,"
                        " stream_ordering) VALUES (?, ?, ?, ?, ?, ?)",
                        (f"$m{so}", user_id, user_id, room_id, membership, so))

    db.run_interaction_sync("seed", _txn)
    db.run_read = db.run_interaction  # type: ignore[method-assign]  # same thread: no reactor in unit tests
    return DeviceListStore(db, StreamPositions())


ROWS = [("!ops:t", "@a:t", "join", 1), ("!other:t", "@x:t", "join", 2), ("!ops:t", "@b:t", "join", 3),
        ("!other:t", "@y:t", "leave", 4), ("!ops:t", "@c:t", "join", 5), ("!ops:t", "@b:t", "leave", 6)]


def test_only_the_given_rooms_in_stream_order() -> None:
    store = _store_with_memberships(ROWS)
    rows, truncated = run(store.get_membership_changes_in_rooms({"!ops:t"}, 1, 6))
    assert rows == [("!ops:t", "@b:t", "join"), ("!ops:t", "@c:t", "join"), ("!ops:t", "@b:t", "leave")]
    assert truncated is False
    assert run(store.get_membership_changes_in_rooms(set(), 0, 6)) == ([], False)
    assert run(store.get_user_membership_changes("@b:t", 0, 6)) == [("!ops:t", "join"), ("!ops:t", "leave")]


def test_truncation_is_reported() -> None:
    store = _store_with_memberships(ROWS)
    rows, truncated = run(store.get_membership_changes_in_rooms({"!ops:t", "!other:t"}, 0, 6, limit=4))
    assert truncated is True and len(rows) == 4
    assert run(store.get_membership_changes_in_rooms({"!ops:t", "!other:t"}, 0, 6, limit=6))[1] is False


def test_truncated_range_reports_everyone_sharing_a_room() -> None:
    store = _store_with_memberships(ROWS)

    async def no_device_changes(from_id: int, to_id: int) -> set[str]:
        return set()

    async def truncated_rooms(room_ids: Any, from_ordering: int, to_ordering: int) -> Any:
        return await store.get_membership_changes_in_rooms(room_ids, from_ordering, to_ordering, limit=1)

    async def share(user_id: str) -> set[str]:
        return {"@a:t", "@c:t", "@d:t"}

    async def in_room(room_id: str) -> frozenset[str]:
        return frozenset()

    device_lists = SimpleNamespace(get_users_changed_between=no_device_changes,
                                   get_membership_changes_in_rooms=truncated_rooms)
    room_store = SimpleNamespace(get_users_who_share_room_with=share, get_last_membership_stream=lambda: 6,
                                 get_users_in_room=in_room)
    handler = SimpleNamespace(hs=SimpleNamespace(room_store=room_store), device_lists=device_lists)
    since, now = StreamToken(events=1), StreamToken(events=6)
    out = run(E2EKeysHandler.get_device_list_changes(handler, "@a:t", since, now,  # type: ignore[arg-type]
                                                     {"!ops:t"}, set(), set()))
    # Only @b:t's join fitted in the limit; @c:t and @d:t come from "everyone sharing a room".
    assert out == {"changed": ["@a:t", "@c:t", "@d:t"], "left": []}

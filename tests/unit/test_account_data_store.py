"""AccountDataStore: stream positions, get_updated_account_data ranges, notifier calls, tag read-modify-write,
and FilterStore IDs."""

from typing import Any

from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.filters import FilterStore
from homeserver.streams import StreamPositions
from tests.unit.accounts_testlib import run, sqlite_db


class RecordingNotifier:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, list[str]]] = []

    def notify(self, stream: str, position: int, users: Any = (), rooms: Any = ()) -> None:
        self.calls.append((stream, position, list(users)))


def make_store(db: Any = None) -> tuple[AccountDataStore, RecordingNotifier, StreamPositions]:
    notifier, positions = RecordingNotifier(), StreamPositions()
    return AccountDataStore(db or sqlite_db(), notifier, positions), notifier, positions


def test_positions_and_ranges() -> None:
    store, notifier, positions = make_store()
    p1 = run(store.add_account_data("@a:x", "", "m.direct", {"@b:x": ["!r:x"]}))
    p2 = run(store.add_account_data("@a:x", "!r:x", "m.tag", {"tags": {"u.work": {}}}))
    p3 = run(store.add_account_data("@b:x", "", "m.direct", {}))
    p4 = run(store.add_account_data("@a:x", "", "m.direct", {"@c:x": ["!s:x"]}))
    assert [p1, p2, p3, p4] == [1, 2, 3, 4]
    assert positions.current_token().account_data == 4
    assert notifier.calls == [("account_data", 1, ["@a:x"]), ("account_data", 2, ["@a:x"]),
                              ("account_data", 3, ["@b:x"]), ("account_data", 4, ["@a:x"])]
    everything = run(store.get_updated_account_data("@a:x", 0, 4))
    assert everything == ({"m.direct": {"@c:x": ["!s:x"]}}, {"!r:x": {"m.tag": {"tags": {"u.work": {}}}}})
    # from exclusive, to inclusive
    assert run(store.get_updated_account_data("@a:x", 2, 4)) == ({"m.direct": {"@c:x": ["!s:x"]}}, {})
    assert run(store.get_updated_account_data("@a:x", 1, 2)) == ({}, {"!r:x": {"m.tag": {"tags": {"u.work": {}}}}})
    assert run(store.get_updated_account_data("@a:x", 4, 4)) == ({}, {})
    assert run(store.get_account_data("@a:x", "", "m.direct")) == {"@c:x": ["!s:x"]}
    assert run(store.get_account_data("@a:x", "!r:x", "m.direct")) is None


def test_positions_continue_after_restart() -> None:
    db = sqlite_db()
    store, _, _ = make_store(db)
    run(store.add_account_data("@a:x", "", "t", {}))
    run(store.add_account_data("@a:x", "", "u", {}))
    again, _, positions = make_store(db)
    assert positions.current_token().account_data == 2
    assert run(again.add_account_data("@a:x", "", "t", {"v": 2})) == 3


def test_update_account_data_read_modify_write() -> None:
    store, _, _ = make_store()

    def add(tag: str) -> Any:
        return lambda old: {"tags": {**((old or {}).get("tags") or {}), tag: {}}}

    run(store.update_account_data("@a:x", "!r:x", "m.tag", add("one")))
    pos, content = run(store.update_account_data("@a:x", "!r:x", "m.tag", add("two")))
    assert pos == 2 and content == {"tags": {"one": {}, "two": {}}}
    assert store._locks == {}


def test_filter_ids_per_user_and_dedup() -> None:
    store = FilterStore(sqlite_db())
    a0 = run(store.add_filter("@a:x", {"room": {"timeline": {"limit": 1}}}))
    a1 = run(store.add_filter("@a:x", {"presence": {"types": []}}))
    b0 = run(store.add_filter("@b:x", {"presence": {"types": []}}))
    assert (a0, a1, b0) == (0, 1, 0)
    assert run(store.add_filter("@a:x", {"room": {"timeline": {"limit": 1}}})) == a0
    assert run(store.get_filter("@a:x", "1")) == {"presence": {"types": []}}
    for bad in ("2", "x", "-1", "1.0", " 1"):
        assert run(store.get_filter("@a:x", bad)) is None

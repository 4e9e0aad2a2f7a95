"""AccountDataStore: stream positions, get_updated_account_data ranges, notifier calls, tag read-modify-write,
and FilterStore IDs."""

from typing import Any

import pytest

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


def test_load_filter_shares_one_parsed_filter_per_text() -> None:
    """Users storing the same filter share one parsed Filter (memory: /sync keeps it per request); different
    filters, inline filters and unknown IDs behave as before."""
    from types import SimpleNamespace

    from homeserver.handlers.filtering import NO_FILTER, load_filter
    from homeserver.http.errors import InvalidParamError, NotFoundError

    store = FilterStore(sqlite_db())
    hs = SimpleNamespace(filter_store=store)
    loop = {"room": {"timeline": {"limit": 200}, "state": {"lazy_load_members": True}}}
    ids = {u: str(run(store.add_filter(u, dict(loop)))) for u in ("@a:x", "@b:x", "@c:x")}
    other = str(run(store.add_filter("@a:x", {"room": {"timeline": {"limit": 3}}})))
    shared = run(load_filter(hs, "@a:x", ids["@a:x"]))
    assert shared.room_timeline_limit == 200 and shared.lazy_load_members
    assert run(load_filter(hs, "@b:x", ids["@b:x"])) is shared
    assert run(load_filter(hs, "@c:x", ids["@c:x"])) is shared
    distinct = run(load_filter(hs, "@a:x", other))
    assert distinct is not shared and distinct.room_timeline_limit == 3
    # another user's filter ID is not yours
    with pytest.raises(NotFoundError):
        run(load_filter(hs, "@b:x", other))
    inline = '{"room":{"timeline":{"limit":7}}}'
    first = run(load_filter(hs, "@a:x", inline))
    assert first.room_timeline_limit == 7 and run(load_filter(hs, "@b:x", inline)) is first
    with pytest.raises(InvalidParamError):
        run(load_filter(hs, "@a:x", '{"room":'))
    assert run(load_filter(hs, "@a:x", None)) is NO_FILTER and NO_FILTER.room_timeline_limit == 10
    # the stored JSON handed out by GET /filter is a fresh dict each time
    got = run(store.get_filter("@a:x", ids["@a:x"]))
    got["room"]["timeline"]["limit"] = 1
    assert run(store.get_filter("@a:x", ids["@a:x"])) == loop

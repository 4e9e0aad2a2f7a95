"""The per-(user, room) unread-count cache of PushHandler stays exact while queries and new events interleave."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer

from homeserver.handlers.push import PushHandler, _Prepared, thread_id_of
from homeserver.streams import StreamIdGenerator

ROOM = "!r:test"
BOB = "@bob:test"
ALICE = "@alice:test"


class FakeStore:
    """get_unread_counts answers through Deferreds the test fires, so it can interleave events."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int, defer.Deferred]] = []

    def get_unread_counts(self, user_id: str, room_id: str, upto: int) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.calls.append((user_id, room_id, upto, d))
        return d


def make_handler(position: int) -> tuple[PushHandler, FakeStore]:
    store = FakeStore()
    hs = SimpleNamespace(
        push_store=store,
        room_store=None,
        event_store=SimpleNamespace(stream_ids=StreamIdGenerator(position)),
        event_creation_handler=SimpleNamespace(add_persist_hook=lambda hook: None),
    )
    return PushHandler(hs), store


def persisted(handler: PushHandler, stream_ordering: int, highlight: int = 0, thread: str = "main",
              sender: str = ALICE) -> None:
    event = SimpleNamespace(room_id=ROOM, sender=sender)
    handler.after_persist(event, stream_ordering, _Prepared(thread, [(BOB, highlight, '["notify"]')], []))


def counts_of(handler: PushHandler, threads: bool = False) -> defer.Deferred:
    return defer.ensureDeferred(handler.get_unread_counts(BOB, ROOM, threads))


def result(d: defer.Deferred) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "not finished"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_events_persisted_during_a_query_are_counted_once() -> None:
    handler, store = make_handler(10)
    pending = counts_of(handler)
    (_, _, upto, d) = store.calls[0]
    assert upto == 10
    persisted(handler, 11, highlight=1)  # committed after the query's bound: not in its rows
    d.callback({"main": (2, 0)})  # two actions at or below 10
    assert result(pending) == {"unread_notifications": {"notification_count": 3, "highlight_count": 1}}
    persisted(handler, 12)
    again = counts_of(handler)
    assert len(store.calls) == 1  # served from the cache
    assert result(again) == {"unread_notifications": {"notification_count": 4, "highlight_count": 1}}


def test_read_position_change_during_a_query_is_not_cached() -> None:
    handler, store = make_handler(5)
    pending = counts_of(handler)
    handler.invalidate_counts(BOB, ROOM)  # a receipt committed while the query ran
    store.calls[0][3].callback({"main": (1, 0)})
    result(pending)
    fresh = counts_of(handler)
    assert len(store.calls) == 2
    store.calls[1][3].callback({})
    assert result(fresh) == {"unread_notifications": {"notification_count": 0, "highlight_count": 0}}


def test_own_message_zeroes_only_that_threads_cached_count() -> None:
    handler, store = make_handler(5)
    first = counts_of(handler, threads=True)
    store.calls[0][3].callback({"main": (3, 0), "$root": (2, 1)})
    result(first)
    persisted(handler, 6, sender=BOB)  # Bob sent in the main timeline: his main read position moved to 6
    assert result(counts_of(handler, threads=True)) == {
        "unread_notifications": {"notification_count": 0, "highlight_count": 0},
        "unread_thread_notifications": {"$root": {"notification_count": 2, "highlight_count": 1}},
    }
    persisted(handler, 7)  # Alice's next message counts again
    persisted(handler, 8, sender=BOB, thread="$root")  # Bob answered in the thread
    assert result(counts_of(handler, threads=True)) == {
        "unread_notifications": {"notification_count": 1, "highlight_count": 0},
        "unread_thread_notifications": {},
    }
    assert len(store.calls) == 1  # all of it from the cached entry


def test_own_message_during_a_query_is_not_cached() -> None:
    handler, store = make_handler(5)
    pending = counts_of(handler)
    persisted(handler, 6, sender=BOB)
    store.calls[0][3].callback({"main": (3, 0)})  # read before Bob's read position moved
    result(pending)
    again = counts_of(handler)
    assert len(store.calls) == 2
    store.calls[1][3].callback({})
    assert result(again) == {"unread_notifications": {"notification_count": 0, "highlight_count": 0}}


def test_thread_counts_split_by_thread() -> None:
    handler, store = make_handler(7)
    pending = counts_of(handler, threads=True)
    store.calls[0][3].callback({"main": (1, 0), "$root": (2, 1)})
    assert result(pending) == {
        "unread_notifications": {"notification_count": 1, "highlight_count": 0},
        "unread_thread_notifications": {"$root": {"notification_count": 2, "highlight_count": 1}},
    }
    persisted(handler, 8, thread="$other")
    assert result(counts_of(handler, threads=True))["unread_thread_notifications"] == {
        "$root": {"notification_count": 2, "highlight_count": 1},
        "$other": {"notification_count": 1, "highlight_count": 0},
    }
    assert result(counts_of(handler)) == {"unread_notifications": {"notification_count": 4, "highlight_count": 1}}


def test_thread_id_of() -> None:
    def ev(content: dict[str, Any]) -> Any:
        return SimpleNamespace(content=content)

    assert thread_id_of(ev({"body": "x"})) == "main"  # type: ignore[arg-type]
    assert thread_id_of(ev({"m.relates_to": {"rel_type": "m.thread", "event_id": "$t"}})) == "$t"  # type: ignore[arg-type]
    assert thread_id_of(ev({"m.relates_to": {"rel_type": "m.replace", "event_id": "$t"}})) == "main"  # type: ignore[arg-type]

"""Unread counts stay exact when event transactions commit out of stream order, and the sender's power level
for ``sender_notification_permission`` follows the room version's creator rule."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer

from homeserver.events.room_versions import ROOM_VERSION_10, ROOM_VERSION_11
from homeserver.handlers.push import PushHandler, _Prepared
from homeserver.streams import StreamIdGenerator
from tests.unit.push.test_push_unread_cache import BOB, ROOM, counts_of, make_handler, persisted, result


def _counts(n: int, h: int = 0) -> dict[str, Any]:
    return {"unread_notifications": {"notification_count": n, "highlight_count": h}}


def test_event_committed_above_a_lower_in_flight_one_is_counted_by_a_later_fill() -> None:
    handler, store = make_handler(10)
    ids = handler.event_store.stream_ids
    a, b = ids.allocate(), ids.allocate()  # 11 and 12
    persisted(handler, b, highlight=1)  # B commits and is announced first
    ids.mark_done(b)
    assert ids.current() == 10  # A still in flight
    pending = counts_of(handler)  # a fill starting now reads only up to 10
    assert store.calls[0][2] == 10
    store.calls[0][3].callback({"main": (2, 0)})
    assert result(pending) == _counts(3, 1)  # B came from the announced-ahead list
    persisted(handler, a)  # A commits later: counted into the cached entry
    ids.mark_done(a)
    assert result(counts_of(handler)) == _counts(4, 1)
    assert len(store.calls) == 1


def test_fill_in_flight_while_the_lower_event_commits_counts_each_action_once() -> None:
    handler, store = make_handler(10)
    ids = handler.event_store.stream_ids
    a, b = ids.allocate(), ids.allocate()
    persisted(handler, b)
    ids.mark_done(b)
    pending = counts_of(handler)
    persisted(handler, a)  # announced while the fill runs: in its in-flight log
    ids.mark_done(a)
    assert ids.current() == 12
    store.calls[0][3].callback({"main": (1, 0)})  # read with the bound 10: neither A nor B
    assert result(pending) == _counts(3)
    persisted(handler, 13)  # a later event counts once more, B is not counted twice
    assert result(counts_of(handler)) == _counts(4)


def test_announced_ahead_list_is_dropped_once_current_passes_it() -> None:
    handler, store = make_handler(10)
    ids = handler.event_store.stream_ids
    a, b = ids.allocate(), ids.allocate()
    persisted(handler, b)
    ids.mark_done(b)
    persisted(handler, a)
    ids.mark_done(a)
    pending = counts_of(handler)  # starts after both committed: the query bound 12 covers both
    assert store.calls[0][2] == 12
    store.calls[0][3].callback({"main": (2, 0)})
    assert result(pending) == _counts(2)
    assert handler._counts_ahead == {} and handler._counts_ahead_heap == []


class _Ev:
    def __init__(self, etype: str, content: dict[str, Any], state_key: str | None, sender: str, event_id: str,
                 room_version: Any = ROOM_VERSION_10) -> None:
        self.type, self.content, self.state_key, self.sender = etype, content, state_key, sender
        self.room_id, self.event_id, self.room_version = ROOM, event_id, room_version

    def is_state(self) -> bool:
        return self.state_key is not None

    @property
    def membership(self) -> str | None:
        return self.content.get("membership") if self.type == "m.room.member" else None


def _room_mention_actions(create: _Ev, sender: str) -> list[tuple[str, int, str]]:
    """Actions for BOB of an ``@room`` mention by ``sender`` in a room without ``m.room.power_levels``."""
    by_id = {create.event_id: create}

    async def get_events(ids: Any) -> dict[str, Any]:
        return {i: by_id[i] for i in ids if i in by_id}

    async def get_users_in_room(room_id: str) -> frozenset[str]:
        return frozenset({sender, BOB})

    async def get_push_rules_for_users(users: Any) -> dict[str, Any]:
        return {u: ([], {}) for u in users}

    hs = SimpleNamespace(
        push_store=SimpleNamespace(get_push_rules_for_users=get_push_rules_for_users),
        room_store=SimpleNamespace(get_users_in_room=get_users_in_room),
        event_store=SimpleNamespace(stream_ids=StreamIdGenerator(0), get_events=get_events),
        event_creation_handler=SimpleNamespace(add_persist_hook=lambda hook: None),
    )
    handler = PushHandler(hs)
    event = _Ev("m.room.message", {"msgtype": "m.text", "body": "@room rollback now",
                                   "m.mentions": {"room": True}}, None, sender, "$msg")
    prepared = defer.ensureDeferred(handler.prepare(event, {("m.room.create", ""): create.event_id}))
    return result(prepared).actions


def test_v10_creator_is_content_creator_not_the_create_sender() -> None:
    # v10: content.creator names the creator; the create event's sender has no special level.
    create = _Ev("m.room.create", {"creator": "@alice:test", "room_version": "10"}, "", "@provisioner:test", "$c")
    by_creator = _room_mention_actions(create, "@alice:test")
    assert [(u, h) for u, h, _ in by_creator] == [(BOB, 1)]  # level 100 may notify the whole room
    by_create_sender = _room_mention_actions(create, "@provisioner:test")
    assert [(u, h) for u, h, _ in by_create_sender] == [(BOB, 0)]  # level 0: a plain message


def test_v11_creator_is_the_create_sender() -> None:
    create = _Ev("m.room.create", {"room_version": "11"}, "", "@alice:test", "$c", ROOM_VERSION_11)
    assert [(u, h) for u, h, _ in _room_mention_actions(create, "@alice:test")] == [(BOB, 1)]
    assert [(u, h) for u, h, _ in _room_mention_actions(create, "@mallory:test")] == [(BOB, 0)]


def test_lower_event_committing_after_the_users_own_message_is_already_read() -> None:
    handler, store = make_handler(10)
    ids = handler.event_store.stream_ids
    pending = counts_of(handler)
    store.calls[0][3].callback({"main": (2, 0)})
    assert result(pending) == _counts(2)
    a, own = ids.allocate(), ids.allocate()  # 11 in flight while Bob's own message 12 commits
    handler.after_persist(SimpleNamespace(room_id=ROOM, sender=BOB), own,
                          _Prepared("main", [], []))
    ids.mark_done(own)
    assert result(counts_of(handler)) == _counts(0)
    persisted(handler, a)  # below Bob's new read position 12: read, as the database query would say
    ids.mark_done(a)
    assert result(counts_of(handler)) == _counts(0)
    persisted(handler, 13)
    assert result(counts_of(handler)) == _counts(1)
    assert len(store.calls) == 1


def test_receipt_drops_actions_announced_ahead_that_it_covers() -> None:
    handler, store = make_handler(10)
    ids = handler.event_store.stream_ids
    a, b = ids.allocate(), ids.allocate()
    persisted(handler, b)
    ids.mark_done(b)
    handler.invalidate_counts(BOB, ROOM, "", b)  # Bob read up to B (its ID came back from /send) before A commits
    pending = counts_of(handler)
    store.calls[0][3].callback({})
    assert result(pending) == _counts(0)

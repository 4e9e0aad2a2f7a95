"""RelationCheckHook (a relation names an event of its own room, no thread off a relation, no duplicate
annotation) and thread_id_in_room (the thread an event counts in), against in-memory stores, so every branch is
reached: the HTTP tests cannot create the rows a database kept from before the hook existed (a relation to another
room's or to an unknown event)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.handlers.push import MAIN_THREAD, thread_id_in_room
from homeserver.handlers.relations import RelationCheckHook
from homeserver.http.errors import MatrixError

ROOM, OTHER = "!room:x", "!other:x"


def ev(event_id: str, room_id: str = ROOM, relates_to: dict | None = None, type_: str = "m.room.message") -> Event:
    content: dict[str, Any] = {"msgtype": "m.text", "body": event_id}
    if relates_to is not None:
        content["m.relates_to"] = relates_to
    pdu = {"type": type_, "sender": "@a:x", "room_id": room_id, "content": content, "depth": 1,
           "origin_server_ts": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"},
           "signatures": {}}
    return Event(pdu, KNOWN_ROOM_VERSIONS["10"], event_id=event_id)


class FakeEventStore:
    def __init__(self, *events: Event) -> None:
        self.events = {e.event_id: e for e in events}

    async def get_event(self, event_id: str) -> Event | None:
        return self.events.get(event_id)


class FakeRelationsStore:
    """``children[(room_id, parent_id)]``: IDs of events of that room relating to the parent; ``annotations``:
    ``(room_id, sender, parent_id, event_type, key)`` of the live annotations."""

    def __init__(self, children: dict[tuple[str, str], list[str]] | None = None,
                 annotations: set[tuple[str, str, str, str, str]] | None = None) -> None:
        self.children = children or {}
        self.annotations = annotations or set()
        self.asked: list[tuple[str, list[str], int]] = []

    async def get_child_ids(self, room_id: str, parent_ids: list[str], limit: int) -> list[str]:
        self.asked.append((room_id, parent_ids, limit))
        return [c for p in parent_ids for c in self.children.get((room_id, p), [])][:limit]

    async def has_annotation(self, room_id: str, sender: str, parent_id: str, event_type: str, key: str) -> bool:
        return (room_id, sender, parent_id, event_type, key) in self.annotations


def run(coro: Any) -> Any:
    """Result of a coroutine over the in-memory stores (they never wait); a MatrixError comes back raised."""
    d = defer.ensureDeferred(coro)
    results: list[Any] = []
    d.addBoth(results.append)
    assert results, "the fake stores never wait"
    if isinstance(results[0], defer.Failure):
        results[0].raiseException()
    return results[0]


ROOT = ev("$root")
FOREIGN = ev("$foreign", OTHER)
REPLY = ev("$reply", relates_to={"rel_type": "m.thread", "event_id": "$root"})


def check(event: Event, relations: FakeRelationsStore | None = None) -> None:
    hook = RelationCheckHook(FakeEventStore(ROOT, FOREIGN, REPLY), relations or FakeRelationsStore())
    run(hook.prepare(event, {}))


@pytest.mark.parametrize("rel_type", ["m.thread", "m.reference", "m.replace", "m.annotation", "org.example.x"])
def test_relation_to_an_event_of_another_room_is_refused(rel_type: str) -> None:
    with pytest.raises(MatrixError) as e:
        check(ev("$new", relates_to={"rel_type": rel_type, "event_id": "$foreign", "key": "k"}))
    assert (e.value.code, e.value.errcode, e.value.msg) == (400, "M_UNKNOWN", "Relations must be in the same room")


def test_relation_to_an_unknown_event_is_refused_unless_this_room_already_relates_to_it() -> None:
    relation = {"rel_type": "m.reference", "event_id": "$gone"}
    with pytest.raises(MatrixError) as e:
        check(ev("$new", relates_to=relation))
    assert (e.value.code, e.value.errcode, e.value.msg) == (400, "M_UNKNOWN", "Can't send relation to unknown event")
    # Another room relating to it gives no reason here.
    with pytest.raises(MatrixError):
        check(ev("$new", relates_to=relation), FakeRelationsStore({(OTHER, "$gone"): ["$x"]}))
    relations = FakeRelationsStore({(ROOM, "$gone"): ["$older"]})
    check(ev("$new", relates_to=relation), relations)
    assert relations.asked == [(ROOM, ["$gone"], 1)]


def test_thread_off_an_event_with_a_relation_is_refused_and_the_rest_passes() -> None:
    with pytest.raises(MatrixError) as e:
        check(ev("$new", relates_to={"rel_type": "m.thread", "event_id": "$reply"}))
    assert (e.value.code, e.value.errcode) == (400, "M_UNKNOWN")
    # An edit of / reference to a thread reply, a thread off a plain event, no relation, a rich reply to another
    # room's event (m.in_reply_to alone is no relation), a relation without a string event_id: all pass.
    check(ev("$new", relates_to={"rel_type": "m.replace", "event_id": "$reply"}))
    check(ev("$new", relates_to={"rel_type": "m.thread", "event_id": "$root"}))
    check(ev("$new"))
    check(ev("$new", relates_to={"m.in_reply_to": {"event_id": "$foreign"}}))
    check(ev("$new", relates_to={"rel_type": "m.thread", "event_id": 5}))


def test_second_identical_annotation_is_refused_in_its_room_only() -> None:
    def reaction(key: str) -> Event:
        return ev("$new", relates_to={"rel_type": "m.annotation", "event_id": "$root", "key": key},
                  type_="m.reaction")

    relations = FakeRelationsStore(annotations={(ROOM, "@a:x", "$root", "m.reaction", "+1")})
    with pytest.raises(MatrixError) as e:
        check(reaction("+1"), relations)
    assert (e.value.code, e.value.errcode) == (400, "M_DUPLICATE_ANNOTATION")
    check(reaction("eyes"), relations)
    # The same reaction kept from another room (before the same-room check) is no duplicate here.
    check(reaction("+1"), FakeRelationsStore(annotations={(OTHER, "@a:x", "$root", "m.reaction", "+1")}))


def test_thread_id_in_room_counts_a_stored_cross_room_or_unknown_thread_root_in_the_main_timeline() -> None:
    store = FakeEventStore(ROOT, FOREIGN)
    assert run(thread_id_in_room(store, REPLY)) == "$root"
    legacy = ev("$legacy", relates_to={"rel_type": "m.thread", "event_id": "$foreign"})
    assert run(thread_id_in_room(store, legacy)) == MAIN_THREAD
    orphan = ev("$orphan", relates_to={"rel_type": "m.thread", "event_id": "$gone"})
    assert run(thread_id_in_room(store, orphan)) == MAIN_THREAD
    assert run(thread_id_in_room(store, ROOT)) == MAIN_THREAD

"""Events read back from the database (EventStore decodes the stored canonical JSON with orjson): the same
values as written, integers at the canonical-JSON limits staying exact integers, strings with escapes and
non-ASCII text intact, and the key strings of decoded events shared between them."""

from __future__ import annotations

from typing import Any

from tests.unit.event_store_world import World
from tests.unit.events.events_testlib import ALICE
from tests.unit.gated_db_testlib import result, start

MAX_INT = 2**53 - 1
CONTENT = {"msgtype": "m.text", "body": "disk \"full\" \\ on db-1\n\t\u2014 \u78c1\u76d8\u5df2\u6ee1 \U0001f6a8 \u0000\u001f",
           "limits": [MAX_INT, -MAX_INT, 0, -1], "nested": {"deep": [{"x": MAX_INT}, [], {}], "empty": ""},
           "flags": [True, False, None]}


def test_events_read_from_the_database_equal_what_was_written(tmp_path: Any) -> None:
    world = World(tmp_path)
    sent = world.room.send("m.room.message", ALICE, CONTENT)
    world.persist(sent)
    event = result(start(world.fresh_store().get_event(sent.event_id)))
    assert event.content == CONTENT and event.get_pdu_json() == sent.get_pdu_json()
    assert all(type(v) is int for v in event.content["limits"]) and event.content["nested"]["deep"][0]["x"] == MAX_INT
    assert event.event_id == sent.event_id and event.internal_metadata["stream_ordering"] == world.position
    # Another event read apart shares its key strings (orjson's key cache) instead of holding copies.
    second = result(start(world.fresh_store().get_event(world.secret.event_id)))
    keys = {k: k for k in event.content}
    shared = [k for k in second.content if k in keys]
    assert sorted(shared) == ["body", "msgtype"] and all(k is keys[k] for k in shared)

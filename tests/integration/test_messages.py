"""Sending and reading messages: idempotency, /messages, /context, /event, /timestamp_to_event, relations
(issue 2 item 5)."""

from __future__ import annotations

import time

from tests.integration.roomlib import all_messages, bodies, messages, send_raw, users
from tests.support.client import CS, Api, q, register


def _login_again(api: Api, user) -> str:
    r = api.request("POST", CS + "/login", {"type": "m.login.password",
                                            "identifier": {"type": "m.id.user", "user": user.user_id},
                                            "password": user.password})
    assert r.status == 200, r.json
    return r.json["access_token"]


def test_send_is_idempotent_per_device_and_txn(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    content = {"msgtype": "m.text", "body": "disk full on db-1"}
    first = send_raw(alice, room, content, txn_id="txn-1")
    again = send_raw(alice, room, content, txn_id="txn-1")
    assert first.status == again.status == 200
    assert first.json["event_id"] == again.json["event_id"]
    # Another device of the same user with the same txnId sends a new event.
    other = type(alice)(api, alice.user_id, _login_again(api, alice), "", alice.password)
    third = send_raw(other, room, content, txn_id="txn-1")
    assert third.status == 200 and third.json["event_id"] != first.json["event_id"]
    # Another txnId on the first device is a new event too.
    fourth = send_raw(alice, room, content, txn_id="txn-2")
    assert fourth.json["event_id"] not in (first.json["event_id"], third.json["event_id"])
    assert bodies(all_messages(alice, room)).count("disk full on db-1") == 3


def test_transaction_id_only_for_sending_device(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    other_token = _login_again(api, alice)
    send_raw(alice, room, {"msgtype": "m.text", "body": "mine"}, txn_id="abc")
    mine = [e for e in alice.sync()["rooms"]["join"][room]["timeline"]["events"] if e["type"] == "m.room.message"]
    assert mine[-1]["unsigned"]["transaction_id"] == "abc"
    other = api.request("GET", CS + "/sync", token=other_token).json
    theirs = [e for e in other["rooms"]["join"][room]["timeline"]["events"] if e["type"] == "m.room.message"]
    assert theirs[-1]["event_id"] == mine[-1]["event_id"]
    assert "transaction_id" not in theirs[-1].get("unsigned", {})
    event = alice.ok("GET", f"rooms/{q(room)}/event/{q(mine[-1]['event_id'])}")
    assert event["unsigned"]["transaction_id"] == "abc"


def test_messages_backwards_forwards_and_tokens(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    sent = [alice.send(room, f"m{i}") for i in range(7)]
    page1 = messages(alice, room, dir="b", limit=3).json
    assert bodies(page1["chunk"]) == ["m6", "m5", "m4"]
    page2 = messages(alice, room, dir="b", limit=3, **{"from": page1["end"]}).json
    assert bodies(page2["chunk"]) == ["m3", "m2", "m1"]
    assert page2["start"] == page1["end"]
    # Forwards from the back token returns what we already saw, oldest first.
    fwd = messages(alice, room, dir="f", limit=3, **{"from": page2["end"]}).json
    assert bodies(fwd["chunk"]) == ["m1", "m2", "m3"]
    # dir=f without from starts at the room's beginning.
    first = messages(alice, room, dir="f", limit=2).json
    assert [e["type"] for e in first["chunk"]] == ["m.room.create", "m.room.member"]
    # `to` stops the walk.
    bounded = messages(alice, room, dir="b", limit=50, to=page1["end"]).json
    assert bodies(bounded["chunk"]) == ["m6", "m5", "m4"]
    assert "end" not in bounded
    # Everything in order, no duplicates.
    every = all_messages(alice, room)
    assert [e["event_id"] for e in every if e["type"] == "m.room.message"] == sent
    assert len({e["event_id"] for e in every}) == len(every)
    # A token past the end returns nothing and no end.
    tail = messages(alice, room, dir="f", limit=5, **{"from": alice.sync()["next_batch"]}).json
    assert tail["chunk"] == [] and "end" not in tail


def test_messages_requires_dir(api: Api) -> None:
    """``dir`` is a required parameter of ``GET /rooms/{roomId}/messages`` (spec v1.3 and later): without it,
    400 M_MISSING_PARAM; any value but ``b`` or ``f`` is 400 M_INVALID_PARAM."""
    alice, = users(api, 1)
    room = alice.create_room()
    alice.send(room, "only message")
    r = alice.req("GET", f"rooms/{q(room)}/messages", params={"limit": 5})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    assert "dir" in r.json["error"]
    r = alice.req("GET", f"rooms/{q(room)}/messages", params={"dir": "up"})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    assert bodies(alice.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b"})["chunk"]) == ["only message"]


def test_messages_filter(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    for i in range(4):
        alice.send(room, f"a{i}")
        bob.send(room, f"b{i}")
        send_raw(alice, room, {"key": i}, etype="org.tocsin.alert")
    r = messages(alice, room, limit=3, filter={"senders": [bob.user_id], "types": ["m.room.message"]}).json
    assert bodies(r["chunk"]) == ["b3", "b2", "b1"]
    r2 = messages(alice, room, limit=3, filter={"senders": [bob.user_id], "types": ["m.room.message"]},
                  **{"from": r["end"]}).json
    assert bodies(r2["chunk"]) == ["b0"]
    r = messages(alice, room, limit=50, filter={"not_types": ["m.room.message", "m.room.member"]}).json
    assert {e["type"] for e in r["chunk"]} >= {"org.tocsin.alert"}
    assert not any(e["type"] in ("m.room.message", "m.room.member") for e in r["chunk"])
    r = messages(alice, room, limit=2, filter={"lazy_load_members": True, "types": ["m.room.message"]}).json
    assert {e["state_key"] for e in r["state"]} == {alice.user_id, bob.user_id}
    bad = messages(alice, room, filter="{not json")
    assert bad.status == 400
    bad = messages(alice, room, dir="sideways")
    assert bad.status == 400
    bad = messages(alice, room, limit="many")
    assert bad.status == 400


def test_context_and_single_event(api: Api) -> None:
    alice, eve = users(api, 2)
    room = alice.create_room()
    ids = [alice.send(room, f"c{i}") for i in range(9)]
    ctx = alice.ok("GET", f"rooms/{q(room)}/context/{q(ids[4])}", params={"limit": 4})
    assert ctx["event"]["event_id"] == ids[4]
    assert bodies(ctx["events_before"]) == ["c3", "c2"]
    assert bodies(ctx["events_after"]) == ["c5", "c6"]
    assert {e["type"] for e in ctx["state"]} >= {"m.room.create", "m.room.member", "m.room.power_levels"}
    more = messages(alice, room, dir="b", limit=2, **{"from": ctx["start"]}).json
    assert bodies(more["chunk"]) == ["c1", "c0"]
    after = messages(alice, room, dir="f", limit=2, **{"from": ctx["end"]}).json
    assert bodies(after["chunk"]) == ["c7", "c8"]
    ev = alice.ok("GET", f"rooms/{q(room)}/event/{q(ids[0])}")
    assert ev["content"]["body"] == "c0" and ev["room_id"] == room and ev["sender"] == alice.user_id
    for path in (f"rooms/{q(room)}/event/{q('$nope')}", f"rooms/{q(room)}/context/{q('$nope')}"):
        r = alice.req("GET", path)
        assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    for path in (f"rooms/{q(room)}/event/{q(ids[0])}", f"rooms/{q(room)}/context/{q(ids[0])}"):
        assert eve.req("GET", path).status in (403, 404)
    # An event of another room is not found through this room.
    other = alice.create_room()
    assert alice.req("GET", f"rooms/{q(other)}/event/{q(ids[0])}").status == 404


def test_timestamp_to_event(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    first = alice.send(room, "t0")
    ts0 = alice.ok("GET", f"rooms/{q(room)}/event/{q(first)}")["origin_server_ts"]
    time.sleep(0.02)
    second = alice.send(room, "t1")
    ts1 = alice.ok("GET", f"rooms/{q(room)}/event/{q(second)}")["origin_server_ts"]
    path = f"/_matrix/client/v1/rooms/{q(room)}/timestamp_to_event"
    r = alice.ok("GET", path, params={"ts": ts1, "dir": "b"})
    assert r == {"event_id": second, "origin_server_ts": ts1}
    r = alice.ok("GET", path, params={"ts": ts0 + 1, "dir": "f"})
    assert r["event_id"] == second
    r = alice.ok("GET", path, params={"ts": ts0, "dir": "b"})
    assert r["event_id"] == first
    r = alice.req("GET", path, params={"ts": ts1 + 60_000, "dir": "f"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert alice.req("GET", path, params={"ts": ts1}).status == 400
    assert alice.req("GET", path, params={"ts": "soon", "dir": "f"}).status == 400
    eve = register(api)
    assert eve.req("GET", path, params={"ts": ts1, "dir": "b"}).status == 403


def test_relations_stored_intact(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    parent = alice.send(room, "root")
    rel = {"m.relates_to": {"rel_type": "m.thread", "event_id": parent, "is_falling_back": True,
                            "m.in_reply_to": {"event_id": parent}}}
    child = send_raw(alice, room, {"msgtype": "m.text", "body": "reply", **rel}).json["event_id"]
    ev = alice.ok("GET", f"rooms/{q(room)}/event/{q(child)}")
    assert ev["content"]["m.relates_to"] == rel["m.relates_to"]
    react = send_raw(alice, room, {"m.relates_to": {"rel_type": "m.annotation", "event_id": parent, "key": "👍"}},
                     etype="m.reaction")
    assert react.status == 200


def test_sending_refused_outside_and_below_power(api: Api) -> None:
    alice, bob, eve = users(api, 3)
    room = alice.create_room(preset="public_chat", power_level_content_override={"events_default": 10})
    bob.join(room)
    r = send_raw(bob, room, {"msgtype": "m.text", "body": "x"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = send_raw(eve, room, {"msgtype": "m.text", "body": "x"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert "x" not in bodies(all_messages(alice, room))


def test_concurrent_retries_of_one_txn_make_one_event(api: Api) -> None:
    import threading

    alice = register(api)
    room = alice.create_room()
    results: list[str] = []
    lock = threading.Lock()

    def retry() -> None:
        r = send_raw(alice, room, {"msgtype": "m.text", "body": "page the DBA"}, txn_id="same-txn")
        with lock:
            results.append(r.json["event_id"] if r.status == 200 else f"error {r.status}")

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(set(results)) == 1 and results[0].startswith("$"), results
    assert bodies(all_messages(alice, room)) == ["page the DBA"]


def test_empty_filter_param_means_no_filter(api: Api) -> None:
    """Regression (schemathesis): ``?filter=`` (empty) was a 400 on /messages and /context."""
    alice = register(api)
    room = alice.create_room()
    eid = alice.send(room, "unfiltered")
    r = messages(alice, room, limit=1, filter="")
    assert r.status == 200 and bodies(r.json["chunk"]) == ["unfiltered"]
    r = alice.req("GET", f"rooms/{q(room)}/context/{q(eid)}", params={"filter": ""})
    assert r.status == 200 and r.json["event"]["event_id"] == eid


def test_depth_and_prev_events_form_a_line(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    for i in range(3):
        alice.send(room, f"d{i}")
    sync = alice.sync(filter={"event_format": "federation", "room": {"timeline": {"limit": 50}}})
    room_part = sync["rooms"]["join"][room]
    events = room_part["state"]["events"] + room_part["timeline"]["events"]
    events.sort(key=lambda e: e["depth"])
    assert events[0]["type"] == "m.room.create" and events[0]["prev_events"] == []
    # Linear history: each event's only prev_event is the one before it, and depth grows by one.
    for prev, ev in zip(events, events[1:]):
        assert ev["prev_events"] == [prev["event_id"]]
        assert ev["depth"] == prev["depth"] + 1
    assert bodies(events)[-3:] == ["d0", "d1", "d2"]

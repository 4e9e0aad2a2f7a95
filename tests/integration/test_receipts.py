"""Receipts and read markers over HTTP (issue 3 item 1, and its bad input)."""

from __future__ import annotations

from tests.integration.pushlib import receipt, receipts_in, room_with
from tests.support.client import Api, q, register


def test_read_receipt_reaches_other_members_incrementally(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    event_id = alice.send(room, "disk full on db-1")
    since = alice.sync()["next_batch"]
    assert receipt(bob, room, event_id).status == 200
    body = alice.sync(since=since, timeout=5000)
    got = [r for r in receipts_in(body, room) if r[2] == bob.user_id]
    assert [(r[0], r[1]) for r in got] == [(event_id, "m.read")]
    assert isinstance(got[0][3]["ts"], int) and got[0][3]["ts"] > 0
    # Nothing changed since: the next incremental sync carries no receipt for the room.
    again = alice.sync(since=body["next_batch"])
    assert receipts_in(again, room) == []


def test_initial_sync_has_latest_receipt_of_each_member(api: Api) -> None:
    alice, (bob, carol), room = room_with(api, 2)
    first = alice.send(room, "one")
    second = alice.send(room, "two")
    assert receipt(bob, room, first).status == 200
    assert receipt(bob, room, second).status == 200
    assert receipt(carol, room, first).status == 200
    got = {(r[2], r[1]): r[0] for r in receipts_in(alice.sync(), room)}
    assert got == {(bob.user_id, "m.read"): second, (carol.user_id, "m.read"): first}


def test_receipt_never_moves_backwards(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    first = alice.send(room, "one")
    second = alice.send(room, "two")
    assert receipt(bob, room, second).status == 200
    assert receipt(bob, room, first).status == 200  # accepted, but ignored
    got = [r for r in receipts_in(alice.sync(), room) if r[2] == bob.user_id]
    assert [r[0] for r in got] == [second]


def test_private_receipt_only_for_its_owner(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    event_id = alice.send(room, "quiet ack")
    assert receipt(bob, room, event_id, "m.read.private").status == 200
    assert [r for r in receipts_in(alice.sync(), room) if r[1] == "m.read.private"] == []
    mine = [r for r in receipts_in(bob.sync(), room) if r[1] == "m.read.private"]
    assert [(r[0], r[2]) for r in mine] == [(event_id, bob.user_id)]


def test_threaded_receipt_carries_thread_id(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    root = alice.send(room, "incident 7")
    reply = alice.send(room, "looking", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    assert receipt(bob, room, reply, body={"thread_id": root}).status == 200
    assert receipt(bob, room, root, body={"thread_id": "main"}).status == 200
    got = {(r[0], r[3].get("thread_id")) for r in receipts_in(alice.sync(), room) if r[2] == bob.user_id}
    assert got == {(reply, root), (root, "main")}
    # The reply is not in the main timeline, and not in a thread of its own.
    bad_main = receipt(bob, room, reply, body={"thread_id": "main"})
    assert (bad_main.status, bad_main.errcode()) == (400, "M_INVALID_PARAM")
    other = receipt(bob, room, root, body={"thread_id": reply})
    assert (other.status, other.errcode()) == (400, "M_INVALID_PARAM")
    for bad in ("", 5):
        r = receipt(bob, room, root, body={"thread_id": bad})
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")


def test_bad_receipts_are_refused_and_change_nothing(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    _, _, other_room = room_with(api)
    event_id = alice.send(room, "hello")
    since = alice.sync()["next_batch"]
    outsider = register(api)
    stranger_event = alice.send(alice.create_room(), "elsewhere")
    cases = [
        (receipt(bob, room, "$unknown:test.local"), 404, "M_NOT_FOUND"),
        (receipt(bob, room, stranger_event), 404, "M_NOT_FOUND"),
        (receipt(bob, room, event_id, "m.bogus"), 400, "M_INVALID_PARAM"),
        (receipt(outsider, room, event_id), 403, "M_FORBIDDEN"),
        (receipt(bob, other_room, event_id), 403, "M_FORBIDDEN"),
        (receipt(bob, room, event_id, "m.fully_read", {"thread_id": "main"}), 400, "M_INVALID_PARAM"),
    ]
    for response, status, errcode in cases:
        assert (response.status, response.errcode()) == (status, errcode), response.json
    assert receipts_in(alice.sync(since=since), room) == []


def test_another_rooms_event_is_not_found_like_an_unknown_one(api: Api) -> None:
    """A receipt or read marker naming an event of a room the member cannot see gets the same 404 as a bogus
    event ID (as /event, /context, /relations and /report do), so it cannot tell whether such an event exists;
    nothing is stored."""
    alice, (bob,), room = room_with(api)
    event_id = alice.send(room, "hello")
    secret = register(api)
    hidden = secret.send(secret.create_room(preset="private_chat"), "not for bob")
    since = alice.sync()["next_batch"]
    answers = [
        receipt(bob, room, hidden),
        receipt(bob, room, hidden, "m.read.private"),
        receipt(bob, room, hidden, "m.fully_read"),
        receipt(bob, room, hidden, body={"thread_id": "main"}),
    ] + [bob.req("POST", f"rooms/{q(room)}/read_markers", {key: hidden})
         for key in ("m.fully_read", "m.read", "m.read.private")]
    for response in answers:
        assert (response.status, response.errcode()) == (404, "M_NOT_FOUND"), response.json
    assert receipts_in(alice.sync(since=since), room) == []
    assert bob.req("GET", f"user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read").status == 404
    assert receipt(bob, room, event_id).status == 200


def test_receipt_for_event_before_join_with_joined_visibility_is_not_found(api: Api) -> None:
    alice = register(api)
    bob = register(api)
    room = alice.create_room(initial_state=[{"type": "m.room.history_visibility", "state_key": "",
                                             "content": {"history_visibility": "joined"}}])
    hidden = alice.send(room, "before bob")
    alice.invite(room, bob.user_id)
    bob.join(room)
    r = receipt(bob, room, hidden)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_read_markers_set_fully_read_and_receipts(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    first = alice.send(room, "one")
    second = alice.send(room, "two")
    r = bob.req("POST", f"rooms/{q(room)}/read_markers",
                {"m.fully_read": first, "m.read": second, "m.read.private": first})
    assert r.status == 200, r.json
    stored = bob.ok("GET", f"user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read")
    assert stored == {"event_id": first}
    sync = bob.sync()
    room_ad = sync["rooms"]["join"][room]["account_data"]["events"]
    assert {"type": "m.fully_read", "content": {"event_id": first}} in room_ad
    mine = {(r[1], r[0]) for r in receipts_in(sync, room) if r[2] == bob.user_id}
    assert mine == {("m.read", second), ("m.read.private", first)}
    # m.fully_read through the receipt endpoint moves the marker too.
    assert bob.req("POST", f"rooms/{q(room)}/receipt/m.fully_read/{q(second)}", {}).status == 200
    stored = bob.ok("GET", f"user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read")
    assert stored == {"event_id": second}


def test_read_markers_bad_input_changes_nothing(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    good = alice.send(room, "one")
    r = bob.req("POST", f"rooms/{q(room)}/read_markers", {"m.fully_read": good, "m.read": "$nope:test.local"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = bob.req("POST", f"rooms/{q(room)}/read_markers", {"m.fully_read": 12})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    missing = bob.req("GET", f"user/{q(bob.user_id)}/rooms/{q(room)}/account_data/m.fully_read")
    assert missing.status == 404
    assert [r for r in receipts_in(alice.sync(), room) if r[2] == bob.user_id] == []

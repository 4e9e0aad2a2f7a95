"""Transaction IDs are scoped to the device and the request path (Client-Server API "Transaction identifiers"):
the same txnId in another room, for another event type or on /redact is a new request; a retry of the same
request returns the same event, and the own-echo ``unsigned.transaction_id`` still reaches the sending device."""

from __future__ import annotations

from tests.integration.roomlib import timeline, users
from tests.support.client import Api, q


def _send(user, room_id: str, txn: str, body: str, etype: str = "m.room.message") -> str:
    return user.ok("PUT", f"rooms/{q(room_id)}/send/{etype}/{txn}", {"msgtype": "m.text", "body": body})["event_id"]


def _event(user, room_id: str, event_id: str) -> dict:
    return user.ok("GET", f"rooms/{q(room_id)}/event/{q(event_id)}")


def test_same_txn_id_in_two_rooms_sends_two_events(api: Api) -> None:
    alice, bob = users(api, 2)
    r1 = alice.create_room(preset="public_chat")
    r2 = alice.create_room(preset="public_chat")
    bob.join(r1)
    bob.join(r2)
    e1 = _send(alice, r1, "t1", "page: db primary down")
    e2 = _send(alice, r2, "t1", "page: disk full on web-3")
    assert e1 != e2
    assert _event(bob, r1, e1)["content"]["body"] == "page: db primary down"
    second = _event(bob, r2, e2)
    assert (second["room_id"], second["content"]["body"]) == (r2, "page: disk full on web-3")
    # A retry of either request still returns its own event.
    assert _send(alice, r1, "t1", "page: db primary down") == e1
    assert _send(alice, r2, "t1", "page: disk full on web-3") == e2
    # Own echo in /sync carries the transaction ID in both rooms.
    sync = alice.sync()
    for room, eid in ((r1, e1), (r2, e2)):
        echoed = next(e for e in timeline(sync, room) if e["event_id"] == eid)
        assert echoed["unsigned"]["transaction_id"] == "t1"
    # Other users never see it.
    assert all("transaction_id" not in e.get("unsigned", {}) for e in timeline(bob.sync(), r1))


def test_same_txn_id_for_two_event_types_sends_two_events(api: Api) -> None:
    (alice,) = users(api, 1)
    room = alice.create_room()
    e1 = _send(alice, room, "same", "first")
    e2 = _send(alice, room, "same", "second", etype="com.example.oncall.ack")
    assert e1 != e2
    assert _event(alice, room, e1)["type"] == "m.room.message"
    custom = _event(alice, room, e2)
    assert (custom["type"], custom["content"]["body"]) == ("com.example.oncall.ack", "second")


def test_redact_with_a_txn_id_used_by_send_redacts(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    target = _send(alice, room, "x1", "password hunter3")
    r = alice.req("PUT", f"rooms/{q(room)}/redact/{q(target)}/x1", {"reason": "secret"})
    assert r.status == 200
    redaction_id = r.json["event_id"]
    assert redaction_id != target
    redaction = _event(bob, room, redaction_id)
    assert redaction["type"] == "m.room.redaction"
    assert redaction.get("redacts", redaction["content"].get("redacts")) == target
    assert _event(bob, room, target)["content"] == {}
    # Retrying the redaction is idempotent; the same txnId redacting another event is a new redaction.
    assert alice.ok("PUT", f"rooms/{q(room)}/redact/{q(target)}/x1", {"reason": "secret"})["event_id"] == redaction_id
    other = _send(alice, room, "x2", "token abc")
    again = alice.ok("PUT", f"rooms/{q(room)}/redact/{q(other)}/x1", {})["event_id"]
    assert again not in (redaction_id, other, target)
    assert _event(bob, room, other)["content"] == {}


def test_send_redaction_and_redact_endpoint_have_separate_scopes(api: Api) -> None:
    (alice,) = users(api, 1)
    room = alice.create_room()
    a = _send(alice, room, "m1", "one")
    b = _send(alice, room, "m2", "two")
    via_send = alice.ok("PUT", f"rooms/{q(room)}/send/m.room.redaction/r9", {"redacts": a})["event_id"]
    via_redact = alice.ok("PUT", f"rooms/{q(room)}/redact/{q(b)}/r9", {})["event_id"]
    assert via_send != via_redact
    assert _event(alice, room, a)["content"] == {}
    assert _event(alice, room, b)["content"] == {}
    assert alice.ok("PUT", f"rooms/{q(room)}/send/m.room.redaction/r9", {"redacts": a})["event_id"] == via_send

"""Redactions: own events, by power, refusals, the pruned content everyone sees (issue 2 items 4-5)."""

from __future__ import annotations

from tests.integration.roomlib import get_state, put_state, send_raw, users
from tests.support.client import Api, q, register


def _redact(user, room_id: str, event_id: str, txn: str, reason: str | None = None):
    body = {"reason": reason} if reason is not None else {}
    return user.req("PUT", f"rooms/{q(room_id)}/redact/{q(event_id)}/{txn}", body)


def _event(user, room_id: str, event_id: str) -> dict:
    return user.ok("GET", f"rooms/{q(room_id)}/event/{q(event_id)}")


def test_redact_own_message(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    target = bob.send(room, "password is hunter2", format="org.matrix.custom.html", formatted_body="<b>x</b>")
    r = _redact(bob, room, target, "r1", reason="oops")
    assert r.status == 200
    again = _redact(bob, room, target, "r1", reason="oops")
    assert again.json["event_id"] == r.json["event_id"]  # idempotent per txn
    seen = _event(alice, room, target)
    assert seen["content"] == {}
    assert seen["type"] == "m.room.message" and seen["sender"] == bob.user_id
    because = seen["unsigned"]["redacted_because"]
    assert because["event_id"] == r.json["event_id"]
    assert because["content"].get("reason") == "oops"
    redaction = _event(alice, room, r.json["event_id"])
    assert redaction["type"] == "m.room.redaction"
    assert redaction.get("redacts", redaction["content"].get("redacts")) == target
    # Redacted events stay redacted in /messages and /sync.
    chunk = alice.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 5})["chunk"]
    assert next(e for e in chunk if e["event_id"] == target)["content"] == {}
    tl = alice.sync()["rooms"]["join"][room]["timeline"]["events"]
    assert all(e["content"] == {} for e in tl if e["event_id"] == target)


def test_redact_others_needs_power(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    target = carol.send(room, "spam")
    r = _redact(bob, room, target, "x1")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert _event(alice, room, target)["content"]["body"] == "spam"
    assert _redact(alice, room, target, "x2").status == 200  # power 100 >= redact 50
    assert _event(carol, room, target)["content"] == {}
    # A promoted moderator can redact.
    other = carol.send(room, "more spam")
    pl = get_state(alice, room, "m.room.power_levels").json
    pl["users"][bob.user_id] = 50
    put_state(alice, room, "m.room.power_levels", pl)
    assert _redact(bob, room, other, "x3").status == 200
    assert _event(alice, room, other)["content"] == {}


def test_redact_state_keeps_protected_keys(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(room_version="11")
    put_state(alice, room, "m.room.join_rules", {"join_rule": "public", "extra": "dropped"})
    jr = get_state(alice, room, "m.room.join_rules", format="event").json
    assert _redact(alice, room, jr["event_id"], "s1").status == 200
    assert get_state(alice, room, "m.room.join_rules").json == {"join_rule": "public"}
    pl = get_state(alice, room, "m.room.power_levels", format="event").json
    assert _redact(alice, room, pl["event_id"], "s2").status == 200
    # v11 keeps "invite" in power levels; the room keeps working for its creator.
    after = get_state(alice, room, "m.room.power_levels").json
    assert after["users"] == {alice.user_id: 100}
    assert after["invite"] == pl["content"]["invite"]
    alice.send(room, "still works")


def test_redact_unknown_or_foreign_event(api: Api) -> None:
    alice, eve = users(api, 2)
    room = alice.create_room()
    other = alice.create_room()
    foreign = alice.send(other, "elsewhere")
    # Redacting an event from another room must not touch it.
    r = _redact(alice, room, foreign, "f1")
    assert r.status in (200, 400, 404)
    assert _event(alice, other, foreign)["content"]["body"] == "elsewhere"
    target = alice.send(room, "mine")
    r = _redact(eve, room, target, "f2")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert _event(alice, room, target)["content"]["body"] == "mine"
    r = alice.req("PUT", f"rooms/{q(room)}/redact/{q(target)}/f3", {"reason": 5})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    assert _event(alice, room, target)["content"]["body"] == "mine"


def test_redaction_via_send_endpoint(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(room_version="11")
    target = alice.send(room, "via send")
    r = send_raw(alice, room, {"redacts": target}, etype="m.room.redaction")
    assert r.status == 200
    assert _event(alice, room, target)["content"] == {}

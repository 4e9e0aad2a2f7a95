"""Room state: listing, state keys, idempotent puts, auth rules on state, state in /sync (issue 2 items 3-4)."""

from __future__ import annotations

from tests.integration.roomlib import get_state, put_state, timeline, users
from tests.support.client import Api, q, register


def test_state_listing_matches_individual_reads(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="Listing", topic="t")
    put_state(alice, room, "org.tocsin.rota", {"who": "alice"}, "week-1")
    listing = alice.ok("GET", f"rooms/{q(room)}/state")
    keys = [(e["type"], e["state_key"]) for e in listing]
    assert len(keys) == len(set(keys))
    for e in listing:
        assert e["room_id"] == room
        assert get_state(alice, room, e["type"], e["state_key"]).json == e["content"]


def test_state_keys_with_odd_characters(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    # Auth rules: a state key starting with @ belongs to that user alone.
    assert put_state(alice, room, "org.tocsin.k", {"key": "x"}, "@user:server").status == 403
    for key in ("with/slash", alice.user_id, "ünïcödé", " spaced "):
        assert put_state(alice, room, "org.tocsin.k", {"key": key}, key).status == 200, key
        assert get_state(alice, room, "org.tocsin.k", key).json == {"key": key}
    # Empty state key with and without the trailing slash.
    alice.ok("PUT", f"rooms/{q(room)}/state/m.room.topic", {"topic": "no slash"})
    assert alice.ok("GET", f"rooms/{q(room)}/state/m.room.topic") == {"topic": "no slash"}
    assert alice.ok("GET", f"rooms/{q(room)}/state/m.room.topic/") == {"topic": "no slash"}


def test_same_state_twice_is_one_event(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    a = put_state(alice, room, "m.room.topic", {"topic": "same"}).json["event_id"]
    b = put_state(alice, room, "m.room.topic", {"topic": "same"}).json["event_id"]
    assert a == b
    c = put_state(alice, room, "m.room.topic", {"topic": "different"}).json["event_id"]
    assert c != a


def test_power_levels_rules(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    pl = get_state(alice, room, "m.room.power_levels").json
    # v10: power levels must be integers, never strings.
    bad = dict(pl, ban="50")
    r = put_state(alice, room, "m.room.power_levels", bad)
    assert r.status in (400, 403), r.json
    assert get_state(alice, room, "m.room.power_levels").json == pl
    # A custom state type's level applies.
    pl2 = dict(pl, events={**pl["events"], "org.tocsin.rota": 0})
    assert put_state(alice, room, "m.room.power_levels", pl2).status == 200
    assert put_state(bob, room, "org.tocsin.rota", {"who": "bob"}).status == 200
    # state_default 50 applies to other custom types.
    assert put_state(bob, room, "org.tocsin.other", {"x": 1}).status == 403
    # Others' state keys starting with @ are theirs alone.
    r = put_state(bob, room, "org.tocsin.rota", {"who": "bob"}, alice.user_id)
    assert r.status == 403


def test_state_changes_arrive_in_sync_timeline(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    eid = put_state(alice, room, "m.room.topic", {"topic": "incident open"}).json["event_id"]
    s = bob.sync(since=token)
    (ev,) = [e for e in timeline(s, room) if e["type"] == "m.room.topic"]
    assert ev["event_id"] == eid and ev["state_key"] == "" and ev["content"] == {"topic": "incident open"}


def test_bad_state_bodies_change_nothing(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(name="keep")
    for raw in (b"[]", b"\"str\"", b"{bad"):
        r = alice.req("PUT", f"rooms/{q(room)}/state/m.room.name/", raw_body=raw)
        assert r.status == 400, raw
    assert get_state(alice, room, "m.room.name").json == {"name": "keep"}


def test_malformed_state_content_is_bad_json_not_forbidden(api: Api) -> None:
    from tests.support.client import q

    owner = register(api)
    room = owner.create_room()
    for etype, content in [
        ("m.room.power_levels", {"users": {owner.user_id: "100"}}),
        ("m.room.power_levels", {"users": {"garbage": 100}}),
        ("m.room.join_rules", {"join_rule": 5}),
        ("m.room.history_visibility", {"history_visibility": "sometimes"}),
        ("m.room.name", {"name": ["list"]}),
        ("m.room.create", {}),
    ]:
        r = owner.req("PUT", f"rooms/{q(room)}/state/{etype}", content)
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), (etype, content, r.json)
    assert owner.ok("GET", f"rooms/{q(room)}/state/m.room.join_rules") == {"join_rule": "invite"}
    r = owner.req("PUT", f"rooms/{q(room)}/redact/garbage/t1", {})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")

"""Lazy-loading members in ``/sync`` includes the heroes' membership events (spec, ``GET /sync``,
``summary.m.heroes``: "When lazy-loading room members is enabled, the membership events for the heroes MUST be
included in the state"). Found by matrix-js-sdk: without them a new Element device named an unnamed room after a
raw user ID."""

from __future__ import annotations

from tests.support.client import Api, q, register

LAZY = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}


def _members(joined_room: dict) -> dict[str, dict]:
    events = joined_room["state"]["events"] + joined_room["timeline"]["events"]
    return {e["state_key"]: e["content"] for e in events if e["type"] == "m.room.member"}


def test_initial_lazy_sync_has_silent_heroes(api: Api) -> None:
    alice, bob, carol = register(api), register(api), register(api)
    bob.ok("PUT", f"profile/{q(bob.user_id)}/displayname", {"displayname": "Bob on call"})
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    for i in range(3):
        alice.send(room, f"alert {i}")

    joined = carol.sync(filter=LAZY)["rooms"]["join"][room]
    heroes = joined["summary"]["m.heroes"]
    assert sorted(heroes) == sorted([alice.user_id, bob.user_id])
    members = _members(joined)
    # bob never spoke in the timeline: only the heroes rule brings his membership (and display name).
    assert set(members) == {alice.user_id, bob.user_id, carol.user_id}
    assert (members[bob.user_id]["membership"], members[bob.user_id]["displayname"]) == ("join", "Bob on call")


def test_named_room_has_no_heroes_to_load(api: Api) -> None:
    alice, bob, carol = register(api), register(api), register(api)
    room = alice.create_room(preset="public_chat", name="Database on-call")
    bob.join(room)
    carol.join(room)
    for i in range(3):
        alice.send(room, f"alert {i}")

    joined = carol.sync(filter=LAZY)["rooms"]["join"][room]
    assert joined["summary"]["m.heroes"] == []
    assert set(_members(joined)) == {alice.user_id, carol.user_id}


def test_incremental_sync_does_not_resend_heroes(api: Api) -> None:
    alice, bob, carol = register(api), register(api), register(api)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    since = carol.sync(filter=LAZY)["next_batch"]
    alice.send(room, "one more")
    joined = carol.sync(since, filter=LAZY)["rooms"]["join"][room]
    assert joined["timeline"]["limited"] is False
    # Redundant for a client that already has them: only the sender's membership may come along.
    assert bob.user_id not in _members(joined)

"""History visibility on every read path: /messages, /context, /event, /sync, /members, /state (issue 2 item 4).

Each test builds a room whose history has a "before" part (sent before the late user was invited/joined) and an
"after" part, then checks exactly which part each path shows.
"""

from __future__ import annotations

from tests.integration.roomlib import all_messages, bodies, get_state, put_state, users
from tests.support.client import Api, q


def _room_with_visibility(api: Api, visibility: str):
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat",
                             initial_state=[{"type": "m.room.history_visibility",
                                             "content": {"history_visibility": visibility}}])
    before = alice.send(room, "before-invite")
    alice.invite(room, bob.user_id)
    invited = alice.send(room, "while-invited")
    bob.join(room)
    after = alice.send(room, "after-join")
    return alice, bob, room, {"before": before, "invited": invited, "after": after}


def _visible_bodies(bob, room: str) -> list[str]:
    return bodies(all_messages(bob, room))


def _can_get(bob, room: str, event_id: str) -> bool:
    r = bob.req("GET", f"rooms/{q(room)}/event/{q(event_id)}")
    assert r.status in (200, 404), r.json
    c = bob.req("GET", f"rooms/{q(room)}/context/{q(event_id)}")
    assert (c.status == 200) == (r.status == 200), (r.status, c.status)
    return r.status == 200


def test_shared_shows_everything_to_members(api: Api) -> None:
    alice, bob, room, ids = _room_with_visibility(api, "shared")
    assert _visible_bodies(bob, room) == ["before-invite", "while-invited", "after-join"]
    assert all(_can_get(bob, room, e) for e in ids.values())


def test_invited_shows_from_invite(api: Api) -> None:
    alice, bob, room, ids = _room_with_visibility(api, "invited")
    assert _visible_bodies(bob, room) == ["while-invited", "after-join"]
    assert not _can_get(bob, room, ids["before"])
    assert _can_get(bob, room, ids["invited"]) and _can_get(bob, room, ids["after"])


def test_joined_shows_from_join(api: Api) -> None:
    alice, bob, room, ids = _room_with_visibility(api, "joined")
    assert _visible_bodies(bob, room) == ["after-join"]
    assert not _can_get(bob, room, ids["before"]) and not _can_get(bob, room, ids["invited"])
    assert _can_get(bob, room, ids["after"])
    # Initial sync of a late joiner: the timeline only has what bob may see.
    tl = bob.sync(filter={"room": {"timeline": {"limit": 50}}})["rooms"]["join"][room]["timeline"]["events"]
    assert bodies(tl) == ["after-join"]
    # Context of a visible event does not leak older hidden ones.
    ctx = bob.ok("GET", f"rooms/{q(room)}/context/{q(ids['after'])}", params={"limit": 10})
    assert bodies(ctx["events_before"]) == []


def test_world_readable_lets_outsiders_read(api: Api) -> None:
    alice, outsider = users(api, 2)
    room = alice.create_room(preset="public_chat",
                             initial_state=[{"type": "m.room.history_visibility",
                                             "content": {"history_visibility": "world_readable"}}])
    eid = alice.send(room, "public status page")
    assert bodies(all_messages(outsider, room)) == ["public status page"]
    assert _can_get(outsider, room, eid)
    assert outsider.req("GET", f"rooms/{q(room)}/state").status == 200
    assert outsider.req("GET", f"rooms/{q(room)}/members").status == 200
    # But reading is not joining.
    assert outsider.req("PUT", f"rooms/{q(room)}/send/m.room.message/w1",
                        {"msgtype": "m.text", "body": "x"}).status == 403


def test_outsider_of_shared_room_sees_nothing(api: Api) -> None:
    alice, eve = users(api, 2)
    room = alice.create_room(preset="public_chat")
    eid = alice.send(room, "secret")
    for path in (f"rooms/{q(room)}/messages", f"rooms/{q(room)}/state", f"rooms/{q(room)}/members",
                 f"rooms/{q(room)}/event/{q(eid)}", f"rooms/{q(room)}/context/{q(eid)}",
                 f"rooms/{q(room)}/state/m.room.name/"):
        r = eve.req("GET", path, params={"dir": "b"})  # dir: required by /messages, ignored by the others
        assert r.status in (403, 404), (path, r.status)
        assert "secret" not in r.body.decode()


def test_user_who_left_sees_history_up_to_leave(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat", name="before")
    bob.join(room)
    seen = alice.send(room, "while-bob-here")
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    hidden = alice.send(room, "after-bob-left")
    put_state(alice, room, "m.room.name", {"name": "after"})
    put_state(alice, room, "m.room.topic", {"topic": "new topic"})
    assert _visible_bodies(bob, room) == ["while-bob-here"]
    assert _can_get(bob, room, seen) and not _can_get(bob, room, hidden)
    # /state and /state/{type} show the state as it was when bob left.
    state = {(e["type"], e["state_key"]): e for e in bob.ok("GET", f"rooms/{q(room)}/state")}
    assert state[("m.room.name", "")]["content"] == {"name": "before"}
    assert ("m.room.topic", "") not in state
    assert state[("m.room.member", bob.user_id)]["content"]["membership"] == "leave"
    assert get_state(bob, room, "m.room.name").json == {"name": "before"}
    assert get_state(bob, room, "m.room.topic").status == 404
    # /members too: carol joining later is invisible to bob.
    carol = users(api, 1)[0]
    carol.join(room)
    member_ids = {e["state_key"] for e in bob.ok("GET", f"rooms/{q(room)}/members")["chunk"]}
    assert carol.user_id not in member_ids and alice.user_id in member_ids
    # /messages forwards from an old token stops at the leave.
    fwd = bob.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "f", "limit": 100})
    assert "after-bob-left" not in bodies(fwd["chunk"])


def test_sync_of_left_room_stops_at_leave(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    alice.send(room, "last words")
    alice.ok("POST", f"rooms/{q(room)}/kick", {"user_id": bob.user_id})
    alice.send(room, "behind bob's back")
    s = bob.sync(since=token)
    left = s["rooms"]["leave"][room]
    assert bodies(left["timeline"]["events"]) == ["last words"]
    assert left["timeline"]["events"][-1]["type"] == "m.room.member"
    assert left["timeline"]["events"][-1]["content"]["membership"] == "leave"
    assert room not in s["rooms"]["join"]
    s2 = bob.sync(since=s["next_batch"])
    assert room not in s2["rooms"]["leave"] and room not in s2["rooms"]["join"]


def test_visibility_change_applies_from_that_point(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    alice.send(room, "shared-era")
    put_state(alice, room, "m.room.history_visibility", {"history_visibility": "joined"})
    alice.send(room, "joined-era")
    bob.join(room)
    alice.send(room, "member-era")
    assert _visible_bodies(bob, room) == ["shared-era", "member-era"]

"""Membership: join by ID and alias, invite, leave, forget, kick, ban, unban and their refusals (issue 2 item 3)."""

from __future__ import annotations

from tests.integration.roomlib import get_state, membership, put_state, users
from tests.support.client import Api, q


def _post(user, room_id: str, action: str, body: dict | None = None):
    return user.req("POST", f"rooms/{q(room_id)}/{action}", body if body is not None else {})


def test_join_by_id_and_alias(api: Api, homeserver) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    alias = f"#ops-{alice.user_id[1:9]}:{homeserver.server_name}"
    alice.ok("PUT", f"directory/room/{q(alias)}", {"room_id": room})
    assert bob.ok("POST", f"join/{q(alias)}", {})["room_id"] == room
    assert carol.ok("POST", f"rooms/{q(room)}/join", {})["room_id"] == room
    joined = alice.ok("GET", f"rooms/{q(room)}/joined_members")["joined"]
    assert set(joined) == {alice.user_id, bob.user_id, carol.user_id}
    # Joining twice is a no-op returning the room.
    before = alice.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})["chunk"]
    assert bob.join(room) == room
    after = alice.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})["chunk"]
    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]
    r = bob.req("POST", f"join/{q('#missing-x:' + homeserver.server_name)}", {})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_invite_only_room_refuses_uninvited_join(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room()  # private_chat: invite only
    r = bob.req("POST", f"join/{q(room)}", {})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert membership(alice, room, bob.user_id) is None
    alice.invite(room, bob.user_id)
    assert membership(alice, room, bob.user_id) == "invite"
    assert bob.join(room) == room
    assert membership(alice, room, bob.user_id) == "join"


def test_invite_refusals(api: Api) -> None:
    alice, bob, carol, dave = users(api, 4)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    # Not a member: cannot invite.
    r = _post(carol, room, "invite", {"user_id": dave.user_id})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # public_chat needs power 50 to invite.
    r = _post(bob, room, "invite", {"user_id": dave.user_id})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert membership(alice, room, dave.user_id) is None
    # Already joined.
    r = _post(alice, room, "invite", {"user_id": bob.user_id})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # Bad bodies.
    r = _post(alice, room, "invite", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = _post(alice, room, "invite", {"user_id": 7})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = _post(alice, room, "invite", {"user_id": "not-a-user"})
    assert r.status == 400
    # Unknown local user.
    r = _post(alice, room, "invite", {"user_id": "@nobody-here:test.local"})
    assert r.status == 404


def test_leave_and_forget(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    r = _post(bob, room, "forget")
    assert r.status == 400  # still joined
    assert _post(bob, room, "leave").status == 200
    assert membership(alice, room, bob.user_id) == "leave"
    assert room not in bob.ok("GET", "joined_rooms")["joined_rooms"]
    # Leaving again: not in the room.
    r = _post(bob, room, "leave")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # Leave shows in sync with include_leave until forgotten.
    flt = {"room": {"include_leave": True}}
    assert room in bob.sync(filter=flt)["rooms"]["leave"]
    assert _post(bob, room, "forget").status == 200
    assert room not in bob.sync(filter=flt)["rooms"]["leave"]
    # The room still works for others.
    alice.send(room, "still here")


def test_reject_invite_by_leaving(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room()
    alice.invite(room, bob.user_id)
    assert _post(bob, room, "leave").status == 200
    assert membership(alice, room, bob.user_id) == "leave"
    r = bob.req("POST", f"join/{q(room)}", {})
    assert r.status == 403


def test_kick(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    # Power 0 cannot kick.
    r = _post(bob, room, "kick", {"user_id": carol.user_id, "reason": "spam"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert membership(alice, room, carol.user_id) == "join"
    assert _post(alice, room, "kick", {"user_id": carol.user_id, "reason": "spam"}).status == 200
    ev = get_state(alice, room, "m.room.member", carol.user_id, format="event").json
    assert ev["content"]["membership"] == "leave"
    assert ev["content"]["reason"] == "spam"
    assert ev["sender"] == alice.user_id
    # A kicked user of a public room may rejoin.
    assert carol.join(room) == room
    # Kicking someone who is not there.
    dave = users(api, 1)[0]
    r = _post(alice, room, "kick", {"user_id": dave.user_id})
    assert r.status == 403


def test_ban_and_unban(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    carol.join(room)
    r = _post(bob, room, "ban", {"user_id": carol.user_id})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert _post(alice, room, "ban", {"user_id": carol.user_id, "reason": "abuse"}).status == 200
    assert membership(alice, room, carol.user_id) == "ban"
    # Banned: cannot join, cannot be invited, cannot send.
    r = carol.req("POST", f"join/{q(room)}", {})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = _post(alice, room, "invite", {"user_id": carol.user_id})
    assert r.status == 403
    r = carol.req("PUT", f"rooms/{q(room)}/send/m.room.message/x1", {"msgtype": "m.text", "body": "hi"})
    assert r.status == 403
    # Low power cannot unban; unban of a non-banned user is refused.
    r = _post(bob, room, "unban", {"user_id": carol.user_id})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert membership(alice, room, carol.user_id) == "ban"
    r = _post(alice, room, "unban", {"user_id": bob.user_id})
    assert r.status == 403
    assert _post(alice, room, "unban", {"user_id": carol.user_id}).status == 200
    assert membership(alice, room, carol.user_id) == "leave"
    assert carol.join(room) == room


def test_members_filters_and_at(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = alice.sync()["next_batch"]
    carol.join(room)
    alice.invite(room, users(api, 1)[0].user_id)
    _post(bob, room, "leave")

    def members(**params):
        return {e["state_key"]: e["content"]["membership"]
                for e in alice.ok("GET", f"rooms/{q(room)}/members", params=params)["chunk"]}

    now = members()
    assert now[alice.user_id] == "join" and now[carol.user_id] == "join" and now[bob.user_id] == "leave"
    assert len([m for m in now.values() if m == "invite"]) == 1
    assert set(members(membership="join")) == {alice.user_id, carol.user_id}
    assert bob.user_id not in members(not_membership="leave")
    assert all(m != "join" for m in members(not_membership="join").values())
    # At the earlier sync token: alice and bob joined, nobody else yet.
    assert members(at=token) == {alice.user_id: "join", bob.user_id: "join"}
    r = alice.req("GET", f"rooms/{q(room)}/members", params={"membership": "party"})
    assert r.status == 400
    r = alice.req("GET", f"rooms/{q(room)}/members", params={"at": "garbage"})
    assert r.status == 400


def test_joined_members_profile_and_refusal(api: Api) -> None:
    alice, bob, eve = users(api, 3)
    room = alice.create_room(preset="public_chat")
    put_state(alice, room, "m.room.member", {"membership": "join", "displayname": "Alice On-call"}, alice.user_id)
    bob.join(room)
    joined = bob.ok("GET", f"rooms/{q(room)}/joined_members")["joined"]
    assert joined[alice.user_id]["display_name"] == "Alice On-call"
    r = eve.req("GET", f"rooms/{q(room)}/joined_members")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_member_state_put_goes_through_membership_rules(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room()
    # Bob cannot join an invite-only room by writing his own member event.
    r = put_state(bob, room, "m.room.member", {"membership": "join"}, bob.user_id)
    assert r.status == 403
    r = put_state(alice, room, "m.room.member", {"membership": "wat"}, bob.user_id)
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    assert membership(alice, room, bob.user_id) is None
    # Alice sets her own display name in the room through the member event.
    r = put_state(alice, room, "m.room.member", {"membership": "join", "displayname": "A (room)"}, alice.user_id)
    assert r.status == 200
    assert get_state(alice, room, "m.room.member", alice.user_id).json["displayname"] == "A (room)"


def test_nobody_joins_for_someone_already_joined(api: Api) -> None:
    """The sender of a join must be the user joining (auth rules), also when that user is in the room already:
    neither the room's admin nor a member can write another joined member's join (e.g. to rename them)."""
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    def member_event(user_id: str) -> tuple[str, dict]:
        ev = get_state(alice, room, "m.room.member", user_id, format="event").json
        return ev["event_id"], ev["content"]

    before = {u.user_id: member_event(u.user_id) for u in (alice, bob)}
    r = put_state(alice, room, "m.room.member", {"membership": "join", "displayname": "PWNED"}, bob.user_id)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = put_state(bob, room, "m.room.member", {"membership": "join", "displayname": "PWNED"}, alice.user_id)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    for u in (alice, bob):
        assert member_event(u.user_id) == before[u.user_id]
    # Joining again oneself is still answered with the current join.
    assert _post(bob, room, "join").status == 200
    assert member_event(bob.user_id) == before[bob.user_id]


def test_joined_members_omits_missing_profile_fields(api: Api) -> None:
    """Regression (schemathesis ST108): a member without an avatar had ``"avatar_url": null``."""
    alice = users(api, 1)[0]
    room = alice.create_room()
    r = alice.req("GET", f"rooms/{q(room)}/joined_members")
    entry = r.json["joined"][alice.user_id]
    assert "avatar_url" not in entry
    assert all(isinstance(v, str) for v in entry.values())
    assert b"null" not in r.body


def test_malformed_user_ids_are_refused_and_store_nothing(api: Api) -> None:
    """Ban, unban, invite, kick and member state name a user by the spec's identifier grammar (printable ASCII
    localpart without ':', then a server name): anything else is 400 M_INVALID_PARAM and adds no member state."""
    alice, = users(api, 1)
    room = alice.create_room()
    server = alice.user_id.split(":", 1)[1]
    state_before = sorted(e["event_id"] for e in alice.ok("GET", f"rooms/{q(room)}/state"))
    bad_ids = [f"@a b:{server}", f"@:{server}", "@a:", f"@a\u0001:{server}", f"@\u00e9t\u00e9:{server}",
               f"@a:{server} x", "bob"]
    for bad in bad_ids:
        for action in ("ban", "unban", "invite", "kick"):
            r = _post(alice, room, action, {"user_id": bad, "reason": "x"})
            assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), (action, bad, r.status, r.json)
        r = put_state(alice, room, "m.room.member", {"membership": "ban"}, state_key=bad)
        assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM"), (bad, r.status, r.json)
    assert sorted(e["event_id"] for e in alice.ok("GET", f"rooms/{q(room)}/state")) == state_before
    # A well-formed ID of a user nobody registered may still be banned (pre-emptively), as before.
    stranger = f"@not-registered-yet:{server}"
    assert _post(alice, room, "ban", {"user_id": stranger}).status == 200
    assert membership(alice, room, stranger) == "ban"

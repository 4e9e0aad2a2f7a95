"""Access control on the room read paths, over HTTP on SQLite and PostgreSQL (reviewer findings 1-7).

Who may read what: invitees and forgotten rooms are treated as never joined, /event does not reveal whether an
event exists, timestamp_to_event and bundled aggregations obey history visibility, PUT of m.room.member goes
through the membership handler, presence is shared only with people one shares a room with, left-room /sync
timelines drop ignored users, lazy-loaded members are those of the chunk.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.roomlib import get_state, put_state, users
from tests.support.client import Api, User, q

V1 = "/_matrix/client/v1"


def _private_room(owner: User, visibility: str = "joined", **extra: Any) -> str:
    return owner.create_room(preset="private_chat", initial_state=[
        {"type": "m.room.history_visibility", "content": {"history_visibility": visibility}}], **extra)


def _member_event(viewer: User, room: str, user_id: str) -> dict[str, Any]:
    return viewer.ok("GET", f"rooms/{q(room)}/state/m.room.member/{q(user_id)}", params={"format": "event"})


def _event(viewer: User, room: str, event_id: str) -> dict[str, Any]:
    return viewer.ok("GET", f"rooms/{q(room)}/event/{q(event_id)}")


def _ts_to_event(viewer: User, room: str, ts: int, direction: str) -> Any:
    return viewer.req("GET", f"{V1}/rooms/{q(room)}/timestamp_to_event", params={"ts": ts, "dir": direction})


def test_invitee_cannot_read_state_members_or_history(api: Api) -> None:
    alice, bob = users(api, 2)
    for visibility in ("joined", "shared", "invited"):
        room = _private_room(alice, visibility, name="war room")
        secret = alice.send(room, "before the invite")
        alice.invite(room, bob.user_id)
        for path in ("state", "state/m.room.name/", "state/m.room.name", "members", "joined_members",
                     "messages", f"context/{q(secret)}"):
            r = bob.req("GET", f"rooms/{q(room)}/{path}", params={"dir": "b"})  # dir: required by /messages
            assert (r.status, r.errcode()) == (403, "M_FORBIDDEN"), (visibility, path, r.status, r.json)
        at = alice.sync()["next_batch"]
        r = bob.req("GET", f"rooms/{q(room)}/members", params={"at": at})
        assert r.status == 403, (visibility, r.json)
        assert bob.req("GET", f"rooms/{q(room)}/event/{q(secret)}").status == 404
        # The invite itself still reaches bob, as stripped state in /sync.
        invite = bob.sync()["rooms"]["invite"][room]["invite_state"]["events"]
        assert {"type": "m.room.name", "state_key": "", "sender": alice.user_id,
                "content": {"name": "war room"}} in invite
        # Once joined, the state is readable.
        bob.join(room)
        assert get_state(bob, room, "m.room.name").json == {"name": "war room"}


def test_invitee_reads_world_readable_room(api: Api) -> None:
    alice, bob = users(api, 2)
    room = _private_room(alice, "world_readable", name="status page")
    alice.invite(room, bob.user_id)
    assert get_state(bob, room, "m.room.name").json == {"name": "status page"}
    members = bob.ok("GET", f"rooms/{q(room)}/members")["chunk"]
    assert {m["state_key"]: m["content"]["membership"] for m in members} == {alice.user_id: "join",
                                                                              bob.user_id: "invite"}


def test_left_member_state_and_members_stop_at_leave(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = _private_room(alice, "shared", name="before")
    alice.invite(room, bob.user_id)
    bob.join(room)
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    put_state(alice, room, "m.room.name", {"name": "after"})
    alice.invite(room, carol.user_id)
    carol.join(room)
    assert get_state(bob, room, "m.room.name").json == {"name": "before"}
    names = [e["content"].get("name") for e in bob.ok("GET", f"rooms/{q(room)}/state") if e["type"] == "m.room.name"]
    assert names == ["before"]
    # ?at= a token after carol joined is clamped to bob's leave.
    at = alice.sync()["next_batch"]
    for params in ({}, {"at": at}):
        chunk = bob.ok("GET", f"rooms/{q(room)}/members", params=params)["chunk"]
        assert {m["state_key"]: m["content"]["membership"] for m in chunk} == {alice.user_id: "join",
                                                                                bob.user_id: "leave"}, params


def test_event_is_404_for_non_members_whether_or_not_it_exists(api: Api) -> None:
    alice, mallory = users(api, 2)
    room = _private_room(alice)
    real = alice.send(room, "pager rota")
    bogus = "$" + uuid.uuid4().hex
    answers = [mallory.req("GET", f"rooms/{q(room)}/event/{q(e)}") for e in (real, bogus)]
    assert [(r.status, r.errcode()) for r in answers] == [(404, "M_NOT_FOUND")] * 2
    assert answers[0].json == answers[1].json
    assert _event(alice, room, real)["content"]["body"] == "pager rota"


def test_timestamp_to_event_respects_visibility(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = _private_room(alice, "joined")
    alice.invite(room, bob.user_id)
    bob.join(room)
    seen = alice.send(room, "bob saw this")
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    leave = _member_event(alice, room, bob.user_id)
    after = alice.send(room, "after bob left")
    after_ts = _event(alice, room, after)["origin_server_ts"]
    alice.invite(room, carol.user_id)

    # Bob's closest visible event before "after" is his own leave (or, failing that, what he saw).
    r = _ts_to_event(bob, room, after_ts, "b")
    assert r.status == 200 and r.json["event_id"] in (leave["event_id"], seen), r.json
    assert r.json["event_id"] != after
    r = _ts_to_event(bob, room, after_ts, "f")
    # Nothing bob may see is at or after that time, unless his leave shares the millisecond.
    assert (r.status, r.json.get("event_id")) in ((404, None), (200, leave["event_id"])), r.json
    # The invitee carol gets nothing at all.
    r = _ts_to_event(carol, room, after_ts, "b")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # A member finds the event itself.
    r = _ts_to_event(alice, room, after_ts + 60_000, "b")
    assert r.status == 200 and r.json["event_id"] != leave["event_id"]
    assert r.json["origin_server_ts"] >= after_ts


def test_put_member_state_goes_through_membership_rules(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = _private_room(alice)
    ghost = f"@ghost{uuid.uuid4().hex[:8]}:{alice.user_id.split(':', 1)[1]}"
    r = put_state(alice, room, "m.room.member", {"membership": "invite"}, ghost)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    # An invite keeps its extra content (is_direct, reason).
    r = put_state(alice, room, "m.room.member", {"membership": "invite", "is_direct": True, "reason": "on call"},
                  bob.user_id)
    assert r.status == 200, r.json
    content = _member_event(alice, room, bob.user_id)["content"]
    assert content == {"membership": "invite", "is_direct": True, "reason": "on call"}
    assert put_state(bob, room, "m.room.member", {"membership": "join"}, bob.user_id).status == 200
    # Inviting a member is refused, as on POST /invite.
    r = put_state(alice, room, "m.room.member", {"membership": "invite"}, bob.user_id)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # A member re-sending join sets a per-room name.
    r = put_state(bob, room, "m.room.member", {"membership": "join", "displayname": "Bob (primary)"}, bob.user_id)
    assert r.status == 200
    member = _member_event(alice, room, bob.user_id)
    assert member["event_id"] == r.json["event_id"] and member["content"]["displayname"] == "Bob (primary)"
    # Another user's leave is a kick; a banned user's leave is an unban.
    assert put_state(alice, room, "m.room.member", {"membership": "leave", "reason": "rota"}, bob.user_id).status == 200
    member = _member_event(alice, room, bob.user_id)
    assert (member["sender"], member["content"]) == (alice.user_id, {"membership": "leave", "reason": "rota"})
    r = put_state(alice, room, "m.room.member", {"membership": "leave"}, bob.user_id)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")  # kicking someone who is not there
    assert put_state(alice, room, "m.room.member", {"membership": "ban"}, bob.user_id).status == 200
    assert _member_event(alice, room, bob.user_id)["content"]["membership"] == "ban"
    assert put_state(alice, room, "m.room.member", {"membership": "leave"}, bob.user_id).status == 200
    assert _member_event(alice, room, bob.user_id)["content"]["membership"] == "leave"
    r = put_state(alice, room, "m.room.member", {"membership": "leave", "reason": 5}, carol.user_id)
    assert r.status == 400


def test_put_member_join_of_restricted_room_gets_authoriser(api: Api) -> None:
    alice, bob = users(api, 2)
    team = alice.create_room(preset="private_chat")
    alice.invite(team, bob.user_id)
    bob.join(team)
    room = alice.create_room(preset="private_chat", room_version="10", initial_state=[
        {"type": "m.room.join_rules",
         "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": team}]}}])
    r = put_state(bob, room, "m.room.member", {"membership": "join", "displayname": "Bob"}, bob.user_id)
    assert r.status == 200, r.json
    content = _member_event(alice, room, bob.user_id)["content"]
    assert content["membership"] == "join" and content["join_authorised_via_users_server"] == alice.user_id
    assert content["displayname"] == "Bob"


def _relations(event: dict[str, Any]) -> dict[str, Any]:
    return event.get("unsigned", {}).get("m.relations", {})


def test_bundled_aggregations_hide_children_after_leave(api: Api) -> None:
    alice, bob = users(api, 2)
    room = _private_room(alice, "shared")
    alice.invite(room, bob.user_id)
    bob.join(room)
    edited = alice.send(room, "incident open")
    early_edit = alice.send(room, "* incident open (sev2)", **{
        "m.new_content": {"msgtype": "m.text", "body": "incident open (sev2)"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": edited}})
    root = alice.send(room, "thread root")
    reply1 = alice.send(room, "reply seen", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    late_edit = alice.send(room, "* incident resolved", **{
        "m.new_content": {"msgtype": "m.text", "body": "incident resolved"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": edited}})
    reply2 = alice.send(room, "reply after leave", **{"m.relates_to": {"rel_type": "m.thread", "event_id": root}})

    assert _relations(_event(alice, room, edited))["m.replace"]["event_id"] == late_edit
    assert _relations(_event(bob, room, edited))["m.replace"]["event_id"] == early_edit
    thread = _relations(_event(alice, room, root))["m.thread"]
    assert (thread["latest_event"]["event_id"], thread["count"]) == (reply2, 2)
    thread = _relations(_event(bob, room, root))["m.thread"]
    assert (thread["latest_event"]["event_id"], thread["count"]) == (reply1, 1)
    assert bob.req("GET", f"rooms/{q(room)}/event/{q(late_edit)}").status == 404


def test_bundled_references_hide_children_after_leave(api: Api) -> None:
    """The m.reference bundle lists event IDs: like edits and thread replies, only those the user may see, so
    someone who left does not learn of (or get the IDs of) references made after they left."""
    alice, bob = users(api, 2)
    room = _private_room(alice, "shared")
    alice.invite(room, bob.user_id)
    bob.join(room)
    alert = alice.send(room, "alert fired")
    ref = {"m.relates_to": {"rel_type": "m.reference", "event_id": alert}}
    early_ref = alice.send(room, "ticket", **ref)
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    late_ref = alice.send(room, "postmortem", **ref)

    assert _relations(_event(alice, room, alert))["m.reference"] == {
        "chunk": [{"event_id": early_ref}, {"event_id": late_ref}]}
    assert _relations(_event(bob, room, alert))["m.reference"] == {"chunk": [{"event_id": early_ref}]}
    # A member who joined after both sees both ("shared" history).
    carol = users(api, 1)[0]
    alice.invite(room, carol.user_id)
    carol.join(room)
    assert len(_relations(_event(carol, room, alert))["m.reference"]["chunk"]) == 2


def test_presence_needs_a_shared_room(api: Api) -> None:
    alice, bob = users(api, 2)
    alice.ok("PUT", f"presence/{q(alice.user_id)}/status", {"presence": "online", "status_msg": "on call"})
    r = bob.req("GET", f"presence/{q(alice.user_id)}/status")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert alice.ok("GET", f"presence/{q(alice.user_id)}/status")["status_msg"] == "on call"
    room = alice.create_room(preset="private_chat")
    alice.invite(room, bob.user_id)
    assert bob.req("GET", f"presence/{q(alice.user_id)}/status").status == 403  # an invite is not sharing
    bob.join(room)
    assert bob.ok("GET", f"presence/{q(alice.user_id)}/status")["status_msg"] == "on call"
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    assert bob.req("GET", f"presence/{q(alice.user_id)}/status").status == 403


def test_left_room_sync_drops_ignored_users(api: Api) -> None:
    alice, bob, carol = users(api, 3)
    room = _private_room(alice, "shared")
    for u in (bob, carol):
        alice.invite(room, u.user_id)
        u.join(room)
    bob.ok("PUT", f"user/{q(bob.user_id)}/account_data/m.ignored_user_list",
           {"ignored_users": {carol.user_id: {}}})
    carol.send(room, "from carol")
    alice.send(room, "from alice")
    since = bob.sync()["next_batch"]
    carol.send(room, "carol again")
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    for kw in ({"filter": {"room": {"include_leave": True}}}, {"since": since}):
        left = bob.sync(**kw)["rooms"]["leave"][room]
        senders = {e["sender"] for e in left["timeline"]["events"] if e["type"] == "m.room.message"}
        assert carol.user_id not in senders, kw
    tl = bob.sync(filter={"room": {"include_leave": True}})["rooms"]["leave"][room]["timeline"]["events"]
    assert "from alice" in [e["content"].get("body") for e in tl]


def test_lazy_members_of_messages_are_those_of_the_chunk(api: Api) -> None:
    alice, bob = users(api, 2)
    room = _private_room(alice, "shared")
    alice.invite(room, bob.user_id)
    bob.join(room)
    put_state(bob, room, "m.room.member", {"membership": "join", "displayname": "Bob old"}, bob.user_id)
    msg = bob.send(room, "paging")
    token = alice.sync()["next_batch"]
    put_state(bob, room, "m.room.member", {"membership": "join", "displayname": "Bob new"}, bob.user_id)
    body = alice.ok("GET", f"rooms/{q(room)}/messages",
                    params={"dir": "b", "from": token, "limit": 1, "filter": {"lazy_load_members": True}})
    assert [e["event_id"] for e in body["chunk"]] == [msg]
    assert [(e["state_key"], e["content"].get("displayname")) for e in body["state"]] == [(bob.user_id, "Bob old")]


def test_forgotten_room_history_is_closed(api: Api) -> None:
    alice, bob = users(api, 2)
    room = _private_room(alice, "shared")
    alice.invite(room, bob.user_id)
    bob.join(room)
    msg = alice.send(room, "seen while joined")
    bob.ok("POST", f"rooms/{q(room)}/leave", {})
    assert bob.req("GET", f"rooms/{q(room)}/messages", params={"dir": "b"}).status == 200
    assert _event(bob, room, msg)["content"]["body"] == "seen while joined"
    bob.ok("POST", f"rooms/{q(room)}/forget", {})
    for path in ("messages", f"context/{q(msg)}", "state", "members", "state/m.room.create/"):
        r = bob.req("GET", f"rooms/{q(room)}/{path}", params={"dir": "b"})  # dir: required by /messages
        assert (r.status, r.errcode()) == (403, "M_FORBIDDEN"), (path, r.json)
    assert bob.req("GET", f"rooms/{q(room)}/event/{q(msg)}").status == 404
    # Joining again reopens what the room's visibility allows.
    alice.invite(room, bob.user_id)
    bob.join(room)
    assert _event(bob, room, msg)["content"]["body"] == "seen while joined"

"""Profiles over HTTP on SQLite and PostgreSQL: reads, writes, limits, and the member-event update in rooms."""

from __future__ import annotations

from tests.support.client import CS, Api, q, register


def test_set_and_get_profile_fields(api: Api) -> None:
    a, b = register(api), register(api)
    assert a.ok("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "Alice On-Call"}) == {}
    assert a.ok("PUT", f"profile/{q(a.user_id)}/avatar_url", {"avatar_url": "mxc://test.local/abc"}) == {}
    assert b.ok("GET", f"profile/{q(a.user_id)}") == {"displayname": "Alice On-Call",
                                                      "avatar_url": "mxc://test.local/abc"}
    assert b.ok("GET", f"profile/{q(a.user_id)}/displayname") == {"displayname": "Alice On-Call"}
    assert b.ok("GET", f"profile/{q(a.user_id)}/avatar_url") == {"avatar_url": "mxc://test.local/abc"}
    # Reads need no token.
    r = api.request("GET", f"{CS}/profile/{q(a.user_id)}")
    assert (r.status, r.json["displayname"]) == (200, "Alice On-Call")
    # Clearing removes the field.
    a.ok("PUT", f"profile/{q(a.user_id)}/avatar_url", {"avatar_url": None})
    assert b.ok("GET", f"profile/{q(a.user_id)}") == {"displayname": "Alice On-Call"}
    r = b.req("GET", f"profile/{q(a.user_id)}/avatar_url")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")


def test_profile_errors(api: Api) -> None:
    a, b = register(api), register(api)
    r = a.req("GET", f"profile/{q('@nobody_here:test.local')}")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = a.req("GET", f"profile/{q('@nobody_here:test.local')}/displayname")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = a.req("PUT", f"profile/{q(b.user_id)}/displayname", {"displayname": "hijack"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = a.req("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "x" * 257})
    assert r.status == 400
    a.ok("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "x" * 256})
    r = a.req("PUT", f"profile/{q(a.user_id)}/avatar_url", {"avatar_url": "mxc://a/" + "b" * 1000})
    assert r.status == 400
    r = a.req("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": 42})
    assert r.status == 400
    r = a.req("PUT", f"profile/{q(a.user_id)}/displayname", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = a.req("PUT", f"profile/{q(a.user_id)}/displayname", raw_body=b"not json")
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")
    r = api.request("PUT", f"{CS}/profile/{q(a.user_id)}/displayname", {"displayname": "anon"})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    assert a.ok("GET", f"profile/{q(a.user_id)}/displayname") == {"displayname": "x" * 256}


def test_profile_change_updates_member_event_in_joined_rooms(api: Api) -> None:
    a, b = register(api), register(api)
    room1 = a.create_room(preset="public_chat")
    room2 = a.create_room(preset="public_chat")
    left = a.create_room(preset="public_chat")
    b.join(room1)
    since = b.sync()["next_batch"]
    a.ok("POST", f"rooms/{q(left)}/leave", {})
    a.ok("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "Renamed Responder"})
    a.ok("PUT", f"profile/{q(a.user_id)}/avatar_url", {"avatar_url": "mxc://test.local/face"})
    for room_id in (room1, room2):
        member = a.ok("GET", f"rooms/{q(room_id)}/state/m.room.member/{q(a.user_id)}")
        assert member == {"membership": "join", "displayname": "Renamed Responder",
                          "avatar_url": "mxc://test.local/face"}
    r = a.req("GET", f"rooms/{q(left)}/state/m.room.member/{q(a.user_id)}")
    assert r.status != 200 or r.json.get("membership") == "leave"
    timeline = b.sync(since=since)["rooms"]["join"][room1]["timeline"]["events"]
    updates = [e for e in timeline if e["type"] == "m.room.member" and e["state_key"] == a.user_id]
    assert [e["content"].get("displayname") for e in updates] == ["Renamed Responder", "Renamed Responder"]
    # Setting the same value again sends nothing new.
    a.ok("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "Renamed Responder"})
    again = b.sync(since=b.sync(since=since)["next_batch"])
    assert room1 not in again["rooms"]["join"]

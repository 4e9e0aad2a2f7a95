"""Ignoring users (spec: "Ignoring Users"): after m.ignored_user_list names a user, /sync leaves out their
timeline events (in every later sync, not only the one carrying the account data change) and invites, while
their state changes still arrive; search leaves them out too."""

from __future__ import annotations

from tests.support.client import Api, User, q, register


def ignore(user: User, *others: User) -> None:
    user.ok("PUT", f"user/{q(user.user_id)}/account_data/m.ignored_user_list",
            {"ignored_users": {o.user_id: {} for o in others}})


def bodies(sync: dict, room_id: str) -> list[str]:
    room = sync["rooms"]["join"].get(room_id, {})
    return [e["content"].get("body") for e in room.get("timeline", {}).get("events", [])
            if e["type"] == "m.room.message"]


def test_ignored_users_messages_left_out_of_later_syncs(api: Api) -> None:
    a, b, c = register(api), register(api), register(api)
    room_id = a.create_room(preset="public_chat", power_level_content_override={"events": {"m.room.topic": 0}})
    b.join(room_id)
    c.join(room_id)
    ignore(a, b)
    since = a.sync()["next_batch"]
    since = a.sync(since=since)["next_batch"]                # a sync that no longer carries the account data
    b.send(room_id, "from the ignored user")
    c.send(room_id, "from someone else")
    incremental = a.sync(since=since)
    assert bodies(incremental, room_id) == ["from someone else"]
    assert "from the ignored user" not in bodies(a.sync(), room_id)   # nor in an initial sync

    # State from the ignored user still arrives: it changes the room for everyone.
    since = incremental["next_batch"]
    b.ok("PUT", f"rooms/{q(room_id)}/state/m.room.topic", {"topic": "set by b"})
    timeline = a.sync(since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    assert [e["content"].get("topic") for e in timeline if e["type"] == "m.room.topic"] == ["set by b"]

    # Un-ignoring brings their new messages back.
    ignore(a)
    since = a.sync()["next_batch"]
    b.send(room_id, "heard again")
    assert bodies(a.sync(since=since), room_id) == ["heard again"]


def test_invites_from_ignored_users_hidden(api: Api) -> None:
    a, pest, friend = register(api), register(api), register(api)
    ignore(a, pest)
    since = a.sync()["next_batch"]
    pest_room = pest.create_room()
    pest.invite(pest_room, a.user_id)
    friend_room = friend.create_room()
    friend.invite(friend_room, a.user_id)
    invites = a.sync(since=since)["rooms"]["invite"]
    assert set(invites) == {friend_room}
    assert set(a.sync()["rooms"]["invite"]) == {friend_room}


def test_messages_and_context_hide_ignored_users(api: Api) -> None:
    a, b, c = register(api), register(api), register(api)
    room = a.create_room(preset="public_chat")
    b.join(room)
    c.join(room)
    first = b.send(room, "from b")
    c.send(room, "from c")
    a.ok("PUT", f"user/{q(a.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {b.user_id: {}}})
    chunk = a.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})["chunk"]
    bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
    assert bodies == ["from c"]
    assert any(e["type"] == "m.room.member" and e["state_key"] == b.user_id for e in chunk)
    ctx = a.ok("GET", f"rooms/{q(room)}/context/{q(first)}", params={"limit": 10})
    around = [e["content"].get("body") for e in ctx["events_before"] + ctx["events_after"]
              if e["type"] == "m.room.message"]
    assert around == ["from c"]

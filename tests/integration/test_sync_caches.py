"""The in-memory caches behind /sync follow every change of the data they hold.

Each test first reads through the cache (so it is filled), then changes the underlying data through the API and
checks that the next read sees the change. Caches covered: a user's memberships (RoomStore), membership and
state histories (history visibility), the ignore list (account data), stored filters, one-time/fallback key
counts, the empty-inbox knowledge of to-device, the relation-free set (bundled aggregations), the per-room
recent-events index (timelines and /messages), state at a position (lazy-loaded members) and the "no membership
change since" shortcut of device lists.
"""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.e2e_keys_support import SCS, DeviceKeys, claim, upload
from tests.support.client import Api, q, register


def _timeline_ids(sync: dict[str, Any], room_id: str) -> list[str]:
    room = sync["rooms"]["join"].get(room_id)
    return [e["event_id"] for e in room["timeline"]["events"]] if room else []


def test_membership_cache_follows_join_leave_and_forget(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    since = b.sync()["next_batch"]  # fills b's membership cache (no rooms)
    b.join(room)
    s = b.sync(since)
    assert room in s["rooms"]["join"]
    b.ok("POST", f"rooms/{q(room)}/leave", {})
    s2 = b.sync(s["next_batch"])
    assert room in s2["rooms"]["leave"] and room not in s2["rooms"]["join"]
    full = b.sync(filter={"room": {"include_leave": True}})
    assert room in full["rooms"]["leave"]
    b.ok("POST", f"rooms/{q(room)}/forget", {})
    full = b.sync(filter={"room": {"include_leave": True}})
    assert room not in full["rooms"]["leave"]
    b.join(room)
    assert room in b.sync()["rooms"]["join"]


def test_visibility_follows_leave_rejoin_and_history_visibility_change(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    b.join(room)
    since = b.sync()["next_batch"]
    first = a.send(room, "while joined")
    s = b.sync(since)
    assert first in _timeline_ids(s, room)  # fills b's membership history of the room
    b.ok("POST", f"rooms/{q(room)}/leave", {})
    hidden = a.send(room, "after b left")
    msgs = b.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})
    assert hidden not in [e["event_id"] for e in msgs["chunk"]]
    # history_visibility "joined": what is sent while b is away stays hidden after b rejoins
    a.ok("PUT", f"rooms/{q(room)}/state/m.room.history_visibility/", {"history_visibility": "joined"})
    away = a.send(room, "while b is away, joined-only")
    b.join(room)
    after = a.send(room, "after rejoin")
    msgs = b.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert after in ids and first in ids
    assert away not in ids
    # a newcomer under "joined" sees nothing from before their join
    c = register(api)
    c.join(room)
    late = a.send(room, "for c")
    msgs = c.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 50})
    ids = [e["event_id"] for e in msgs["chunk"]]
    assert late in ids and after not in ids


def test_ignore_list_cache_follows_updates(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    b.join(room)
    since = b.sync()["next_batch"]
    shown = a.send(room, "before ignoring")
    s = b.sync(since)
    assert shown in _timeline_ids(s, room)  # the ignore list (empty) is now cached
    b.ok("PUT", f"user/{q(b.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {a.user_id: {}}})
    s = b.sync(s["next_batch"])
    muted = a.send(room, "while ignored")
    s2 = b.sync(s["next_batch"])
    assert muted not in _timeline_ids(s2, room)
    b.ok("PUT", f"user/{q(b.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {}})
    s3 = b.sync(s2["next_batch"])
    back = a.send(room, "after unignoring")
    assert back in _timeline_ids(b.sync(s3["next_batch"]), room)


def test_account_data_reads_follow_writes(api: Api) -> None:
    a = register(api)
    path = f"user/{q(a.user_id)}/account_data/org.example.cache"
    assert a.req("GET", path).status == 404  # "never set" is cached too
    a.ok("PUT", path, {"v": 1})
    assert a.ok("GET", path) == {"v": 1}
    a.ok("PUT", path, {"v": 2})
    assert a.ok("GET", path) == {"v": 2}


def test_stored_filters_are_per_user_and_id(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    for _ in range(3):
        a.send(room)
    f1 = a.ok("POST", f"user/{q(a.user_id)}/filter", {"room": {"timeline": {"limit": 1}}})["filter_id"]
    f2 = a.ok("POST", f"user/{q(a.user_id)}/filter", {"room": {"timeline": {"limit": 2}}})["filter_id"]
    assert f1 != f2
    for _ in range(2):  # the second round is served from the cache
        assert len(a.sync(filter=f1)["rooms"]["join"][room]["timeline"]["events"]) == 1
        assert len(a.sync(filter=f2)["rooms"]["join"][room]["timeline"]["events"]) == 2
    r = b.req("GET", "sync", params={"filter": f2})  # a's filter ID means nothing for b
    assert (r.status, r.json["errcode"]) == (404, "M_NOT_FOUND")


def test_key_counts_follow_upload_claim_and_fallback_use(api: Api) -> None:
    a, b = register(api), register(api)
    dk = DeviceKeys(a.user_id, a.device_id)
    s = a.sync()
    assert s["device_one_time_keys_count"][SCS] == 0
    upload(a, dk, otks=3, fallback=True)
    s = a.sync(s["next_batch"])
    assert s["device_one_time_keys_count"][SCS] == 3
    assert s["device_unused_fallback_key_types"] == [SCS]
    for left in (2, 1, 0):
        claim(b, a.user_id, a.device_id)
        s = a.sync(s["next_batch"])
        assert s["device_one_time_keys_count"][SCS] == left
    assert s["device_unused_fallback_key_types"] == [SCS]
    claim(b, a.user_id, a.device_id)  # no one-time key left: the fallback key is used
    s = a.sync(s["next_batch"])
    assert s["device_unused_fallback_key_types"] == []
    upload(a, dk, otks=2)
    assert a.sync(s["next_batch"])["device_one_time_keys_count"][SCS] == 2


def test_to_device_after_empty_inbox_was_seen(api: Api) -> None:
    a, b = register(api), register(api)
    s = b.sync()
    s = b.sync(s["next_batch"])  # the inbox is now known to be empty
    a.ok("PUT", f"sendToDevice/org.example.ping/{uuid.uuid4().hex}", {"messages": {b.user_id: {b.device_id: {}}}})
    s2 = b.sync(s["next_batch"])
    assert [e["type"] for e in s2["to_device"]["events"]] == ["org.example.ping"]
    # not acknowledged yet: the same since delivers it again
    assert [e["type"] for e in b.sync(s["next_batch"])["to_device"]["events"]] == ["org.example.ping"]
    s3 = b.sync(s2["next_batch"])
    assert s3["to_device"]["events"] == []
    a.ok("PUT", f"sendToDevice/org.example.ping/{uuid.uuid4().hex}", {"messages": {b.user_id: {"*": {"n": 2}}}})
    assert [e["content"] for e in b.sync(s3["next_batch"])["to_device"]["events"]] == [{"n": 2}]


def test_bundled_aggregations_appear_after_relation(api: Api) -> None:
    a = register(api)
    room = a.create_room(preset="public_chat")
    since = a.sync()["next_batch"]
    parent = a.send(room, "original")
    s = a.sync(since)
    ev = next(e for e in s["rooms"]["join"][room]["timeline"]["events"] if e["event_id"] == parent)
    assert "m.relations" not in ev.get("unsigned", {})  # the parent is now known relation-free
    edit = a.ok("PUT", f"rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}", {
        "msgtype": "m.text", "body": "* edited", "m.new_content": {"msgtype": "m.text", "body": "edited"},
        "m.relates_to": {"rel_type": "m.replace", "event_id": parent}})["event_id"]
    got = a.ok("GET", f"rooms/{q(room)}/event/{q(parent)}")
    assert got["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit
    full = a.sync(filter={"room": {"timeline": {"limit": 5}}})
    ev = next(e for e in full["rooms"]["join"][room]["timeline"]["events"] if e["event_id"] == parent)
    assert ev["unsigned"]["m.relations"]["m.replace"]["event_id"] == edit


def test_recent_events_index_timeline_gaps_messages_and_redaction(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    b.join(room)
    since = b.sync()["next_batch"]
    sent = [a.send(room, f"m{i}") for i in range(300)]  # more than the index keeps per room
    s = b.sync(since, filter={"room": {"timeline": {"limit": 400}}})
    assert _timeline_ids(s, room) == sent
    assert s["rooms"]["join"][room]["timeline"]["limited"] is False
    s = b.sync(since, filter={"room": {"timeline": {"limit": 10}}})
    assert _timeline_ids(s, room) == sent[-10:]
    assert s["rooms"]["join"][room]["timeline"]["limited"] is True
    msgs = b.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 20})
    assert [e["event_id"] for e in msgs["chunk"]] == sent[::-1][:20]
    a.ok("PUT", f"rooms/{q(room)}/redact/{q(sent[-1])}/{uuid.uuid4().hex}", {})
    msgs = b.ok("GET", f"rooms/{q(room)}/messages", params={"dir": "b", "limit": 3})
    redacted = next(e for e in msgs["chunk"] if e["event_id"] == sent[-1])
    assert redacted["content"] == {}


def test_lazy_members_after_state_changes(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 2}}}
    since = a.sync(filter=lazy)["next_batch"]
    b.join(room)
    b.send(room, "one")
    b.ok("PUT", f"profile/{q(b.user_id)}/displayname", {"displayname": "Bee"})
    b.send(room, "two")
    s = a.sync(since, filter=lazy)
    joined = s["rooms"]["join"][room]
    timeline = joined["timeline"]["events"]
    assert [e["type"] for e in timeline] == ["m.room.member", "m.room.message"]
    assert timeline[0]["content"]["displayname"] == "Bee"
    # the state before the timeline holds b's member event as it was then (before the rename)
    members = {e["state_key"]: e for e in joined["state"]["events"] if e["type"] == "m.room.member"}
    assert members[b.user_id]["content"]["membership"] == "join"
    assert members[b.user_id]["content"].get("displayname") != "Bee"
    # with nothing new in the room since, the state at the timeline's start is the current state
    c = register(api)
    c.join(room)
    s2 = c.sync(filter=lazy)
    members = {e["state_key"]: e for e in s2["rooms"]["join"][room]["state"]["events"]
               if e["type"] == "m.room.member"}
    assert members[b.user_id]["content"]["displayname"] == "Bee"


def test_device_list_changed_after_a_quiet_period(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(preset="public_chat")
    since = a.sync()["next_batch"]
    a.send(room, "no membership change in this range")
    s = a.sync(since)
    assert b.user_id not in s.get("device_lists", {}).get("changed", [])
    b.join(room)
    s2 = a.sync(s["next_batch"])
    assert b.user_id in s2["device_lists"]["changed"]



def test_incremental_presence_only_from_changed_co_members(api: Api) -> None:
    a, b, c = register(api), register(api), register(api)
    room = a.create_room(preset="public_chat")
    b.join(room)
    sb, sc = b.sync()["next_batch"], c.sync()["next_batch"]
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "online", "status_msg": "on call"})
    got = b.sync(sb, filter={"presence": {"senders": [a.user_id]}})
    assert [e["content"].get("status_msg") for e in got["presence"]["events"]] == ["on call"]
    # c shares no room with a: the change is not c's business
    assert [e for e in c.sync(sc)["presence"]["events"] if e["sender"] == a.user_id] == []
    # nothing changed since b's last token: nothing again
    again = b.sync(got["next_batch"], filter={"presence": {"senders": [a.user_id]}})
    assert again["presence"]["events"] == []

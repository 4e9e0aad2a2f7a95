"""Presence over HTTP on SQLite and PostgreSQL: status endpoints, errors and presence in /sync."""

from __future__ import annotations

import threading
import time

from tests.support.client import Api, q, register


def test_set_and_get_presence(api: Api) -> None:
    a, b = register(api), register(api)
    # GET of another user's presence needs a shared room (test_access_control covers the 403).
    room = a.ok("POST", "createRoom", {"preset": "public_chat"})["room_id"]
    b.ok("POST", f"join/{q(room)}", {})
    assert a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "online", "status_msg": "on call"}) == {}
    got = b.ok("GET", f"presence/{q(a.user_id)}/status")
    assert got["presence"] == "online" and got["status_msg"] == "on call"
    assert got["currently_active"] is True
    assert isinstance(got["last_active_ago"], int) and 0 <= got["last_active_ago"] < 60_000
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "unavailable"})
    got = b.ok("GET", f"presence/{q(a.user_id)}/status")
    assert got["presence"] == "unavailable" and "status_msg" not in got and got["currently_active"] is False
    # Never set: offline (asked by the user itself: joining a room would already make it active).
    c = register(api)
    assert c.ok("GET", f"presence/{q(c.user_id)}/status")["presence"] == "offline"


def test_presence_errors(api: Api) -> None:
    a, b = register(api), register(api)
    r = a.req("PUT", f"presence/{q(b.user_id)}/status", {"presence": "online"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    for body in ({"presence": "busy"}, {"presence": 1}, {"presence": "online", "status_msg": 5}):
        r = a.req("PUT", f"presence/{q(a.user_id)}/status", body)
        assert r.status == 400, body
    r = a.req("PUT", f"presence/{q(a.user_id)}/status", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = a.req("GET", f"presence/{q('@ghost_user:test.local')}/status")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = api.request("GET", f"/_matrix/client/v3/presence/{q(a.user_id)}/status")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")


def _presence_of(sync: dict, user_id: str) -> dict | None:
    for ev in sync.get("presence", {}).get("events", []):
        if ev["type"] == "m.presence" and ev["sender"] == user_id:
            return ev["content"]
    return None


def test_presence_in_sync_for_room_members_only(api: Api) -> None:
    a, b, stranger = register(api), register(api), register(api)
    room_id = a.create_room(preset="public_chat")
    b.join(room_id)
    b_since = b.sync(set_presence="offline")["next_batch"]
    s_since = stranger.sync(set_presence="offline")["next_batch"]
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "online", "status_msg": "paging"})
    got = _presence_of(b.sync(since=b_since, set_presence="offline"), a.user_id)
    assert got is not None and got["presence"] == "online" and got["status_msg"] == "paging"
    assert _presence_of(stranger.sync(since=s_since, set_presence="offline"), a.user_id) is None
    # An initial sync includes co-members who are not offline.
    assert _presence_of(b.sync(set_presence="offline"), a.user_id)["presence"] == "online"


def test_presence_change_wakes_a_waiting_sync(api: Api) -> None:
    a, b = register(api), register(api)
    room_id = a.create_room(preset="public_chat")
    b.join(room_id)
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "online"})
    # Drain what is there already (joining is activity: b itself came online).
    since = b.sync(set_presence="offline")["next_batch"]
    for _ in range(5):
        nxt = b.sync(since=since, set_presence="offline")
        if nxt["next_batch"] == since:
            break
        since = nxt["next_batch"]
    result: dict = {}

    def waiter() -> None:
        # b's own activity (its join) is recorded in the background and may still wake a long-poll after the
        # drain above: wait on until a's presence comes, at most three long-polls.
        start, token = time.monotonic(), since
        for _ in range(3):
            body = b.sync(since=token, timeout=30_000, set_presence="offline")
            token = body["next_batch"]
            if _presence_of(body, a.user_id) is not None:
                result["presence"] = _presence_of(body, a.user_id)["presence"]
                break
        result["elapsed"] = time.monotonic() - start

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.5)
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "unavailable"})
    t.join(100)
    # Well before the 30 s timeout (a timed-out long-poll would carry the change too): it was woken.
    assert result["presence"] == "unavailable"
    assert result["elapsed"] < 15


def test_sync_set_presence_brings_user_online(api: Api) -> None:
    a, b = register(api), register(api)
    room_id = a.create_room(preset="public_chat")
    b.join(room_id)
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "offline"})
    a.sync(set_presence="offline")  # leaves presence alone
    assert b.ok("GET", f"presence/{q(a.user_id)}/status")["presence"] == "offline"
    a.sync()  # set_presence defaults to online
    assert b.ok("GET", f"presence/{q(a.user_id)}/status")["presence"] == "online"
    a.sync(set_presence="unavailable")
    assert b.ok("GET", f"presence/{q(a.user_id)}/status")["presence"] == "unavailable"
    # Sending a message is activity: the user is online again.
    a.send(room_id, "ack")
    deadline = time.monotonic() + 15  # the activity is recorded in the background
    while b.ok("GET", f"presence/{q(a.user_id)}/status")["presence"] != "online":
        assert time.monotonic() < deadline, "still not online after sending"
        time.sleep(0.1)


def test_presence_of_members_arrives_when_a_room_is_newly_shared(api: Api) -> None:
    a, b = register(api), register(api)
    a.ok("PUT", f"presence/{q(a.user_id)}/status", {"presence": "online", "status_msg": "primary on call"})
    since = b.sync(filter={"presence": {"types": ["m.presence"]}})["next_batch"]
    room = a.create_room(preset="public_chat")
    b.join(room)
    got = b.sync(since=since)
    events = {e["sender"]: e["content"] for e in got["presence"]["events"]}
    assert events[a.user_id]["presence"] == "online"
    assert events[a.user_id]["status_msg"] == "primary on call"

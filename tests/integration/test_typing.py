"""Typing notifications through /sync, with timeouts (issue 2 item 5)."""

from __future__ import annotations

import threading
import time

from tests.integration.roomlib import users
from tests.support.client import Api, q


def _typing_users(sync_body: dict, room_id: str) -> list[str] | None:
    room = sync_body["rooms"]["join"].get(room_id)
    if not room:
        return None
    for ev in room["ephemeral"]["events"]:
        if ev["type"] == "m.typing":
            return ev["content"]["user_ids"]
    return None


def _set(user, room_id: str, typing: bool, timeout: int | None = None):
    body: dict = {"typing": typing}
    if timeout is not None:
        body["timeout"] = timeout
    return user.req("PUT", f"rooms/{q(room_id)}/typing/{q(user.user_id)}", body)


def test_typing_start_stop_in_sync(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    assert _set(alice, room, True, 30000).status == 200
    s = bob.sync(since=token)
    assert _typing_users(s, room) == [alice.user_id]
    # Unchanged typing is not repeated.
    s2 = bob.sync(since=s["next_batch"])
    assert _typing_users(s2, room) is None
    assert _set(alice, room, False).status == 200
    s3 = bob.sync(since=s2["next_batch"])
    assert _typing_users(s3, room) == []


def test_typing_wakes_long_poll_and_expires(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    # The typing timeout must outlast the round trip to bob's /sync: the answer shows whoever types when it is
    # built, and on a busy machine that can be a while after the wake-up (with 800 ms it was sometimes nobody).
    threading.Timer(0.3, lambda: _set(alice, room, True, 3000)).start()
    started = time.monotonic()
    # Both long-polls may wait 30 s: answering well before that shows they were woken, not timed out.
    s = bob.sync(since=token, timeout=30000)
    assert time.monotonic() - started < 15
    assert _typing_users(s, room) == [alice.user_id]
    # The timeout ends it by itself: the long-poll wakes with an empty list.
    s2 = bob.sync(since=s["next_batch"], timeout=30000)
    assert time.monotonic() - started < 20
    assert _typing_users(s2, room) == []


def test_typing_refusals(api: Api) -> None:
    alice, bob, eve = users(api, 3)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    token = bob.sync()["next_batch"]
    r = alice.req("PUT", f"rooms/{q(room)}/typing/{q(bob.user_id)}", {"typing": True})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = _set(eve, room, True)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = alice.req("PUT", f"rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": "yes"})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = alice.req("PUT", f"rooms/{q(room)}/typing/{q(alice.user_id)}", {})
    assert r.status == 400
    r = alice.req("PUT", f"rooms/{q(room)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": "long"})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    # None of that made anyone type.
    assert _typing_users(bob.sync(since=token), room) is None

"""Durability: every acknowledged event survives a SIGKILL of the server (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading
import time
from typing import Any

from tests.integration.roomlib import all_messages
from tests.support.client import Api, q, register


def start_with_two_members(fresh_homeserver: Any) -> tuple[Any, Api, Any, Any, str]:
    """Start the test's own homeserver; alice creates a public room and bob joins it.
    Returns (hs, api, alice, bob, room_id)."""
    hs = fresh_homeserver.start()
    api = Api(hs.base_url)
    alice, bob = register(api), register(api)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    return hs, api, alice, bob, room


def test_acknowledged_events_survive_sigkill(fresh_homeserver) -> None:
    hs = fresh_homeserver.start()
    api = Api(hs.base_url)
    alice, bob = register(api), register(api)
    room = alice.create_room(preset="public_chat", name="durable")
    bob.join(room)
    acked: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def sender(user, prefix: str) -> None:
        for i in range(400):
            if stop.is_set():
                return
            try:
                r = user.req("PUT", f"rooms/{q(room)}/send/m.room.message/{prefix}{i}",
                             {"msgtype": "m.text", "body": f"{prefix}{i}"}, timeout=10)
            except OSError:
                return  # the server died mid-request: that send was never acknowledged
            if r.status == 200:
                with lock:
                    acked.append(r.json["event_id"])

    threads = [threading.Thread(target=sender, args=(u, p)) for u, p in ((alice, "a"), (bob, "b"))]
    for t in threads:
        t.start()
    # Kill while sends are in flight, once a fair number is acknowledged.
    for _ in range(200):
        with lock:
            if len(acked) >= 40:
                break
        threading.Event().wait(0.05)
    hs.kill()
    stop.set()
    for t in threads:
        t.join(15)
    assert len(acked) >= 40
    hs.start()
    history = {e["event_id"] for e in all_messages(alice, room)}
    missing = [e for e in acked if e not in history]
    assert not missing, f"{len(missing)} acknowledged events lost"
    # The server keeps working after the crash: new events append after the old ones, in order.
    new_id = alice.send(room, "after restart")
    events = all_messages(alice, room)
    assert events[-1]["event_id"] == new_id
    positions = [e["event_id"] for e in events]
    assert len(positions) == len(set(positions))
    sync = bob.sync()
    assert sync["rooms"]["join"][room]["timeline"]["events"][-1]["event_id"] == new_id


def test_sync_token_from_before_restart_still_gets_typing(fresh_homeserver) -> None:
    """Typing lives in memory; a restart must not make old sync tokens skip the next typing notifications."""
    hs, api, alice, bob, room = start_with_two_members(fresh_homeserver)
    path = f"rooms/{q(room)}/typing/{q(alice.user_id)}"
    for typing in (True, False, True, False):
        alice.ok("PUT", path, {"typing": typing, "timeout": 30000})
    token = bob.sync()["next_batch"]
    hs.stop()
    hs.start()
    alice.ok("PUT", path, {"typing": True, "timeout": 30000})
    s = bob.sync(since=token, timeout=3000)
    ephemeral = s["rooms"]["join"].get(room, {}).get("ephemeral", {}).get("events", [])
    assert {"type": "m.typing", "content": {"user_ids": [alice.user_id]}} in ephemeral


def test_long_poll_with_token_from_before_restart_gets_data_committed_before_it(fresh_homeserver) -> None:
    """A long-poll skips building a response when the notifier saw nothing since ``since``; the notifier only knows
    what happened since start-up, so a token from before a restart must still be answered from the database."""
    hs, api, alice, bob, room = start_with_two_members(fresh_homeserver)
    token = bob.sync()["next_batch"]
    sent = alice.send(room, "while bob was away")
    hs.stop()
    hs.start()
    started = time.monotonic()
    s = bob.sync(since=token, timeout=20000)
    assert [e["event_id"] for e in s["rooms"]["join"][room]["timeline"]["events"]] == [sent]
    # Answered from what was stored, not at the long-poll's timeout (which would mean it waited for news).
    assert time.monotonic() - started < 15
    # And the next long-poll, with a token from this process, waits and is woken by the next message.
    result: dict = {}
    waiter = threading.Thread(target=lambda: result.update(bob.sync(since=s["next_batch"], timeout=20000)))
    waiter.start()
    time.sleep(0.5)
    woke = alice.send(room, "back again")
    waiter.join(25)
    assert [e["event_id"] for e in result["rooms"]["join"][room]["timeline"]["events"]] == [woke]


def test_retry_after_restart_returns_the_stored_event_even_when_now_refused(fresh_homeserver) -> None:
    """Transaction IDs outlive the process: after a restart (nothing in memory) a retried send returns the event it
    made before, also once the sender may no longer send in that room, and no second event appears."""
    hs, api, alice, bob, room = start_with_two_members(fresh_homeserver)
    path = f"rooms/{q(room)}/send/m.room.message/retry-1"
    content = {"msgtype": "m.text", "body": "disk full on db-1"}
    first = bob.req("PUT", path, content)
    assert first.status == 200
    hs.kill()
    hs.start()
    again = bob.req("PUT", path, content)
    assert again.status == 200 and again.json["event_id"] == first.json["event_id"]
    # Bob is muted (power levels): a new send is refused, the retry of the old one still answers the old event.
    levels = alice.ok("GET", f"rooms/{q(room)}/state/m.room.power_levels")
    levels["events_default"] = 50
    alice.ok("PUT", f"rooms/{q(room)}/state/m.room.power_levels", levels)
    refused = bob.req("PUT", f"rooms/{q(room)}/send/m.room.message/retry-2", content)
    assert refused.status == 403 and refused.json["errcode"] == "M_FORBIDDEN"
    hs.kill()
    hs.start()
    third = bob.req("PUT", path, content)
    assert third.status == 200 and third.json["event_id"] == first.json["event_id"]
    bodies = [e["content"].get("body") for e in all_messages(alice, room) if e["type"] == "m.room.message"]
    assert bodies == ["disk full on db-1"]

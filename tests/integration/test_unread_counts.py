"""Unread notification counts in /sync (issue 3 item 3)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.integration.pushlib import counts, receipt, room_with
from tests.support.client import Api, q

THREADS_FILTER = {"room": {"timeline": {"unread_thread_notifications": True}}}


def test_counts_rise_with_messages_and_fall_after_receipt(api: Api) -> None:
    alice, (bob, carol), room = room_with(api, 2)
    ids = [alice.send(room, f"alert {i}") for i in range(3)]
    assert counts(bob.sync(), room) == {"notification_count": 3, "highlight_count": 0}
    assert receipt(bob, room, ids[1]).status == 200
    assert counts(bob.sync(), room) == {"notification_count": 1, "highlight_count": 0}
    # A private receipt resets counts just as well.
    assert receipt(bob, room, ids[2], "m.read.private").status == 200
    assert counts(bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    # Carol never read anything.
    assert counts(carol.sync(), room) == {"notification_count": 3, "highlight_count": 0}
    # The sender is never notified of their own messages.
    assert counts(alice.sync(), room) == {"notification_count": 0, "highlight_count": 0}


def test_counts_in_incremental_sync(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    since = bob.sync()["next_batch"]
    alice.send(room, "one")
    body = bob.sync(since=since, timeout=5000)
    assert counts(body, room) == {"notification_count": 1, "highlight_count": 0}
    alice.send(room, "two")
    body = bob.sync(since=body["next_batch"], timeout=5000)
    assert counts(body, room) == {"notification_count": 2, "highlight_count": 0}


def test_own_message_resets_counts(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    alice.send(room, "one")
    alice.send(room, "two")
    assert counts(bob.sync(), room)["notification_count"] == 2
    bob.send(room, "on it")
    assert counts(bob.sync(), room) == {"notification_count": 0, "highlight_count": 0}
    alice.send(room, "thanks")
    assert counts(bob.sync(), room)["notification_count"] == 1


def test_mentions_highlight(api: Api) -> None:
    alice, (bob, carol), room = room_with(api, 2)
    alice.send(room, f"{bob.user_id} please look", **{"m.mentions": {"user_ids": [bob.user_id]}})
    alice.send(room, "all hands", **{"m.mentions": {"room": True}})
    alice.send(room, "just text", msgtype="m.notice")
    assert counts(bob.sync(), room) == {"notification_count": 2, "highlight_count": 2}
    # Carol is notified of both messages, highlighted only by the room mention.
    assert counts(carol.sync(), room) == {"notification_count": 2, "highlight_count": 1}


def test_display_name_and_user_name_highlight_without_m_mentions(api: Api) -> None:
    alice, (bob,), room = room_with(api, 1, preset="public_chat")
    bob.ok("PUT", f"rooms/{q(room)}/state/m.room.member/{q(bob.user_id)}",
           {"membership": "join", "displayname": "Night Shift"})
    alice.send(room, "night shift, db-2 is down")
    localpart = bob.user_id[1:].split(":")[0]
    alice.send(room, f"ping {localpart}!")
    alice.send(room, "nightshift is one word")
    assert counts(bob.sync(), room) == {"notification_count": 3, "highlight_count": 2}


def test_user_rules_change_evaluation(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    bob.ok("PUT", f"pushrules/global/room/{q(room)}", {"actions": []})
    alice.send(room, "muted room")
    assert counts(bob.sync(), room)["notification_count"] == 0
    bob.ok("DELETE", f"pushrules/global/room/{q(room)}")
    bob.ok("PUT", "pushrules/global/content/sev1", {"actions": ["notify", {"set_tweak": "highlight"}],
                                                    "pattern": "SEV1"})
    alice.send(room, "sev1: payments down")
    assert counts(bob.sync(), room) == {"notification_count": 1, "highlight_count": 1}
    bob.ok("PUT", "pushrules/global/override/.m.rule.master/enabled", {"enabled": True})
    alice.send(room, "sev1 again")
    assert counts(bob.sync(), room) == {"notification_count": 1, "highlight_count": 1}


def test_thread_counts_when_filter_asks(api: Api) -> None:
    alice, (bob,), room = room_with(api)
    root = alice.send(room, "incident 9")
    rel: dict[str, Any] = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    t1 = alice.send(room, "update 1", **rel)
    alice.send(room, "update 2", **rel)
    body = bob.sync(filter=THREADS_FILTER)
    joined = body["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 1, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {root: {"notification_count": 2, "highlight_count": 0}}
    # Without the filter flag everything is counted in one figure.
    assert counts(bob.sync(), room) == {"notification_count": 3, "highlight_count": 0}
    # A threaded receipt clears only that thread, up to its event.
    assert receipt(bob, room, t1, body={"thread_id": root}).status == 200
    joined = bob.sync(filter=THREADS_FILTER)["rooms"]["join"][room]
    assert joined["unread_notifications"]["notification_count"] == 1
    assert joined["unread_thread_notifications"] == {root: {"notification_count": 1, "highlight_count": 0}}
    assert receipt(bob, room, root, body={"thread_id": "main"}).status == 200
    joined = bob.sync(filter=THREADS_FILTER)["rooms"]["join"][room]
    assert joined["unread_notifications"]["notification_count"] == 0
    assert joined["unread_thread_notifications"][root]["notification_count"] == 1


def test_thread_reply_to_another_rooms_event_is_refused_and_counts_nowhere(api: Api) -> None:
    """An m.thread "reply" naming an event of another room is refused (400 M_UNKNOWN, as Synapse); nothing is
    counted for it, in the main timeline or in a thread. (How such a relation, kept from before the check, counts
    in the main timeline: tests/unit/test_relation_check.py.)"""
    alice, (bob,), room = room_with(api)
    foreign_root = alice.send(alice.create_room(), "root elsewhere")
    stray = alice.req("PUT", f"rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}", {
        "msgtype": "m.text", "body": "stray", "m.relates_to": {"rel_type": "m.thread", "event_id": foreign_root}})
    assert (stray.status, stray.errcode()) == (400, "M_UNKNOWN")
    joined = bob.sync(filter=THREADS_FILTER)["rooms"]["join"][room]
    assert joined["unread_notifications"] == {"notification_count": 0, "highlight_count": 0}
    assert joined["unread_thread_notifications"] == {}
    assert "stray" not in [e["content"].get("body") for e in joined["timeline"]["events"]]

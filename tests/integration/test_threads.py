"""Threads (spec: "Threading"): GET /threads with include=all|participated and paging, and the bundled
m.thread summary (count, latest_event, current_user_participated) in /event and /sync."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.client import Api, User, q, register

V1 = "/_matrix/client/v1"


def thread_reply(user: User, room_id: str, root: str, body: str) -> str:
    content = {"msgtype": "m.text", "body": body,
               "m.relates_to": {"rel_type": "m.thread", "event_id": root, "is_falling_back": True,
                                "m.in_reply_to": {"event_id": root}}}
    return user.ok("PUT", f"rooms/{q(room_id)}/send/m.room.message/{uuid.uuid4().hex}", content)["event_id"]


def threads(user: User, room_id: str, **params: Any) -> Any:
    return user.req("GET", f"{V1}/rooms/{q(room_id)}/threads", params=params or None)


def test_threads_listed_by_latest_activity_with_summary(api: Api) -> None:
    a, b = register(api), register(api)
    room_id = a.create_room(preset="private_chat")
    a.invite(room_id, b.user_id)
    b.join(room_id)
    t1 = a.send(room_id, "incident 1")
    t2 = a.send(room_id, "incident 2")
    a.send(room_id, "not a thread")
    thread_reply(b, room_id, t1, "looking")
    r2 = thread_reply(b, room_id, t2, "on it")
    r3 = thread_reply(a, room_id, t1, "resolved")

    chunk = threads(b, room_id).json["chunk"]
    assert [e["event_id"] for e in chunk] == [t1, t2]      # t1 had the latest activity (r3)
    s1 = chunk[0]["unsigned"]["m.relations"]["m.thread"]
    assert (s1["count"], s1["latest_event"]["event_id"], s1["current_user_participated"]) == (2, r3, True)
    assert s1["latest_event"]["content"]["body"] == "resolved"
    s2 = chunk[1]["unsigned"]["m.relations"]["m.thread"]
    assert (s2["count"], s2["latest_event"]["event_id"]) == (1, r2)

    # The summary is per user: a (the root's sender) participated in both, c in none.
    c = register(api)
    a.invite(room_id, c.user_id)
    c.join(room_id)
    summary = c.ok("GET", f"rooms/{q(room_id)}/event/{q(t2)}")["unsigned"]["m.relations"]["m.thread"]
    assert summary["current_user_participated"] is False
    assert threads(c, room_id, include="participated").json["chunk"] == []
    thread_reply(c, room_id, t2, "me too")
    assert [e["event_id"] for e in threads(c, room_id, include="participated").json["chunk"]] == [t2]


def test_threads_paging_and_bad_input(api: Api) -> None:
    a = register(api)
    room_id = a.create_room()
    roots = [a.send(room_id, f"root {i}") for i in range(3)]
    for root in roots:
        thread_reply(a, room_id, root, "reply")
    page = threads(a, room_id, limit=2).json
    assert [e["event_id"] for e in page["chunk"]] == [roots[2], roots[1]]
    page2 = threads(a, room_id, limit=2, **{"from": page["next_batch"]}).json
    assert [e["event_id"] for e in page2["chunk"]] == [roots[0]]
    assert "next_batch" not in page2

    assert threads(a, room_id, include="mine").errcode() == "M_INVALID_PARAM"
    assert threads(a, room_id, limit=0).errcode() == "M_INVALID_PARAM"
    assert threads(a, room_id, **{"from": "zzz"}).errcode() == "M_INVALID_PARAM"
    outsider = register(api)
    assert threads(outsider, room_id).status == 403


def test_thread_summary_in_sync(api: Api) -> None:
    a = register(api)
    room_id = a.create_room()
    since = a.sync()["next_batch"]
    root = a.send(room_id, "incident")
    reply = thread_reply(a, room_id, root, "ack")
    timeline = a.sync(since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    synced_root = next(e for e in timeline if e["event_id"] == root)
    summary = synced_root["unsigned"]["m.relations"]["m.thread"]
    assert (summary["count"], summary["latest_event"]["event_id"]) == (1, reply)
    # Redacting the only reply removes the thread from the summary and the list.
    a.ok("PUT", f"rooms/{q(room_id)}/redact/{q(reply)}/{uuid.uuid4().hex}", {})
    ev = a.ok("GET", f"rooms/{q(room_id)}/event/{q(root)}")
    assert "m.thread" not in ev.get("unsigned", {}).get("m.relations", {})
    assert threads(a, room_id).json["chunk"] == []


def test_relation_to_another_rooms_event_or_an_unknown_one_is_refused(api: Api) -> None:
    """A relation names an event of its own room (Synapse's check and answer): one naming another room's event is
    refused with 400 M_UNKNOWN "Relations must be in the same room", one naming an unknown event with 400
    M_UNKNOWN, whatever the rel_type; nothing is stored, in either room."""
    a = register(api)
    room_id = a.create_room()
    elsewhere = a.create_room()
    root = a.send(room_id, "incident")
    before = a.ok("GET", f"rooms/{q(elsewhere)}/messages", params={"dir": "b", "limit": "50"})["chunk"]
    for parent, message in ((root, "Relations must be in the same room"),
                            ("$unknown:localhost", "Can't send relation to unknown event")):
        for rel_type in ("m.thread", "m.reference", "m.replace", "m.annotation"):
            r = a.req("PUT", f"rooms/{q(elsewhere)}/send/m.room.message/{uuid.uuid4().hex}",
                      {"msgtype": "m.text", "body": "x",
                       "m.relates_to": {"rel_type": rel_type, "event_id": parent, "key": "x"}})
            assert (r.status, r.errcode(), r.json["error"]) == (400, "M_UNKNOWN", message), (rel_type, r.json)
    after = a.ok("GET", f"rooms/{q(elsewhere)}/messages", params={"dir": "b", "limit": "50"})["chunk"]
    assert [e["event_id"] for e in after] == [e["event_id"] for e in before]
    ev = a.ok("GET", f"rooms/{q(room_id)}/event/{q(root)}")
    assert "m.relations" not in ev.get("unsigned", {})
    assert threads(a, room_id).json["chunk"] == []
    assert a.ok("GET", f"{V1}/rooms/{q(room_id)}/relations/{q(root)}")["chunk"] == []
    # In its own room the same relation is accepted; a rich reply (m.in_reply_to alone) is no relation.
    thread_reply(a, room_id, root, "on it")
    a.ok("PUT", f"rooms/{q(elsewhere)}/send/m.room.message/{uuid.uuid4().hex}",
         {"msgtype": "m.text", "body": "quoting", "m.relates_to": {"m.in_reply_to": {"event_id": root}}})


def test_thread_reply_sent_in_another_room_is_not_participation(api: Api) -> None:
    """carol's m.thread "reply" to a's root from a room of her own is refused, and does not make her a participant
    of the thread in a's room (bundled summary and ``/threads?include=participated``)."""
    a, b, carol = register(api), register(api), register(api)
    room_id = a.create_room(preset="private_chat")
    for user in (b, carol):
        a.invite(room_id, user.user_id)
        user.join(room_id)
    root = a.send(room_id, "incident")
    reply = thread_reply(b, room_id, root, "on it")
    carols = carol.create_room()
    elsewhere = carol.req("PUT", f"rooms/{q(carols)}/send/m.room.message/{uuid.uuid4().hex}", {
        "msgtype": "m.text", "body": "me too, elsewhere", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    assert (elsewhere.status, elsewhere.errcode()) == (400, "M_UNKNOWN")

    summary = carol.ok("GET", f"rooms/{q(room_id)}/event/{q(root)}")["unsigned"]["m.relations"]["m.thread"]
    assert (summary["count"], summary["latest_event"]["event_id"]) == (1, reply)
    assert summary["current_user_participated"] is False
    assert threads(carol, room_id, include="participated").json["chunk"] == []
    assert [e["event_id"] for e in threads(carol, room_id).json["chunk"]] == [root]
    # A reply in the right room still makes her a participant.
    thread_reply(carol, room_id, root, "me too")
    summary = carol.ok("GET", f"rooms/{q(room_id)}/event/{q(root)}")["unsigned"]["m.relations"]["m.thread"]
    assert summary["current_user_participated"] is True
    assert [e["event_id"] for e in threads(carol, room_id, include="participated").json["chunk"]] == [root]


def test_no_thread_starts_from_an_event_with_a_relation(api: Api) -> None:
    """Threads do not fork (spec: "Threading"; Synapse's check): an m.thread relation to a thread reply, an
    edit or a reaction is refused with 400 M_UNKNOWN and stores nothing; a plain reply can root a thread."""
    a = register(api)
    room = a.create_room()
    root = a.send(room, "disk full on db-1")
    reply = thread_reply(a, room, root, "looking")
    edit = a.ok("PUT", f"rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}", {
        "msgtype": "m.text", "body": "* disk full on db-1 (90%)", "m.new_content": {"msgtype": "m.text",
        "body": "disk full on db-1 (90%)"}, "m.relates_to": {"rel_type": "m.replace", "event_id": root}})["event_id"]
    reaction = a.ok("PUT", f"rooms/{q(room)}/send/m.reaction/{uuid.uuid4().hex}", {
        "m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👀"}})["event_id"]
    for parent in (reply, edit, reaction):
        r = a.req("PUT", f"rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}", {
            "msgtype": "m.text", "body": "thread of a relation",
            "m.relates_to": {"rel_type": "m.thread", "event_id": parent}})
        assert (r.status, r.errcode()) == (400, "M_UNKNOWN"), (parent, r.json)
    assert [t["event_id"] for t in threads(a, room).json["chunk"]] == [root]
    assert threads(a, room).json["chunk"][0]["unsigned"]["m.relations"]["m.thread"]["count"] == 1
    quoted = a.ok("PUT", f"rooms/{q(room)}/send/m.room.message/{uuid.uuid4().hex}", {
        "msgtype": "m.text", "body": "> disk full\n\nsame on db-2",
        "m.relates_to": {"m.in_reply_to": {"event_id": root}}})["event_id"]
    thread_reply(a, room, quoted, "a thread off a plain reply")
    assert sorted(t["event_id"] for t in threads(a, room).json["chunk"]) == sorted([root, quoted])

"""Relations (spec: "Forming relationships between events"): GET /relations paging, filters, recursion and
visibility; bundled aggregations (m.replace, m.reference) in /event, /messages and /sync; edit rules; duplicate
annotations."""

from __future__ import annotations

import uuid
from typing import Any

from tests.support.client import Api, User, q, register

V1 = "/_matrix/client/v1"


def send_event(user: User, room_id: str, event_type: str, content: dict[str, Any]) -> str:
    return user.ok("PUT", f"rooms/{q(room_id)}/send/{q(event_type)}/{uuid.uuid4().hex}", content)["event_id"]


def edit(user: User, room_id: str, original: str, new_body: str) -> str:
    return send_event(user, room_id, "m.room.message", {
        "msgtype": "m.text", "body": f"* {new_body}",
        "m.new_content": {"msgtype": "m.text", "body": new_body},
        "m.relates_to": {"rel_type": "m.replace", "event_id": original},
    })


def react(user: User, room_id: str, target: str, key: str) -> Any:
    return user.req("PUT", f"rooms/{q(room_id)}/send/m.reaction/{uuid.uuid4().hex}",
                    {"m.relates_to": {"rel_type": "m.annotation", "event_id": target, "key": key}})


def relations(user: User, room_id: str, event_id: str, *path: str, **params: Any) -> Any:
    suffix = "".join("/" + q(p) for p in path)
    return user.req("GET", f"{V1}/rooms/{q(room_id)}/relations/{q(event_id)}{suffix}", params=params or None)


def room_with(api: Api, *others: User) -> tuple[User, str]:
    owner = register(api)
    room_id = owner.create_room(preset="private_chat")
    for other in others:
        owner.invite(room_id, other.user_id)
        other.join(room_id)
    return owner, room_id


def test_relations_filters_by_type_and_event_type(api: Api) -> None:
    b = register(api)
    a, room_id = room_with(api, b)
    root = a.send(room_id, "disk full on db1")
    r1 = react(b, room_id, root, "👍").json["event_id"]
    e1 = edit(a, room_id, root, "disk full on db1 (90%)")
    ref = send_event(b, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "see runbook", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})

    everything = relations(a, room_id, root)
    assert everything.status == 200
    assert [e["event_id"] for e in everything.json["chunk"]] == [ref, e1, r1]  # newest first
    assert "next_batch" not in everything.json and "recursion_depth" not in everything.json

    ann = relations(a, room_id, root, "m.annotation").json["chunk"]
    assert [(e["event_id"], e["content"]["m.relates_to"]["key"]) for e in ann] == [(r1, "👍")]
    assert [e["event_id"] for e in relations(a, room_id, root, "m.annotation", "m.reaction").json["chunk"]] == [r1]
    assert relations(a, room_id, root, "m.annotation", "m.room.message").json["chunk"] == []
    assert [e["event_id"] for e in relations(a, room_id, root, "m.replace").json["chunk"]] == [e1]
    forwards = relations(a, room_id, root, dir="f").json["chunk"]
    assert [e["event_id"] for e in forwards] == [r1, e1, ref]


def test_relations_pagination_both_directions(api: Api) -> None:
    a, room_id = room_with(api)
    root = a.send(room_id, "incident 7")
    replies = [send_event(a, room_id, "m.room.message", {
        "msgtype": "m.text", "body": f"update {i}",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root}}) for i in range(5)]

    seen: list[str] = []
    params: dict[str, Any] = {"limit": 2}
    for _ in range(5):
        page = relations(a, room_id, root, "m.thread", **params).json
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        params = {"limit": 2, "from": page["next_batch"]}
    assert seen == list(reversed(replies))

    seen = []
    params = {"limit": 3, "dir": "f"}
    for _ in range(5):
        page = relations(a, room_id, root, "m.thread", **params).json
        seen += [e["event_id"] for e in page["chunk"]]
        if "next_batch" not in page:
            break
        assert page.get("prev_batch") == params.get("from") or "from" not in params
        params = {"limit": 3, "dir": "f", "from": page["next_batch"]}
    assert seen == replies

    # `to` bounds the walk: a token taken from a forwards page stops a backwards walk there.
    first_two = relations(a, room_id, root, "m.thread", limit=2, dir="f").json
    rest = relations(a, room_id, root, "m.thread", to=first_two["next_batch"]).json["chunk"]
    assert [e["event_id"] for e in rest] == list(reversed(replies[2:]))


def test_relations_recurse(api: Api) -> None:
    a, room_id = room_with(api)
    root = a.send(room_id, "root")
    child = send_event(a, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "child", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    grandchild = edit(a, room_id, child, "child (edited)")
    flat = relations(a, room_id, root).json
    assert [e["event_id"] for e in flat["chunk"]] == [child]
    deep = relations(a, room_id, root, recurse="true").json
    assert [e["event_id"] for e in deep["chunk"]] == [grandchild, child]
    assert deep["recursion_depth"] == 3
    assert relations(a, room_id, root, recurse="false").json["recursion_depth"] == 1
    only_edits = relations(a, room_id, root, "m.replace", recurse="true").json["chunk"]
    assert [e["event_id"] for e in only_edits] == [grandchild]


def test_relations_bad_input_and_visibility(api: Api) -> None:
    outsider = register(api)
    a, room_id = room_with(api)
    root = a.send(room_id, "secret")
    r = relations(a, room_id, "$nope:localhost")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = relations(outsider, room_id, root)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    other_room = a.create_room()
    r = relations(a, other_room, root)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert (relations(a, room_id, root, dir="x").status, relations(a, room_id, root, dir="x").errcode()) == \
        (400, "M_INVALID_PARAM")
    assert relations(a, room_id, root, limit="abc").errcode() == "M_INVALID_PARAM"
    assert relations(a, room_id, root, **{"from": "garbage"}).errcode() == "M_INVALID_PARAM"
    assert relations(a, room_id, root, recurse="maybe").errcode() == "M_INVALID_PARAM"
    assert api.request("GET", f"{V1}/rooms/{q(room_id)}/relations/{q(root)}").status == 401


def test_bundled_edit_only_from_original_sender(api: Api) -> None:
    b = register(api)
    a, room_id = room_with(api, b)
    orig = a.send(room_id, "draft")
    first = edit(a, room_id, orig, "second draft")
    foreign = edit(b, room_id, orig, "hijacked")
    latest = edit(a, room_id, orig, "final")
    # A replacement without m.new_content replaces nothing, even when it is the newest.
    send_event(a, room_id, "m.room.message", {"msgtype": "m.text", "body": "* broken",
                                               "m.relates_to": {"rel_type": "m.replace", "event_id": orig}})
    ev = b.ok("GET", f"rooms/{q(room_id)}/event/{q(orig)}")
    assert ev["content"]["body"] == "draft"
    bundled = ev["unsigned"]["m.relations"]["m.replace"]
    assert bundled["event_id"] == latest
    assert bundled["content"]["m.new_content"]["body"] == "final"
    assert "m.relations" not in bundled.get("unsigned", {})
    # The foreign edit is still an ordinary related event; it just does not count as a replacement.
    listed = [e["event_id"] for e in relations(a, room_id, orig, "m.replace").json["chunk"]]
    assert listed[1:] == [latest, foreign, first]

    # Redacting the latest edit falls back to the previous one.
    a.ok("PUT", f"rooms/{q(room_id)}/redact/{q(latest)}/{uuid.uuid4().hex}", {})
    ev = a.ok("GET", f"rooms/{q(room_id)}/event/{q(orig)}")
    assert ev["unsigned"]["m.relations"]["m.replace"]["event_id"] == first
    assert [e["event_id"] for e in relations(a, room_id, orig, "m.replace").json["chunk"]][1:] == [foreign, first]


def test_edits_of_state_events_are_not_bundled(api: Api) -> None:
    a, room_id = room_with(api)
    state_id = a.ok("PUT", f"rooms/{q(room_id)}/state/m.room.topic", {"topic": "on-call: alice"})["event_id"]
    send_event(a, room_id, "m.room.topic", {"topic": "x", "m.relates_to": {"rel_type": "m.replace",
                                                                          "event_id": state_id}})
    ev = a.ok("GET", f"rooms/{q(room_id)}/event/{q(state_id)}")
    assert "m.replace" not in ev.get("unsigned", {}).get("m.relations", {})


def test_references_bundled_in_messages_and_sync(api: Api) -> None:
    a, room_id = room_with(api)
    since = a.sync()["next_batch"]
    orig = a.send(room_id, "alert fired")
    ref1 = send_event(a, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "ticket", "m.relates_to": {"rel_type": "m.reference", "event_id": orig}})
    ref2 = send_event(a, room_id, "m.room.message", {
        "msgtype": "m.text", "body": "postmortem", "m.relates_to": {"rel_type": "m.reference", "event_id": orig}})
    want = {"chunk": [{"event_id": ref1}, {"event_id": ref2}]}

    msgs = a.ok("GET", f"rooms/{q(room_id)}/messages", params={"dir": "b", "limit": 10})["chunk"]
    by_id = {e["event_id"]: e for e in msgs}
    assert by_id[orig]["unsigned"]["m.relations"]["m.reference"] == want
    assert "m.relations" not in by_id[ref1].get("unsigned", {})

    timeline = a.sync(since=since)["rooms"]["join"][room_id]["timeline"]["events"]
    synced = next(e for e in timeline if e["event_id"] == orig)
    assert synced["unsigned"]["m.relations"]["m.reference"] == want


def test_duplicate_annotation_rejected(api: Api) -> None:
    b = register(api)
    a, room_id = room_with(api, b)
    target = a.send(room_id, "deploy done")
    first = react(b, room_id, target, "👍")
    assert first.status == 200
    again = react(b, room_id, target, "👍")
    assert (again.status, again.errcode()) == (400, "M_DUPLICATE_ANNOTATION")
    assert react(b, room_id, target, "🎉").status == 200      # another key is fine
    assert react(a, room_id, target, "👍").status == 200      # so is another user
    # After redacting the reaction the same key may be sent again.
    b.ok("PUT", f"rooms/{q(room_id)}/redact/{q(first.json['event_id'])}/{uuid.uuid4().hex}", {})
    assert react(b, room_id, target, "👍").status == 200
    keys = sorted((e["sender"], e["content"]["m.relates_to"]["key"])
                  for e in relations(a, room_id, target, "m.annotation").json["chunk"])
    assert keys == sorted([(b.user_id, "🎉"), (a.user_id, "👍"), (b.user_id, "👍")])


def test_annotation_sent_in_another_room_is_refused_and_does_not_block_the_real_one(api: Api) -> None:
    """b's reaction sent from a room of her own, naming an event of the shared room, is refused (400 M_UNKNOWN,
    Synapse's "Relations must be in the same room") and is no duplicate of the one she then sends in the right
    room."""
    b = register(api)
    a, room_id = room_with(api, b)
    target = a.send(room_id, "deploy done")
    elsewhere = b.create_room()
    refused = react(b, elsewhere, target, "👍")
    assert (refused.status, refused.errcode()) == (400, "M_UNKNOWN")
    mine = react(b, room_id, target, "👍")
    assert mine.status == 200, mine.json
    chunk = relations(a, room_id, target, "m.annotation").json["chunk"]
    assert [e["event_id"] for e in chunk] == [mine.json["event_id"]]
    # Within the room the second one is still refused.
    again = react(b, room_id, target, "👍")
    assert (again.status, again.errcode()) == (400, "M_DUPLICATE_ANNOTATION")

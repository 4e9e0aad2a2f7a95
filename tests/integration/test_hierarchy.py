"""``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` (issue 9) on SQLite and PostgreSQL: depth-first order by
``order``, ``max_depth``, ``limit`` + ``from``, ``suggested_only``, and only rooms the user may see or join."""

from __future__ import annotations

from typing import Any

from tests.integration.orglib import walk_hierarchy
from tests.support.client import Api, User, q, register

H = "/_matrix/client/v1/rooms/{}/hierarchy"


def link(owner: User, parent: str, child: str, **content: Any) -> None:
    owner.ok("PUT", f"rooms/{q(parent)}/state/m.space.child/{q(child)}", {"via": ["test.local"], **content})


def restricted(space: str) -> list[dict[str, Any]]:
    return [{"type": "m.room.join_rules", "state_key": "",
             "content": {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}}]


def test_hierarchy_walk_limits_and_access(api: Api) -> None:
    owner, member, outsider = register(api), register(api), register(api)
    space = owner.create_room(name="Root", creation_content={"type": "m.space"}, preset="public_chat")
    sub = owner.create_room(name="Sub", creation_content={"type": "m.space"}, initial_state=restricted(space))
    room_b = owner.create_room(name="B", preset="public_chat")
    room_a = owner.create_room(name="A", initial_state=restricted(space))
    private = owner.create_room(name="Private")
    deep = owner.create_room(name="Deep", preset="public_chat")
    link(owner, space, room_b, order="b")
    link(owner, space, room_a, order="a", suggested=True)
    link(owner, space, sub, order="c")
    link(owner, space, private, order="d")
    link(owner, sub, deep)
    owner.ok("PUT", f"rooms/{q(space)}/state/m.space.child/{q('!gone:test.local')}", {"via": []})
    member.join(space)

    rooms = walk_hierarchy(member, space)
    assert [r["room_id"] for r in rooms] == [space, room_a, room_b, sub, deep]  # private: invite-only, hidden
    root = rooms[0]
    assert root["room_type"] == "m.space" and root["name"] == "Root" and root["num_joined_members"] == 2
    assert [c["state_key"] for c in root["children_state"]] == [room_a, room_b, sub, private]
    assert all(c["type"] == "m.space.child" and isinstance(c["origin_server_ts"], int) for c in root["children_state"])
    a = rooms[1]
    assert a["join_rule"] == "restricted" and a["allowed_room_ids"] == [space] and a["children_state"] == []

    assert [r["room_id"] for r in walk_hierarchy(member, space, max_depth=1)] == [space, room_a, room_b, sub]
    assert [r["room_id"] for r in walk_hierarchy(member, space, max_depth=0)] == [space]
    assert [r["room_id"] for r in walk_hierarchy(member, space, suggested_only="true")] == [space, room_a]
    page = member.ok("GET", H.format(q(space)), params={"limit": 2})
    assert [r["room_id"] for r in page["rooms"]] == [space, room_a] and page["next_batch"]
    rest = member.ok("GET", H.format(q(space)), params={"limit": 2, "from": page["next_batch"]})
    assert [r["room_id"] for r in rest["rooms"]] == [room_b, sub]
    changed = member.req("GET", H.format(q(space)), params={"from": rest["next_batch"], "suggested_only": "true"})
    assert changed.status == 400 and changed.json["errcode"] == "M_INVALID_PARAM"
    assert member.req("GET", H.format(q(space)), params={"from": "nonsense"}).status == 400
    assert member.req("GET", H.format(q(space)), params={"limit": 0}).status == 400

    # An outsider sees the public root and public rooms, not the restricted ones (not a space member).
    assert [r["room_id"] for r in walk_hierarchy(outsider, space)] == [space, room_b]
    # The private room itself is not previewable; a room we have never heard of neither.
    assert member.req("GET", H.format(q(private))).status == 403
    assert member.req("GET", H.format(q("!nope:test.local"))).status == 403
    # A restricted room is joinable through the space (the server picks a member to authorise the join).
    assert member.join(room_a) == room_a
    event = member.ok("GET", f"rooms/{q(room_a)}/state/m.room.member/{q(member.user_id)}")
    assert event["membership"] == "join" and event["join_authorised_via_users_server"] == owner.user_id
    assert outsider.req("POST", f"join/{q(room_a)}", {}).status == 403

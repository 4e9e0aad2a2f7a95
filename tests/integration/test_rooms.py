"""createRoom and its options, room versions, state get/put, joined_rooms (issue 2 item 3)."""

from __future__ import annotations

from tests.integration.roomlib import get_state, put_state, users
from tests.support.client import Api, q, register


def _state_map(user, room_id: str) -> dict[tuple[str, str], dict]:
    return {(e["type"], e["state_key"]): e for e in user.ok("GET", f"rooms/{q(room_id)}/state")}


def test_create_room_defaults_private_chat(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    state = _state_map(alice, room)
    create = state[("m.room.create", "")]
    assert create["content"]["room_version"] == "10"
    assert create["content"]["creator"] == alice.user_id
    assert state[("m.room.join_rules", "")]["content"] == {"join_rule": "invite"}
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "shared"}
    assert state[("m.room.guest_access", "")]["content"] == {"guest_access": "can_join"}
    assert state[("m.room.member", alice.user_id)]["content"]["membership"] == "join"
    pl = state[("m.room.power_levels", "")]["content"]
    assert pl["users"] == {alice.user_id: 100}
    assert pl["invite"] == 0
    assert room in alice.ok("GET", "joined_rooms")["joined_rooms"]


def test_create_room_public_chat_and_named_options(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat", name="Incident 42", topic="db is down",
                             creation_content={"m.federate": False})
    state = _state_map(alice, room)
    assert state[("m.room.join_rules", "")]["content"]["join_rule"] == "public"
    assert state[("m.room.guest_access", "")]["content"]["guest_access"] == "forbidden"
    assert state[("m.room.name", "")]["content"] == {"name": "Incident 42"}
    assert state[("m.room.topic", "")]["content"] == {"topic": "db is down"}
    assert state[("m.room.create", "")]["content"]["m.federate"] is False
    assert state[("m.room.power_levels", "")]["content"]["invite"] == 50
    assert bob.join(room) == room
    assert set(bob.ok("GET", f"rooms/{q(room)}/joined_members")["joined"]) == {alice.user_id, bob.user_id}


def test_create_room_trusted_private_chat_invite_is_direct(api: Api) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="trusted_private_chat", invite=[bob.user_id], is_direct=True)
    state = _state_map(alice, room)
    member = state[("m.room.member", bob.user_id)]
    assert member["content"]["membership"] == "invite"
    assert member["content"]["is_direct"] is True
    assert member["sender"] == alice.user_id
    assert state[("m.room.power_levels", "")]["content"]["users"] == {alice.user_id: 100, bob.user_id: 100}
    sync = bob.sync()
    assert room in sync["rooms"]["invite"]


def test_create_room_initial_state_and_power_override(api: Api) -> None:
    alice = register(api)
    room = alice.create_room(
        initial_state=[{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}},
                       {"type": "org.tocsin.runbook", "state_key": "db", "content": {"url": "https://x"}}],
        power_level_content_override={"events_default": 20, "users": {alice.user_id: 100, "@bot:test.local": 50}},
    )
    state = _state_map(alice, room)
    assert state[("m.room.history_visibility", "")]["content"] == {"history_visibility": "joined"}
    assert state[("org.tocsin.runbook", "db")]["content"] == {"url": "https://x"}
    pl = state[("m.room.power_levels", "")]["content"]
    assert pl["events_default"] == 20
    assert pl["users"] == {alice.user_id: 100, "@bot:test.local": 50}
    # The preset's value was replaced, not duplicated: exactly one history_visibility event in the timeline.
    hv = [e for e in alice.sync()["rooms"]["join"][room]["state"]["events"]
          + alice.sync()["rooms"]["join"][room]["timeline"]["events"] if e["type"] == "m.room.history_visibility"]
    assert {e["event_id"] for e in hv} == {state[("m.room.history_visibility", "")]["event_id"]}


def test_create_room_versions(api: Api) -> None:
    alice = register(api)
    for version in ("10", "11"):
        room = alice.create_room(room_version=version)
        create = get_state(alice, room, "m.room.create", format="event").json
        assert create["content"]["room_version"] == version
        # v11 drops the creator key (the sender is the creator).
        assert ("creator" in create["content"]) == (version == "10")
        assert create["sender"] == alice.user_id
    before = alice.ok("GET", "joined_rooms")["joined_rooms"]
    for bad in ("9999", "1.0", 11):
        r = alice.req("POST", "createRoom", {"room_version": bad})
        assert (r.status, r.errcode()) == (400, "M_UNSUPPORTED_ROOM_VERSION"), (bad, r.json)
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == before


def test_create_room_bad_bodies_change_nothing(api: Api) -> None:
    alice = register(api)
    before = alice.ok("GET", "joined_rooms")["joined_rooms"]
    for body, code in (({"name": 5}, "M_BAD_JSON"), ({"invite": "x"}, "M_INVALID_PARAM"),
                       ({"preset": "party"}, "M_INVALID_PARAM"), ({"visibility": "maybe"}, "M_INVALID_PARAM"),
                       ({"initial_state": [{"type": "m.room.create", "content": {}}]}, "M_INVALID_ROOM_STATE"),
                       ({"initial_state": [{"content": {}}]}, "M_INVALID_ROOM_STATE"),
                       ({"room_alias_name": "bad alias"}, "M_INVALID_PARAM"),
                       ({"power_level_content_override": []}, "M_BAD_JSON")):
        r = alice.req("POST", "createRoom", body)
        assert (r.status, r.errcode()) == (400, code), (body, r.json)
    assert alice.ok("GET", "joined_rooms")["joined_rooms"] == before


def test_create_room_alias_name(api: Api, homeserver) -> None:
    alice, bob = users(api, 2)
    local = "oncall-" + alice.user_id[1:8]
    r = alice.ok("POST", "createRoom", {"room_alias_name": local, "preset": "public_chat"})
    alias = f"#{local}:{homeserver.server_name}"
    assert r["room_alias"] == alias
    assert get_state(alice, r["room_id"], "m.room.canonical_alias").json == {"alias": alias}
    assert bob.ok("GET", f"directory/room/{q(alias)}")["room_id"] == r["room_id"]
    again = bob.req("POST", "createRoom", {"room_alias_name": local})
    assert (again.status, again.errcode()) == (400, "M_ROOM_IN_USE")


def test_state_put_get_format_event(api: Api) -> None:
    alice = register(api)
    room = alice.create_room()
    r = put_state(alice, room, "m.room.topic", {"topic": "pager duty"})
    assert r.status == 200
    event_id = r.json["event_id"]
    assert get_state(alice, room, "m.room.topic").json == {"topic": "pager duty"}
    full = get_state(alice, room, "m.room.topic", format="event").json
    assert full["event_id"] == event_id
    assert full["type"] == "m.room.topic" and full["state_key"] == "" and full["room_id"] == room
    # Custom state with a state key, and an unset one is 404.
    assert put_state(alice, room, "org.tocsin.escalation", {"tier": 2}, "primary").status == 200
    assert get_state(alice, room, "org.tocsin.escalation", "primary").json == {"tier": 2}
    missing = get_state(alice, room, "org.tocsin.escalation", "secondary")
    assert (missing.status, missing.errcode()) == (404, "M_NOT_FOUND")
    # Replacing state updates the current value and carries the previous content.
    put_state(alice, room, "m.room.topic", {"topic": "resolved"})
    full2 = get_state(alice, room, "m.room.topic", format="event").json
    assert full2["content"] == {"topic": "resolved"}
    assert full2["unsigned"]["prev_content"] == {"topic": "pager duty"}
    assert full2["unsigned"]["replaces_state"] == event_id


def test_state_refused_for_outsiders_and_low_power(api: Api) -> None:
    alice, bob, eve = users(api, 3)
    room = alice.create_room(preset="public_chat", name="ops")
    bob.join(room)
    # Not in the room (and not world readable): 403 on read and write.
    r = get_state(eve, room, "m.room.name")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert eve.req("GET", f"rooms/{q(room)}/state").status == 403
    assert put_state(eve, room, "m.room.name", {"name": "pwned"}).status == 403
    # Power 0 cannot rename (m.room.name needs 50).
    r = put_state(bob, room, "m.room.name", {"name": "bob's"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert get_state(alice, room, "m.room.name").json == {"name": "ops"}
    # Promotion lets bob rename.
    pl = get_state(alice, room, "m.room.power_levels").json
    pl["users"][bob.user_id] = 50
    assert put_state(alice, room, "m.room.power_levels", pl).status == 200
    assert put_state(bob, room, "m.room.name", {"name": "bob's"}).status == 200
    assert get_state(alice, room, "m.room.name").json == {"name": "bob's"}
    # Bob cannot raise himself above his level, nor lower alice.
    pl2 = dict(pl, users={**pl["users"], bob.user_id: 100})
    r = put_state(bob, room, "m.room.power_levels", pl2)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    pl3 = dict(pl, users={**pl["users"], alice.user_id: 0})
    assert put_state(bob, room, "m.room.power_levels", pl3).status == 403
    assert get_state(alice, room, "m.room.power_levels").json["users"] == pl["users"]


def test_unknown_room_is_not_found_or_forbidden(api: Api) -> None:
    alice = register(api)
    r = get_state(alice, "!nope:test.local", "m.room.name")
    assert r.status in (403, 404)
    r = alice.req("PUT", f"rooms/{q('!nope:test.local')}/send/m.room.message/t1", {"body": "x", "msgtype": "m.text"})
    assert r.status in (403, 404)
    r = alice.req("GET", f"rooms/{q('not-a-room-id')}/state")
    assert r.status == 400


def test_joined_rooms_tracks_membership(api: Api) -> None:
    alice, bob = users(api, 2)
    r1 = alice.create_room(preset="public_chat")
    r2 = alice.create_room(preset="public_chat")
    bob.join(r1)
    bob.join(r2)
    assert {r1, r2} <= set(bob.ok("GET", "joined_rooms")["joined_rooms"])
    bob.ok("POST", f"rooms/{q(r1)}/leave", {})
    rooms = bob.ok("GET", "joined_rooms")["joined_rooms"]
    assert r1 not in rooms and r2 in rooms


def test_create_room_refuses_power_levels_that_lock_out_the_creator(api: Api) -> None:
    owner, other = register(api), register(api)
    alias_name = "locked" + owner.user_id[2:8]
    body = {"preset": "private_chat", "room_alias_name": alias_name, "name": "x",
            "power_level_content_override": {"users": {other.user_id: 50}}}
    before = owner.ok("GET", "joined_rooms")["joined_rooms"]
    r = owner.req("POST", "createRoom", body)
    assert (r.status, r.errcode()) == (400, "M_INVALID_ROOM_STATE")
    assert owner.ok("GET", "joined_rooms")["joined_rooms"] == before
    alias = f"#{alias_name}:{owner.user_id.split(':', 1)[1]}"
    r = owner.req("GET", f"directory/room/{q(alias)}")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = owner.req("POST", "createRoom", dict(body, power_level_content_override={"users_default": "50"}))
    assert (r.status, r.errcode()) == (400, "M_INVALID_ROOM_STATE")
    body["power_level_content_override"] = {"users": {owner.user_id: 100, other.user_id: 50}}
    room = owner.ok("POST", "createRoom", body)["room_id"]
    assert owner.ok("GET", f"directory/room/{q(alias)}")["room_id"] == room


def test_refused_create_room_creates_nothing(api: Api) -> None:
    owner = register(api)
    server = owner.user_id.split(":", 1)[1]
    before = owner.ok("GET", "joined_rooms")["joined_rooms"]
    refusals = [
        ({"invite": [f"@ghost_{owner.user_id[2:8]}:{server}"]}, 404, "M_NOT_FOUND"),
        ({"name": "x" * 70000}, 413, "M_TOO_LARGE"),
        ({"power_level_content_override": {"users": {owner.user_id: "high"}}}, 400, "M_INVALID_ROOM_STATE"),
        ({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": 5}}]}, 400,
         "M_INVALID_ROOM_STATE"),
        ({"initial_state": [{"type": "m.room.canonical_alias", "content": {"alias": f"#nope:{server}"}}]}, 400,
         "M_INVALID_ROOM_STATE"),
    ]
    for body, status, errcode in refusals:
        r = owner.req("POST", "createRoom", body)
        assert (r.status, r.errcode()) == (status, errcode), body
    assert owner.ok("GET", "joined_rooms")["joined_rooms"] == before


def test_concurrent_create_room_with_one_alias_creates_one_room(api: Api) -> None:
    import threading

    owner = register(api)
    alias_name = "race" + owner.user_id[2:10]
    results: list[int] = []
    before = len(owner.ok("GET", "joined_rooms")["joined_rooms"])

    def create() -> None:
        results.append(owner.req("POST", "createRoom", {"room_alias_name": alias_name}).status)

    threads = [threading.Thread(target=create) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [200] + [400] * 5
    assert len(owner.ok("GET", "joined_rooms")["joined_rooms"]) == before + 1

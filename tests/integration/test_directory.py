"""Room aliases and the public room directory (issue 2 item 3)."""

from __future__ import annotations

import uuid

from tests.integration.roomlib import put_state, users
from tests.support.client import CS, Api, q


def _alias(homeserver, prefix: str = "a") -> str:
    return f"#{prefix}-{uuid.uuid4().hex[:8]}:{homeserver.server_name}"


def test_alias_put_get_delete(api: Api, homeserver) -> None:
    alice, bob = users(api, 2)
    room = alice.create_room(preset="public_chat")
    alias = _alias(homeserver)
    assert alice.req("PUT", f"directory/room/{q(alias)}", {"room_id": room}).status == 200
    r = api.request("GET", CS + f"/directory/room/{q(alias)}")
    assert r.status == 200 and r.json["room_id"] == room and homeserver.server_name in r.json["servers"]
    assert alias in alice.ok("GET", f"rooms/{q(room)}/aliases")["aliases"]
    # Taken: 409.
    other = alice.create_room()
    r = alice.req("PUT", f"directory/room/{q(alias)}", {"room_id": other})
    assert r.status == 409
    assert alice.ok("GET", f"directory/room/{q(alias)}")["room_id"] == room
    # Bob (not creator, power 0 after joining) cannot delete it.
    bob.join(room)
    r = bob.req("DELETE", f"directory/room/{q(alias)}")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert alice.ok("GET", f"directory/room/{q(alias)}")["room_id"] == room
    assert alice.req("DELETE", f"directory/room/{q(alias)}").status == 200
    r = alice.req("GET", f"directory/room/{q(alias)}")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert alias not in alice.ok("GET", f"rooms/{q(room)}/aliases")["aliases"]
    r = alice.req("DELETE", f"directory/room/{q(alias)}")
    assert r.status == 404


def test_alias_refusals(api: Api, homeserver) -> None:
    alice, eve = users(api, 2)
    room = alice.create_room()
    alias = _alias(homeserver)
    r = eve.req("PUT", f"directory/room/{q(alias)}", {"room_id": room})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    for bad_alias, body in ((alias, {}), (alias, {"room_id": 3}), ("#noserver", {"room_id": room}),
                            ("#x:elsewhere.example", {"room_id": room}), ("bad", {"room_id": room})):
        r = alice.req("PUT", f"directory/room/{q(bad_alias)}", body)
        assert r.status == 400, (bad_alias, body, r.json)
    r = alice.req("PUT", f"directory/room/{q(alias)}", {"room_id": "!missing:" + homeserver.server_name})
    assert r.status == 404
    assert alice.req("GET", f"directory/room/{q(alias)}").status == 404
    # Outsiders cannot list a private room's aliases.
    assert eve.req("GET", f"rooms/{q(room)}/aliases").status == 403


def test_canonical_alias_must_point_to_room(api: Api, homeserver) -> None:
    alice = users(api, 1)[0]
    room = alice.create_room()
    other = alice.create_room()
    alias = _alias(homeserver)
    alice.ok("PUT", f"directory/room/{q(alias)}", {"room_id": other})
    r = put_state(alice, room, "m.room.canonical_alias", {"alias": alias})
    assert (r.status, r.errcode()) == (400, "M_BAD_ALIAS")
    assert put_state(alice, other, "m.room.canonical_alias", {"alias": alias, "alt_aliases": []}).status == 200


def test_public_rooms_listing_and_visibility(api: Api, homeserver) -> None:
    alice, bob = users(api, 2)
    tag = uuid.uuid4().hex[:10]
    pub = alice.create_room(visibility="public", name=f"Public {tag}", topic="status")
    priv = alice.create_room(name=f"Private {tag}")
    assert alice.ok("GET", f"directory/list/room/{q(pub)}") == {"visibility": "public"}
    assert alice.ok("GET", f"directory/list/room/{q(priv)}") == {"visibility": "private"}
    r = api.request("GET", CS + "/publicRooms")
    assert r.status == 200
    entries = {c["room_id"]: c for c in r.json["chunk"]}
    assert pub in entries and priv not in entries
    entry = entries[pub]
    assert entry["name"] == f"Public {tag}" and entry["topic"] == "status"
    assert entry["num_joined_members"] == 1 and entry["join_rule"] == "public"
    assert entry["world_readable"] is False and entry["guest_can_join"] is False
    # Search by term.
    found = bob.ok("POST", "publicRooms", {"filter": {"generic_search_term": tag}})["chunk"]
    assert [c["room_id"] for c in found] == [pub]
    # Publishing needs power; alice publishes the private room, bob cannot unpublish.
    r = bob.req("PUT", f"directory/list/room/{q(pub)}", {"visibility": "private"})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    assert alice.req("PUT", f"directory/list/room/{q(priv)}", {"visibility": "public"}).status == 200
    found = bob.ok("POST", "publicRooms", {"filter": {"generic_search_term": tag}})["chunk"]
    assert {c["room_id"] for c in found} == {pub, priv}
    assert alice.req("PUT", f"directory/list/room/{q(priv)}", {"visibility": "private"}).status == 200
    found = bob.ok("POST", "publicRooms", {"filter": {"generic_search_term": tag}})["chunk"]
    assert [c["room_id"] for c in found] == [pub]
    r = alice.req("PUT", f"directory/list/room/{q(priv)}", {"visibility": "secret"})
    assert r.status == 400
    assert alice.req("GET", f"directory/list/room/{q('!nope:' + homeserver.server_name)}").status == 404


def test_public_rooms_pagination(api: Api) -> None:
    alice = users(api, 1)[0]
    tag = uuid.uuid4().hex[:10]
    rooms = {alice.create_room(visibility="public", name=f"page {tag} {i}") for i in range(5)}
    seen: list[str] = []
    since = None
    for _ in range(10):
        body = {"limit": 2, "filter": {"generic_search_term": tag}}
        if since:
            body["since"] = since
        page = alice.ok("POST", "publicRooms", body)
        assert len(page["chunk"]) <= 2
        seen.extend(c["room_id"] for c in page["chunk"])
        since = page.get("next_batch")
        if not since:
            break
    assert sorted(seen) == sorted(rooms)
    full = api.request("GET", CS + "/publicRooms", params={"limit": 1})
    assert len(full.json["chunk"]) == 1 and "next_batch" in full.json
    assert api.request("GET", CS + "/publicRooms", params={"since": "bogus"}).status == 400
    assert alice.req("POST", "publicRooms", {"limit": "two"}).status == 400

"""User directory search over HTTP on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid

from tests.support.client import Api, User, q, register


def search(user: User, term: str, limit: int | None = None) -> dict:
    body: dict = {"search_term": term}
    if limit is not None:
        body["limit"] = limit
    return user.ok("POST", "user_directory/search", body)


def ids(result: dict) -> set[str]:
    return {r["user_id"] for r in result["results"]}


def named(api: Api, displayname: str, localpart: str | None = None) -> User:
    user = register(api, localpart)
    user.ok("PUT", f"profile/{q(user.user_id)}/displayname", {"displayname": displayname})
    return user


def test_finds_room_members_by_name_and_localpart(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    a = register(api)
    b = named(api, f"Pager Duty {tag}", f"pd_{tag}")
    room_id = a.create_room(preset="private_chat")
    a.invite(room_id, b.user_id)
    b.join(room_id)
    result = search(a, tag.upper())
    assert result["limited"] is False
    assert result["results"] == [{"user_id": b.user_id, "display_name": f"Pager Duty {tag}"}]
    assert ids(search(a, f"pag {tag[:4]}")) == {b.user_id}  # every word a prefix of some word
    assert ids(search(a, f"pd_{tag[:3]}")) == {b.user_id}
    assert ids(search(a, f"@pd_{tag}:")) == {b.user_id}
    assert search(a, f"uty {tag}")["results"] == []  # not a word prefix
    b.ok("PUT", f"profile/{q(b.user_id)}/avatar_url", {"avatar_url": "mxc://test.local/pd"})
    assert search(a, tag)["results"][0]["avatar_url"] == "mxc://test.local/pd"


def test_strangers_hidden_unless_in_a_public_room(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    a = register(api)
    stranger = named(api, f"Hidden {tag}")
    private = stranger.create_room(preset="private_chat")
    assert search(a, tag)["results"] == []
    public = stranger.create_room(preset="public_chat")
    assert ids(search(a, tag)) == {stranger.user_id}
    stranger.ok("POST", f"rooms/{q(public)}/leave", {})
    assert search(a, tag)["results"] == []
    assert private  # the private room alone never made the stranger visible


def test_limit_and_limited(api: Api) -> None:
    tag = uuid.uuid4().hex[:8]
    a = register(api)
    room_id = a.create_room(preset="public_chat")
    members = [named(api, f"Responder {tag} {i}") for i in range(3)]
    for m in members:
        m.join(room_id)
    full = search(a, tag)
    assert ids(full) == {m.user_id for m in members} and full["limited"] is False
    assert [r["display_name"] for r in full["results"]] == [f"Responder {tag} {i}" for i in range(3)]
    cut = search(a, tag, limit=2)
    assert len(cut["results"]) == 2 and cut["limited"] is True
    # LIKE wildcards in the term are literal characters.
    assert search(a, "%")["results"] == [] and search(a, "_")["results"] == []


def test_bad_requests(api: Api) -> None:
    a = register(api)
    for body in ({}, {"search_term": 5}, {"search_term": "x", "limit": "ten"}, {"search_term": "x", "limit": -1}):
        r = a.req("POST", "user_directory/search", body)
        assert r.status == 400, body
    r = api.request("POST", "/_matrix/client/v3/user_directory/search", {"search_term": "x"})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    assert search(a, "   ") == {"results": [], "limited": False}

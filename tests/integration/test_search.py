"""Server-side search (spec: "Server Side Search"): POST /search over joined rooms with rank/recent order,
filters, context, groupings, paging, history visibility, redactions, ignored users and bad input."""

from __future__ import annotations

import os
import secrets
import sqlite3
import uuid
from typing import Any

from tests.support.client import Api, User, q, register
from tests.support.server import HomeserverProcess


def search(user: User, criteria: dict[str, Any], next_batch: str | None = None) -> Any:
    params = {"next_batch": next_batch} if next_batch else None
    return user.req("POST", "search", {"search_categories": {"room_events": criteria}}, params=params)


def room_events(user: User, criteria: dict[str, Any], next_batch: str | None = None) -> dict[str, Any]:
    r = search(user, criteria, next_batch)
    assert r.status == 200, r.json
    return r.json["search_categories"]["room_events"]


def word() -> str:
    return "zq" + secrets.token_hex(4)


def test_search_finds_body_name_topic_in_joined_rooms_only(api: Api) -> None:
    a, b, outsider = register(api), register(api), register(api)
    w = word()
    room_id = a.create_room(preset="private_chat", name=f"war room {w}")
    a.invite(room_id, b.user_id)
    b.join(room_id)
    a.ok("PUT", f"rooms/{q(room_id)}/state/m.room.topic", {"topic": f"topic {w}"})
    hit = a.send(room_id, f"postmortem {w} for incident")
    a.send(room_id, "unrelated chatter")
    other_room = outsider.create_room()
    outsider.send(other_room, f"outsider says {w}")

    res = room_events(b, {"search_term": w, "order_by": "recent"})
    types = [r["result"]["type"] for r in res["results"]]
    assert types == ["m.room.message", "m.room.topic", "m.room.name"]
    assert res["results"][0]["result"]["event_id"] == hit
    assert res["results"][0]["result"]["room_id"] == room_id
    assert res["count"] == 3
    assert w in res["highlights"]
    assert "next_batch" not in res

    body_only = room_events(b, {"search_term": w, "keys": ["content.body"]})
    assert [r["result"]["event_id"] for r in body_only["results"]] == [hit]
    # Words are ANDed; stemming matches "postmortems"; case does not matter.
    assert [r["result"]["event_id"] for r in
            room_events(b, {"search_term": f"POSTMORTEMS {w}"})["results"]] == [hit]
    assert room_events(b, {"search_term": f"{w} absentword"})["results"] == []
    assert room_events(outsider, {"search_term": w, "keys": ["content.body"]})["count"] == 1
    # Query syntax is not exposed: operators and quotes are plain text.
    assert search(b, {"search_term": f'"{w}" OR NEAR( * -'}).status == 200


def test_search_rank_order_paging_and_filter(api: Api) -> None:
    a, b = register(api), register(api)
    w = word()
    room_id = a.create_room(preset="public_chat")
    b.join(room_id)
    ids = [a.send(room_id, f"alert {w} number {i}") for i in range(5)]
    from_b = b.send(room_id, f"b says {w}")
    a.send(room_id, f"{w} {w} {w} {w}")

    got: list[str] = []
    token = None
    for _ in range(10):
        res = room_events(a, {"search_term": w, "order_by": "recent", "filter": {"limit": 2}}, token)
        assert len(res["results"]) <= 2
        got += [r["result"]["event_id"] for r in res["results"]]
        token = res.get("next_batch")
        if token is None:
            break
    assert got[1:] == [from_b] + list(reversed(ids))

    ranked: list[str] = []
    token = None
    for _ in range(10):
        res = room_events(a, {"search_term": w, "filter": {"limit": 3}}, token)
        ranked += [r["result"]["event_id"] for r in res["results"]]
        ranks = [r["rank"] for r in res["results"]]
        assert ranks == sorted(ranks, reverse=True)
        token = res.get("next_batch")
        if token is None:
            break
    assert sorted(ranked) == sorted(got) and len(ranked) == 7

    by_sender = room_events(a, {"search_term": w, "filter": {"senders": [b.user_id]}})
    assert [r["result"]["event_id"] for r in by_sender["results"]] == [from_b]
    not_b = room_events(a, {"search_term": w, "filter": {"not_senders": [b.user_id], "limit": 50}})
    assert from_b not in [r["result"]["event_id"] for r in not_b["results"]] and not_b["count"] == 6
    assert room_events(a, {"search_term": w, "filter": {"rooms": ["!other:localhost"]}})["results"] == []
    assert room_events(a, {"search_term": w, "filter": {"types": ["m.room.topic"]}})["results"] == []
    assert search(a, {"search_term": w, "order_by": "recent"}, next_batch="k3").errcode() == "M_INVALID_PARAM"


def test_search_context_profiles_state_and_groups(api: Api) -> None:
    a = register(api)
    a.ok("PUT", f"profile/{q(a.user_id)}/displayname", {"displayname": "Alice On-Call"})
    w = word()
    room_id = a.create_room()
    before = [a.send(room_id, f"before {i}") for i in range(3)]
    hit = a.send(room_id, f"the {w} line")
    after = [a.send(room_id, f"after {i}") for i in range(3)]
    res = room_events(a, {
        "search_term": w, "include_state": True,
        "event_context": {"before_limit": 2, "after_limit": 1, "include_profile": True},
        "groupings": {"group_by": [{"key": "room_id"}, {"key": "sender"}]},
    })
    (result,) = res["results"]
    ctx = result["context"]
    assert [e["event_id"] for e in ctx["events_before"]] == [before[2], before[1]]
    assert [e["event_id"] for e in ctx["events_after"]] == [after[0]]
    assert ctx["start"].startswith("s") and ctx["end"].startswith("s")
    assert ctx["profile_info"][a.user_id]["displayname"] == "Alice On-Call"
    # The context's tokens continue as /messages tokens.
    more = a.ok("GET", f"rooms/{q(room_id)}/messages", params={"from": ctx["start"], "dir": "b", "limit": 1})
    assert [e["event_id"] for e in more["chunk"]] == [before[0]]
    state_types = {e["type"] for e in res["state"][room_id]}
    assert {"m.room.create", "m.room.member"} <= state_types
    assert res["groups"]["room_id"][room_id]["results"] == [hit]
    assert res["groups"]["sender"][a.user_id]["order"] == 1


def test_search_respects_visibility_redaction_and_ignore(api: Api) -> None:
    a, late, pest = register(api), register(api), register(api)
    w = word()
    room_id = a.create_room(preset="public_chat")
    a.ok("PUT", f"rooms/{q(room_id)}/state/m.room.history_visibility", {"history_visibility": "joined"})
    early = a.send(room_id, f"early {w}")
    late.join(room_id)
    pest.join(room_id)
    later = a.send(room_id, f"later {w}")
    spam = pest.send(room_id, f"spam {w}")
    ids = lambda res: [r["result"]["event_id"] for r in res["results"]]  # noqa: E731
    assert ids(room_events(late, {"search_term": w, "order_by": "recent"})) == [spam, later]
    assert ids(room_events(a, {"search_term": w, "order_by": "recent"})) == [spam, later, early]

    late.ok("PUT", f"user/{q(late.user_id)}/account_data/m.ignored_user_list",
            {"ignored_users": {pest.user_id: {}}})
    assert ids(room_events(late, {"search_term": w, "order_by": "recent"})) == [later]

    a.ok("PUT", f"rooms/{q(room_id)}/redact/{q(later)}/{uuid.uuid4().hex}", {})
    assert ids(room_events(a, {"search_term": w, "order_by": "recent"})) == [spam, early]


def test_redaction_sent_in_another_room_leaves_the_event_searchable(api: Api) -> None:
    """A redaction only acts within its own room (spec: "Redactions"): naming another room's event, from a room
    of one's own, must not drop that event from anybody's search results."""
    alice, mallory = register(api), register(api)
    w = word()
    private = alice.create_room(preset="private_chat")
    name_event = alice.ok("PUT", f"rooms/{q(private)}/state/m.room.name", {"name": f"secret {w}"})["event_id"]
    message = alice.send(private, f"hello {w}")
    own_other = alice.create_room()
    mallorys = mallory.create_room()
    criteria = {"search_term": w, "order_by": "recent", "keys": ["content.body", "content.name"]}
    ids = lambda: [r["result"]["event_id"] for r in room_events(alice, criteria)["results"]]  # noqa: E731
    assert ids() == [message, name_event]

    assert mallory.req("PUT", f"rooms/{q(mallorys)}/redact/{q(name_event)}/{uuid.uuid4().hex}", {}).status == 200
    assert alice.req("PUT", f"rooms/{q(own_other)}/redact/{q(message)}/{uuid.uuid4().hex}", {}).status == 200
    assert ids() == [message, name_event]
    assert room_events(alice, criteria)["count"] == 2
    assert alice.ok("GET", f"rooms/{q(private)}/event/{q(message)}")["content"]["body"] == f"hello {w}"
    # The redaction in the right room still takes effect.
    alice.ok("PUT", f"rooms/{q(private)}/redact/{q(message)}/{uuid.uuid4().hex}", {})
    assert ids() == [name_event]


def test_search_bad_input(api: Api) -> None:
    a = register(api)
    assert a.req("POST", "search", {}).errcode() == "M_BAD_JSON"
    assert a.req("POST", "search", {"search_categories": []}).errcode() == "M_BAD_JSON"
    r = a.req("POST", "search", {"search_categories": {"room_events": {"search_term": ""}}})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    assert search(a, {"search_term": "   "}).errcode() == "M_INVALID_PARAM"
    assert search(a, {}).errcode() == "M_BAD_JSON"
    assert search(a, {"search_term": 5}).errcode() == "M_BAD_JSON"
    assert search(a, {"search_term": "x", "order_by": "loudest"}).errcode() == "M_INVALID_PARAM"
    assert search(a, {"search_term": "x", "keys": ["content.secret"]}).errcode() == "M_INVALID_PARAM"
    assert search(a, {"search_term": "x", "filter": {"limit": "ten"}}).errcode() == "M_BAD_JSON"
    r = search(a, {"search_term": "x", "filter": {"limit": 10**15}})  # a valid filter limit, too many results
    assert r.errcode() == "M_INVALID_PARAM" and "search_categories.room_events.filter.limit" in r.json["error"]
    for flt, named in (({"limit": 10**30}, "search_categories.room_events.filter.limit"),
                       ("none", "search_categories.room_events.filter"),
                       ({"senders": "@a:x"}, "search_categories.room_events.filter.senders")):
        r = search(a, {"search_term": "x", "filter": flt})
        assert r.errcode() == "M_BAD_JSON" and named in r.json["error"], r.json
    assert search(a, {"search_term": "x", "event_context": {"before_limit": -1}}).errcode() == "M_INVALID_PARAM"
    assert search(a, {"search_term": "x", "groupings": {"group_by": [{"key": "type"}]}}).errcode() == \
        "M_INVALID_PARAM"
    assert search(a, {"search_term": "x"}, next_batch="bogus").errcode() == "M_INVALID_PARAM"
    # Unknown keys are ignored; an unknown category alone gives an empty result.
    r = a.req("POST", "search", {"search_categories": {"room_events": {"search_term": "x", "colour": "red"}},
                                 "extra": 1})
    assert r.status == 200 and r.json["search_categories"]["room_events"]["results"] == []
    assert a.ok("POST", "search", {"search_categories": {"future_category": {}}}) == {"search_categories": {}}
    assert a.api.request("POST", "/_matrix/client/v3/search", {"search_categories": {}}).status == 401


def _run_sql(hs: HomeserverProcess, statements: list[str]) -> None:
    if hs.database == "postgres":
        import psycopg2

        conn = psycopg2.connect(**hs.pg_args)
        try:
            with conn, conn.cursor() as cur:
                for stmt in statements:
                    cur.execute(stmt)
        finally:
            conn.close()
        return
    conn = sqlite3.connect(os.path.join(hs.data_dir, "homeserver.db"))
    try:
        with conn:
            for stmt in statements:
                conn.execute(stmt)
    finally:
        conn.close()


def test_search_migration_indexes_existing_events(fresh_homeserver: HomeserverProcess) -> None:
    """A server upgraded to the search migration finds the messages, names and topics it already had (and not
    the redacted ones)."""
    hs = fresh_homeserver
    hs.start()
    a = register(Api(hs.base_url))
    w = word()
    room_id = a.create_room(name=f"bridge {w}", topic=f"topic {w}")
    kept = a.send(room_id, f"kept {w}")
    gone = a.send(room_id, f"gone {w}")
    a.ok("PUT", f"rooms/{q(room_id)}/redact/{q(gone)}/{uuid.uuid4().hex}", {})
    hs.stop()
    # Roll the database back to before migration 061, as if these events predated it.
    _run_sql(hs, ["DROP TABLE event_search", "DELETE FROM schema_migrations WHERE name LIKE '061_search%'"])
    hs.start()
    res = room_events(a, {"search_term": w, "order_by": "recent"})
    assert [(r["result"]["type"], r["result"]["event_id"] == kept) for r in res["results"]] == [
        ("m.room.message", True), ("m.room.topic", False), ("m.room.name", False)]
    assert res["count"] == 3
    # New events are indexed on top of the backfilled ones.
    fresh = a.send(room_id, f"fresh {w}")
    assert room_events(a, {"search_term": w, "order_by": "recent"})["results"][0]["result"]["event_id"] == fresh

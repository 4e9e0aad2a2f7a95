"""Reporting content (spec: "Reporting content"): events, rooms (v1.13) and users (v1.14); the stored reports
are read back from the server's database."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from tests.support.client import Api, q, register
from tests.support.server import HomeserverProcess


def stored_reports(hs: HomeserverProcess, reporter: str) -> list[tuple[Any, ...]]:
    """The reporter's stored reports as ``(room_id, event_id, target_user_id, reason, score)``, sorted by their
    repr: reports received in the same millisecond have no defined order (report IDs are random)."""
    sql = ("SELECT room_id, event_id, target_user_id, reason, score FROM content_reports WHERE reporter = %s "
           "ORDER BY received_ts, report_id")
    if hs.database == "postgres":
        import psycopg2

        conn = psycopg2.connect(**hs.pg_args)
        try:
            with conn.cursor() as cur:
                cur.execute(sql, (reporter,))
                return sorted((tuple(r) for r in cur.fetchall()), key=repr)
        finally:
            conn.close()
    conn = sqlite3.connect(os.path.join(hs.data_dir, "homeserver.db"))
    try:
        return sorted(conn.execute(sql.replace("%s", "?"), (reporter,)).fetchall(), key=repr)
    finally:
        conn.close()


def test_report_event(api: Api, homeserver: HomeserverProcess) -> None:
    a, b = register(api), register(api)
    room_id = a.create_room(preset="public_chat")
    b.join(room_id)
    bad = a.send(room_id, "spam spam")
    path = f"rooms/{q(room_id)}/report/{q(bad)}"
    assert b.ok("POST", path, {"reason": "spam", "score": -100}) == {}
    assert b.ok("POST", path, {}) == {}                       # reason and score are optional
    assert stored_reports(homeserver, b.user_id) == sorted([
        (room_id, bad, a.user_id, "spam", -100), (room_id, bad, a.user_id, None, None)], key=repr)

    assert b.req("POST", path, {"reason": 5}).errcode() == "M_BAD_JSON"
    assert b.req("POST", path, {"score": 10}).errcode() == "M_BAD_JSON"
    assert b.req("POST", path, {"score": "low"}).errcode() == "M_BAD_JSON"
    assert b.req("POST", path, raw_body=b"not json").errcode() == "M_NOT_JSON"
    r = b.req("POST", f"rooms/{q(room_id)}/report/{q('$missing:localhost')}", {"reason": "x"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    other_room = b.create_room()
    assert b.req("POST", f"rooms/{q(other_room)}/report/{q(bad)}", {}).status == 404
    outsider = register(api)
    assert outsider.req("POST", path, {"reason": "x"}).status == 404   # must be joined
    assert api.request("POST", "/_matrix/client/v3/" + path, {}).status == 401
    assert len(stored_reports(homeserver, b.user_id)) == 2


def test_report_room_and_user(api: Api, homeserver: HomeserverProcess) -> None:
    a, reporter = register(api), register(api)
    room_id = a.create_room()                                 # the reporter need not be joined
    assert reporter.ok("POST", f"rooms/{q(room_id)}/report", {"reason": "phishing"}) == {}
    r = reporter.req("POST", f"rooms/{q(room_id)}/report", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = reporter.req("POST", f"rooms/{q('!nope:localhost')}/report", {"reason": "x"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert reporter.ok("POST", f"users/{q(a.user_id)}/report", {"reason": ""}) == {}
    assert reporter.req("POST", f"users/{q('@ghost:localhost')}/report", {"reason": "x"}).status == 404
    assert stored_reports(homeserver, reporter.user_id) == sorted([
        (room_id, None, None, "phishing", None), (None, None, a.user_id, "", None)], key=repr)

"""Account data (global and per room) and room tags over HTTP."""

from tests.support.client import CS, Api, q, register


def test_global_account_data_roundtrip(api: Api) -> None:
    u = register(api)
    path = f"user/{q(u.user_id)}/account_data/org.example.oncall"
    r = u.req("GET", path)
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert u.ok("PUT", path, {"quiet_hours": "22:00-07:00", "n": 5}) == {}
    assert u.ok("GET", path) == {"quiet_hours": "22:00-07:00", "n": 5}
    u.ok("PUT", path, {"n": 6})
    assert u.ok("GET", path) == {"n": 6}
    u.ok("PUT", f"user/{q(u.user_id)}/account_data/m.ignored_user_list", {"ignored_users": {"@x:y": {}}})
    assert u.ok("GET", f"user/{q(u.user_id)}/account_data/m.ignored_user_list") == {"ignored_users": {"@x:y": {}}}


def test_other_users_data_forbidden(api: Api) -> None:
    u, v = register(api), register(api)
    u.ok("PUT", f"user/{q(u.user_id)}/account_data/a.b", {"secret": 1})
    for method, body in (("GET", None), ("PUT", {"x": 1})):
        r = v.req(method, f"user/{q(u.user_id)}/account_data/a.b", body)
        assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
        r = v.req(method, f"user/{q(u.user_id)}/rooms/{q('!r:test.local')}/account_data/a.b", body)
        assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = v.req("GET", f"user/{q(u.user_id)}/rooms/{q('!r:test.local')}/tags")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_server_managed_types_and_bad_bodies(api: Api) -> None:
    u = register(api)
    for t in ("m.fully_read", "m.push_rules"):
        r = u.req("PUT", f"user/{q(u.user_id)}/account_data/{t}", {"event_id": "$x"})
        assert (r.status, r.errcode()) == (405, "M_BAD_JSON"), t
        r = u.req("PUT", f"user/{q(u.user_id)}/rooms/{q('!r:test.local')}/account_data/{t}", {"event_id": "$x"})
        assert (r.status, r.errcode()) == (405, "M_BAD_JSON"), t
    r = u.req("PUT", f"user/{q(u.user_id)}/account_data/a.b", raw_body=b"[1]")
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = u.req("PUT", f"user/{q(u.user_id)}/account_data/a.b", raw_body=b"{")
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")
    r = u.req("PUT", f"user/{q(u.user_id)}/rooms/not-a-room/account_data/a.b", {})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")


def test_room_account_data_is_per_room(api: Api) -> None:
    u = register(api)
    room_a, room_b = "!a:test.local", "!b:test.local"
    path = f"user/{q(u.user_id)}/rooms/{q(room_a)}/account_data/org.example.prefs"
    u.ok("PUT", path, {"mute_until": 1893456000000})
    assert u.ok("GET", path) == {"mute_until": 1893456000000}
    r = u.req("GET", f"user/{q(u.user_id)}/rooms/{q(room_b)}/account_data/org.example.prefs")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = u.req("GET", f"user/{q(u.user_id)}/account_data/org.example.prefs")
    assert r.status == 404


def test_tags(api: Api) -> None:
    u = register(api)
    room = "!tagged:test.local"
    base = f"user/{q(u.user_id)}/rooms/{q(room)}/tags"
    assert u.ok("GET", base) == {"tags": {}}
    u.ok("PUT", f"{base}/m.favourite", {"order": 0.25})
    u.ok("PUT", f"{base}/u.alerts", {})
    assert u.ok("GET", base) == {"tags": {"m.favourite": {"order": 0.25}, "u.alerts": {}}}
    assert u.ok("GET", f"user/{q(u.user_id)}/rooms/{q(room)}/account_data/m.tag") == {
        "tags": {"m.favourite": {"order": 0.25}, "u.alerts": {}}}
    u.ok("DELETE", f"{base}/u.alerts")
    u.ok("DELETE", f"{base}/never.set")
    assert u.ok("GET", base) == {"tags": {"m.favourite": {"order": 0.25}}}
    r = u.req("PUT", f"{base}/x", {"order": "high"})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")

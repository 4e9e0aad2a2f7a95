"""POST /user/{userId}/filter and GET /user/{userId}/filter/{filterId}."""

from tests.support.client import Api, q, register

FILTER = {"room": {"timeline": {"limit": 20, "types": ["m.room.message", "m.*"], "not_senders": ["@bot:x"]},
                   "state": {"lazy_load_members": True}, "include_leave": False},
          "presence": {"types": []}, "event_format": "client", "event_fields": ["type", "content.body"]}


def test_upload_and_fetch(api: Api) -> None:
    u = register(api)
    r = u.ok("POST", f"user/{q(u.user_id)}/filter", FILTER)
    filter_id = r["filter_id"]
    assert isinstance(filter_id, str)
    assert u.ok("GET", f"user/{q(u.user_id)}/filter/{filter_id}") == FILTER
    # the same filter again keeps its ID; a different one gets a new one
    assert u.ok("POST", f"user/{q(u.user_id)}/filter", FILTER)["filter_id"] == filter_id
    other = u.ok("POST", f"user/{q(u.user_id)}/filter", {"room": {"timeline": {"limit": 1}}})["filter_id"]
    assert other != filter_id
    assert u.ok("GET", f"user/{q(u.user_id)}/filter/{other}") == {"room": {"timeline": {"limit": 1}}}


def test_unknown_filter_and_other_user(api: Api) -> None:
    u, v = register(api), register(api)
    fid = u.ok("POST", f"user/{q(u.user_id)}/filter", {})["filter_id"]
    for bad in ("999", "abc", "-1"):
        r = u.req("GET", f"user/{q(u.user_id)}/filter/{bad}")
        assert (r.status, r.errcode()) == (404, "M_NOT_FOUND"), bad
    r = v.req("GET", f"user/{q(u.user_id)}/filter/{fid}")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = v.req("POST", f"user/{q(u.user_id)}/filter", {})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    # filter IDs are per user
    r = v.req("GET", f"user/{q(v.user_id)}/filter/{fid}")
    assert r.status == 404


def test_invalid_filters_rejected(api: Api) -> None:
    u = register(api)
    path = f"user/{q(u.user_id)}/filter"
    for bad in ({"room": {"timeline": {"limit": "10"}}}, {"room": {"timeline": {"limit": -1}}},
                {"room": {"timeline": {"types": "m.room.message"}}}, {"room": {"rooms": [1]}},
                {"event_format": "xml"}, {"event_fields": "type"}, {"room": []},
                {"room": {"include_leave": "yes"}}, {"presence": {"senders": [None]}},
                {"room": {"state": {"lazy_load_members": 1}}}):
        r = u.req("POST", path, bad)
        assert (r.status, r.errcode()) == (400, "M_BAD_JSON"), bad
    r = u.req("POST", path, raw_body=b"nope")
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")

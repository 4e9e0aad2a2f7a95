"""Device management: list, get, rename, delete with UIA (single and bulk), last_seen."""

import time

from tests.support.client import CS, Api, User, register


def _login(api: Api, u: User, name: str) -> dict:
    r = api.request("POST", CS + "/login", {"type": "m.login.password", "password": u.password,
                                            "identifier": {"type": "m.id.user", "user": u.user_id},
                                            "initial_device_display_name": name})
    assert r.status == 200, r.json
    return r.json


def _pw(u: User, session: str | None, password: str | None = None) -> dict:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.user_id},
            "password": password or u.password}
    if session:
        auth["session"] = session
    return auth


def test_list_get_rename(api: Api) -> None:
    u = register(api)
    phone = _login(api, u, "phone")
    devices = u.ok("GET", "devices")["devices"]
    assert sorted(d["device_id"] for d in devices) == sorted([u.device_id, phone["device_id"]])
    for d in devices:
        assert set(d) == {"device_id", "display_name", "last_seen_ip", "last_seen_ts"}
    # last_seen is written in the background after an authenticated request: poll for it (bounded by time, not
    # by a count of tries, so a slow database write on a busy machine still lands within the bound)
    before_ms = int(time.time() * 1000) - 5000
    deadline = time.monotonic() + 15
    while True:
        mine = next(d for d in u.ok("GET", "devices")["devices"] if d["device_id"] == u.device_id)
        if mine["last_seen_ts"] is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert mine["last_seen_ip"] == "127.0.0.1" and mine["last_seen_ts"] >= before_ms
    assert u.ok("GET", f"devices/{phone['device_id']}")["display_name"] == "phone"
    assert u.ok("PUT", f"devices/{phone['device_id']}", {"display_name": "Pager phone"}) == {}
    assert u.ok("GET", f"devices/{phone['device_id']}")["display_name"] == "Pager phone"


def test_unknown_and_foreign_devices_404(api: Api) -> None:
    u = register(api)
    v = register(api)
    for method, body in (("GET", None), ("PUT", {"display_name": "x"}), ("DELETE", {})):
        r = u.req(method, "devices/NOSUCHDEVICE", body)
        assert (r.status, r.errcode()) == (404, "M_NOT_FOUND"), method
        r = u.req(method, f"devices/{v.device_id}", body)
        assert (r.status, r.errcode()) == (404, "M_NOT_FOUND"), method
    r = u.req("PUT", f"devices/{u.device_id}", {"display_name": 3})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = u.req("PUT", f"devices/{u.device_id}", raw_body=b"{oops")
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")


def test_delete_device_with_uia(api: Api) -> None:
    u = register(api)
    laptop = _login(api, u, "laptop")
    first = u.req("DELETE", f"devices/{laptop['device_id']}", {})
    assert first.status == 401 and first.json["flows"] == [{"stages": ["m.login.password"]}]
    r = u.req("DELETE", f"devices/{laptop['device_id']}", {"auth": _pw(u, first.json["session"])})
    assert (r.status, r.json) == (200, {})
    r = api.request("GET", CS + "/account/whoami", token=laptop["access_token"])
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    assert [d["device_id"] for d in u.ok("GET", "devices")["devices"]] == [u.device_id]


def test_bulk_delete_and_wrong_password(api: Api) -> None:
    u = register(api)
    a, b = _login(api, u, "a"), _login(api, u, "b")
    first = u.req("POST", "delete_devices", {"devices": [a["device_id"], b["device_id"]]})
    assert first.status == 401
    bad = u.req("POST", "delete_devices", {"devices": [a["device_id"]],
                                           "auth": _pw(u, first.json["session"], "wrong")})
    assert (bad.status, bad.errcode()) == (401, "M_FORBIDDEN")
    assert bad.json["session"] == first.json["session"] and bad.json["flows"]
    assert len(u.ok("GET", "devices")["devices"]) == 3
    ok = u.req("POST", "delete_devices", {"devices": [a["device_id"], b["device_id"], "UNKNOWN"],
                                          "auth": _pw(u, bad.json["session"])})
    assert ok.status == 200, ok.json
    assert [d["device_id"] for d in u.ok("GET", "devices")["devices"]] == [u.device_id]
    for gone in (a, b):
        assert api.request("GET", CS + "/account/whoami", token=gone["access_token"]).status == 401


def test_bulk_delete_bad_input(api: Api) -> None:
    u = register(api)
    r = u.req("POST", "delete_devices", {"devices": "ABC"})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = u.req("POST", "delete_devices", {})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = api.request("POST", CS + "/delete_devices", {"devices": []})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")

"""GET/POST /login, /logout, /logout/all and login rate limits."""

from tests.support.client import CS, Api, register


def _login(api: Api, user: str, password: str, **extra) -> "object":
    body = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password,
            **extra}
    return api.request("POST", CS + "/login", body)


def test_login_flows(api: Api) -> None:
    r = api.request("GET", CS + "/login")
    assert r.status == 200
    assert {"type": "m.login.password"} in r.json["flows"]


def test_login_by_localpart_mxid_and_legacy_user(api: Api, homeserver) -> None:
    u = register(api)
    localpart = u.user_id[1:].split(":")[0]
    r = _login(api, localpart, u.password, initial_device_display_name="pager")
    assert r.status == 200, r.json
    assert r.json["user_id"] == u.user_id and r.json["device_id"] != u.device_id
    assert r.json["access_token"] != u.access_token
    dev = api.request("GET", CS + f"/devices/{r.json['device_id']}", token=r.json["access_token"]).json
    assert dev["display_name"] == "pager"
    assert _login(api, u.user_id, u.password).json["user_id"] == u.user_id
    assert _login(api, localpart.upper(), u.password).json["user_id"] == u.user_id
    legacy = api.request("POST", CS + "/login", {"type": "m.login.password", "user": localpart,
                                                 "password": u.password})
    assert (legacy.status, legacy.json["user_id"]) == (200, u.user_id)


def test_login_reuses_given_device_id(api: Api) -> None:
    u = register(api)
    r = _login(api, u.user_id, u.password, device_id=u.device_id)
    assert r.json["device_id"] == u.device_id
    devices = api.request("GET", CS + "/devices", token=r.json["access_token"]).json["devices"]
    assert [d["device_id"] for d in devices] == [u.device_id]
    r = _login(api, u.user_id, u.password, device_id="MYPAGER")
    assert r.json["device_id"] == "MYPAGER"


def test_wrong_password_and_unknown_user_forbidden(api: Api) -> None:
    u = register(api)
    r = _login(api, u.user_id, "wrong")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = _login(api, "nobody-here-at-all", "wrong")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = _login(api, "@someone:other.server", "wrong")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_login_bad_input(api: Api) -> None:
    r = api.request("POST", CS + "/login", raw_body=b"{not json")
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")
    r = api.request("POST", CS + "/login", {"type": "m.login.sso"})
    assert (r.status, r.errcode()) == (400, "M_UNKNOWN")
    r = api.request("POST", CS + "/login", {"type": "m.login.password", "user": "x", "password": 5})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = api.request("POST", CS + "/login", {"type": "m.login.password", "password": "x"})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")
    r = api.request("POST", CS + "/login", {"type": "m.login.password", "password": "x",
                                             "identifier": {"type": "m.id.thirdparty", "medium": "email",
                                                            "address": "a@b.c"}})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_logout_revokes_token_and_deletes_device(api: Api) -> None:
    u = register(api)
    second = _login(api, u.user_id, u.password).json
    r = api.request("POST", CS + "/logout", {}, token=u.access_token)
    assert (r.status, r.json) == (200, {})
    r = api.request("GET", CS + "/account/whoami", token=u.access_token)
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    devices = api.request("GET", CS + "/devices", token=second["access_token"]).json["devices"]
    assert [d["device_id"] for d in devices] == [second["device_id"]]


def test_logout_all(api: Api) -> None:
    u = register(api)
    second = _login(api, u.user_id, u.password).json
    r = api.request("POST", CS + "/logout/all", {}, token=second["access_token"])
    assert r.status == 200
    for token in (u.access_token, second["access_token"]):
        r = api.request("GET", CS + "/account/whoami", token=token)
        assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    fresh = _login(api, u.user_id, u.password).json
    devices = api.request("GET", CS + "/devices", token=fresh["access_token"]).json["devices"]
    assert [d["device_id"] for d in devices] == [fresh["device_id"]]


def test_failed_attempts_are_rate_limited(fresh_homeserver) -> None:
    lots = {"per_second": 1000, "burst_count": 1000}
    fresh_homeserver.extra_config = {"rc_login": {"address": lots, "account": lots,
                                                  "failed_attempts": {"per_second": 0.001, "burst_count": 2}}}
    fresh_homeserver.start()
    api = Api(fresh_homeserver.base_url)
    u = register(api, "guarded")
    assert _login(api, u.user_id, "bad").status == 403
    assert _login(api, u.user_id, "bad").status == 403
    r = _login(api, u.user_id, u.password)
    assert (r.status, r.errcode()) == (429, "M_LIMIT_EXCEEDED")
    # another account is not affected
    v = register(api, "other")
    assert _login(api, v.user_id, v.password).status == 200

"""whoami, password change (UIA m.login.password) and deactivation."""

from tests.support.client import CS, Api, User, register


def _login(api: Api, user_id: str, password: str):
    return api.request("POST", CS + "/login", {"type": "m.login.password", "password": password,
                                               "identifier": {"type": "m.id.user", "user": user_id}})


def _pw_auth(u: User, session: str | None = None, password: str | None = None) -> dict:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": u.user_id},
            "password": password or u.password}
    if session:
        auth["session"] = session
    return auth


def test_whoami(api: Api) -> None:
    u = register(api)
    assert u.ok("GET", "account/whoami") == {"user_id": u.user_id, "device_id": u.device_id, "is_guest": False}
    r = api.request("GET", CS + "/account/whoami")
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")


def test_change_password_logs_out_other_devices(api: Api) -> None:
    u = register(api)
    other = _login(api, u.user_id, u.password).json
    first = u.req("POST", "account/password", {"new_password": "new secret"})
    assert first.status == 401
    assert first.json["flows"] == [{"stages": ["m.login.password"]}]
    r = u.req("POST", "account/password", {"new_password": "new secret",
                                           "auth": _pw_auth(u, first.json["session"])})
    assert (r.status, r.json) == (200, {})
    assert u.req("GET", "account/whoami").status == 200
    r = api.request("GET", CS + "/account/whoami", token=other["access_token"])
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    assert [d["device_id"] for d in u.ok("GET", "devices")["devices"]] == [u.device_id]
    assert _login(api, u.user_id, u.password).status == 403
    assert _login(api, u.user_id, "new secret").status == 200


def test_change_password_keeping_devices_and_wrong_password(api: Api) -> None:
    u = register(api)
    other = _login(api, u.user_id, u.password).json
    r = u.req("POST", "account/password", {"new_password": "n2", "logout_devices": False,
                                           "auth": _pw_auth(u, password="not it")})
    assert (r.status, r.errcode()) == (401, "M_FORBIDDEN")
    assert "session" in r.json and r.json["flows"] == [{"stages": ["m.login.password"]}]
    r = u.req("POST", "account/password", {"new_password": "n2", "logout_devices": False,
                                           "auth": _pw_auth(u, r.json["session"])})
    assert r.status == 200, r.json
    assert api.request("GET", CS + "/account/whoami", token=other["access_token"]).status == 200
    r = u.req("POST", "account/password", {"new_password": 5, "auth": _pw_auth(u, password="n2")})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")


def test_password_stage_must_be_the_requester(api: Api) -> None:
    u = register(api)
    v = register(api)
    r = u.req("POST", "account/password", {"new_password": "x", "auth": _pw_auth(v)})
    assert (r.status, r.errcode()) == (401, "M_FORBIDDEN")
    assert _login(api, u.user_id, u.password).status == 200


def test_uia_session_is_bound_to_its_operation(api: Api) -> None:
    u = register(api)
    first = u.req("POST", "account/password", {"new_password": "x"})
    r = u.req("POST", "delete_devices", {"devices": [], "auth": _pw_auth(u, first.json["session"])})
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_deactivate(api: Api) -> None:
    u = register(api)
    r = u.req("POST", "account/deactivate", {})
    assert r.status == 401 and r.json["flows"] == [{"stages": ["m.login.password"]}]
    r = u.req("POST", "account/deactivate", {"auth": _pw_auth(u, r.json["session"])})
    assert (r.status, r.json) == (200, {"id_server_unbind_result": "no-support"})
    r = u.req("GET", "account/whoami")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    assert _login(api, u.user_id, u.password).status == 403
    localpart = u.user_id[1:].split(":")[0]
    r = api.request("GET", CS + "/register/available", params={"username": localpart})
    assert (r.status, r.errcode()) == (400, "M_USER_IN_USE")


def test_deactivation_leaves_joined_rooms(api: Api) -> None:
    from tests.support.client import q

    owner, leaver = register(api), register(api)
    room_id = owner.create_room()
    owner.invite(room_id, leaver.user_id)
    leaver.join(room_id)
    r = leaver.req("POST", "account/deactivate", {"auth": _pw_auth(leaver)})
    assert r.status == 200, r.json
    member = owner.ok("GET", f"rooms/{q(room_id)}/state/m.room.member/{q(leaver.user_id)}")
    assert member["membership"] == "leave"

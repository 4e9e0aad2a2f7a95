"""POST /register (UIA with m.login.dummy), /register/available, and the restart survival of UIA sessions."""

import uuid

from tests.support.client import CS, Api, register


def _name(prefix: str = "r") -> str:
    return prefix + uuid.uuid4().hex[:10]


def test_one_shot_dummy_registration_like_nio(api: Api, homeserver) -> None:
    name = _name()
    r = api.request("POST", CS + "/register", {"username": name, "password": "pw-123456",
                                                "auth": {"type": "m.login.dummy"},
                                                "initial_device_display_name": "nio phone"})
    assert r.status == 200, r.json
    assert r.json["user_id"] == f"@{name}:{homeserver.server_name}"
    token, device_id = r.json["access_token"], r.json["device_id"]
    who = api.request("GET", CS + "/account/whoami", token=token)
    assert who.json == {"user_id": r.json["user_id"], "device_id": device_id, "is_guest": False}
    devices = api.request("GET", CS + "/devices", token=token).json["devices"]
    assert [(d["device_id"], d["display_name"]) for d in devices] == [(device_id, "nio phone")]


def test_two_step_uia_like_element(api: Api) -> None:
    name = _name()
    body = {"username": name, "password": "pw-123456", "device_id": "ELEMENTWEB"}
    first = api.request("POST", CS + "/register", body)
    assert first.status == 401
    assert first.json["flows"] == [{"stages": ["m.login.dummy"]}]
    assert first.json["params"] == {} and first.json["completed"] == []
    session = first.json["session"]
    second = api.request("POST", CS + "/register", {**body, "auth": {"type": "m.login.dummy", "session": session}})
    assert second.status == 200, second.json
    assert second.json["device_id"] == "ELEMENTWEB"
    # a finished session cannot authorise a second registration
    third = api.request("POST", CS + "/register", {"username": _name(), "password": "x",
                                                    "auth": {"type": "m.login.dummy", "session": session}})
    assert third.status == 400


def test_session_keeps_fields_of_the_first_request(api: Api) -> None:
    name = _name()
    first = api.request("POST", CS + "/register", {"username": name, "password": "pw-123456",
                                                    "initial_device_display_name": "laptop"})
    session = first.json["session"]
    second = api.request("POST", CS + "/register", {"password": "pw-123456",
                                                     "auth": {"type": "m.login.dummy", "session": session}})
    assert second.status == 200, second.json
    assert second.json["user_id"].startswith(f"@{name}:")
    dev = api.request("GET", CS + "/devices/" + second.json["device_id"], token=second.json["access_token"])
    assert dev.json["display_name"] == "laptop"


def test_unknown_session_and_stage(api: Api) -> None:
    r = api.request("POST", CS + "/register", {"username": _name(), "password": "p",
                                                "auth": {"type": "m.login.dummy", "session": "nope"}})
    assert r.status == 400
    r = api.request("POST", CS + "/register", {"username": _name(), "password": "p",
                                                "auth": {"type": "m.login.recaptcha"}})
    assert (r.status, r.errcode()) == (400, "M_UNRECOGNIZED")
    assert r.json["flows"] == [{"stages": ["m.login.dummy"]}]


def test_username_rules_and_availability(api: Api) -> None:
    user = register(api)
    localpart = user.user_id[1:].split(":")[0]
    r = api.request("POST", CS + "/register", {"username": localpart, "password": "p",
                                                "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_USER_IN_USE")
    # case-insensitively unique: the upper-case spelling is the same account name
    r = api.request("POST", CS + "/register", {"username": localpart.upper(), "password": "p",
                                                "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_USER_IN_USE")
    r = api.request("GET", CS + "/register/available", params={"username": localpart})
    assert (r.status, r.errcode()) == (400, "M_USER_IN_USE")
    r = api.request("GET", CS + "/register/available", params={"username": _name()})
    assert (r.status, r.json) == (200, {"available": True})
    for bad in ("has space", "ümlaut", "Upper", "_reserved", "x" * 250, ""):
        r = api.request("GET", CS + "/register/available", params={"username": bad})
        assert (r.status, r.errcode()) == (400, "M_INVALID_USERNAME"), bad
    r = api.request("POST", CS + "/register", {"username": "white space", "password": "p",
                                                "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_INVALID_USERNAME")


def test_generated_localpart_is_numeric(api: Api) -> None:
    r = api.request("POST", CS + "/register", {"password": "pw-1", "auth": {"type": "m.login.dummy"}})
    assert r.status == 200, r.json
    localpart = r.json["user_id"][1:].split(":")[0]
    assert localpart.isdigit()
    r2 = api.request("POST", CS + "/register", {"password": "pw-1", "auth": {"type": "m.login.dummy"}})
    assert int(r2.json["user_id"][1:].split(":")[0]) > int(localpart)


def test_inhibit_login_guest_and_bad_input(api: Api) -> None:
    name = _name()
    r = api.request("POST", CS + "/register", {"username": name, "password": "p", "inhibit_login": True,
                                                "auth": {"type": "m.login.dummy"}})
    assert r.status == 200 and "access_token" not in r.json and "device_id" not in r.json
    assert r.json["user_id"].startswith(f"@{name}:")
    r = api.request("POST", CS + "/register", {}, params={"kind": "guest"})
    assert (r.status, r.errcode()) == (403, "M_GUEST_ACCESS_FORBIDDEN")
    r = api.request("POST", CS + "/register", raw_body=b'{"username": ')
    assert (r.status, r.errcode()) == (400, "M_NOT_JSON")
    r = api.request("POST", CS + "/register", raw_body=b"[]")
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = api.request("POST", CS + "/register", {"username": 12, "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = api.request("POST", CS + "/register", {"username": _name(), "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")


def test_empty_password_is_refused_and_never_logs_in(api: Api) -> None:
    """An account with an empty password is one anyone can log into: registration refuses it (400
    M_WEAK_PASSWORD) and creates nothing, in one shot or in the second step of the auth flow."""
    name = _name()
    r = api.request("POST", CS + "/register", {"username": name, "password": "", "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_WEAK_PASSWORD")
    first = api.request("POST", CS + "/register", {"username": name, "password": "pw-123456"})
    assert first.status == 401
    r = api.request("POST", CS + "/register", {"username": name, "password": "",
                                                "auth": {"type": "m.login.dummy", "session": first.json["session"]}})
    assert (r.status, r.errcode()) == (400, "M_WEAK_PASSWORD")
    available = api.request("GET", CS + "/register/available", params={"username": name})
    assert available.json == {"available": True}
    login = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": name}, "password": ""}
    assert api.request("POST", CS + "/login", login).status == 403


def test_registration_disabled_and_rate_limited(fresh_homeserver) -> None:
    fresh_homeserver.extra_config = {"enable_registration": False,
                                     "rc_registration": {"per_second": 0.001, "burst_count": 2}}
    fresh_homeserver.start()
    api = Api(fresh_homeserver.base_url)
    r = api.request("POST", CS + "/register", {"username": "x", "password": "p", "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode(), r.json["error"]) == (403, "M_FORBIDDEN", "Registration has been disabled")
    fresh_homeserver.stop()
    fresh_homeserver.extra_config = {"rc_registration": {"per_second": 0.001, "burst_count": 2}}
    fresh_homeserver.config_path = ""
    fresh_homeserver.start()
    for i in range(2):
        register(api, f"limited{i}")
    r = api.request("POST", CS + "/register", {"username": "limited3", "password": "p",
                                                "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (429, "M_LIMIT_EXCEEDED")
    assert r.json["retry_after_ms"] > 0


def test_uia_session_and_tokens_survive_restart(fresh_homeserver) -> None:
    fresh_homeserver.start()
    api = Api(fresh_homeserver.base_url)
    user = register(api, "survivor")
    first = api.request("POST", CS + "/register", {"username": "later", "password": "pw"})
    session = first.json["session"]
    fresh_homeserver.restart()
    who = api.request("GET", CS + "/account/whoami", token=user.access_token)
    assert (who.status, who.json["user_id"]) == (200, user.user_id)
    second = api.request("POST", CS + "/register", {"username": "later", "password": "pw",
                                                     "auth": {"type": "m.login.dummy", "session": session}})
    assert second.status == 200, second.json
    assert second.json["user_id"] == f"@later:{fresh_homeserver.server_name}"

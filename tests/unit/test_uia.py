"""User-Interactive Authentication: session creation, one-shot stages, wrong passwords, operation binding,
persistence in the database (sessions survive a new AuthHandler on the same database)."""

from types import SimpleNamespace
from typing import Any

import pytest

from homeserver.handlers.auth import UI_AUTH_SESSION_LIFETIME_MS, AuthHandler
from homeserver.http.errors import MatrixError
from homeserver.storage.accounts import AccountStore
from tests.unit.accounts_testlib import FakeReactor, run, sqlite_db

DUMMY = [["m.login.dummy"]]
PASSWORD = [["m.login.password"]]


class FakeRequest:
    def __init__(self, path: bytes = b"/_matrix/client/v3/register", method: bytes = b"POST") -> None:
        self.path = path
        self.method = method


def make_handler(db: Any = None, clock: FakeReactor | None = None) -> AuthHandler:
    db = db or sqlite_db()
    store = AccountStore(db)
    hs = SimpleNamespace(account_store=store, config=SimpleNamespace(bcrypt_rounds=4), hostname="example.org",
                         clock=clock or FakeReactor())
    handler = AuthHandler(hs)

    async def check(password: str, stored: str | None) -> bool:  # bcrypt without the worker thread
        import bcrypt

        return bool(stored) and bcrypt.checkpw(password.encode(), stored.encode())

    handler.check_password_hash = check  # type: ignore[method-assign]
    return handler


def uia_error(handler: AuthHandler, body: dict, flows: Any = DUMMY, **kw: Any) -> MatrixError:
    with pytest.raises(MatrixError) as e:
        run(handler.check_ui_auth(kw.pop("request", FakeRequest()), body, flows, **kw))
    return e.value


def test_first_request_gets_flows_and_session() -> None:
    h = make_handler()
    err = uia_error(h, {"username": "a"})
    body = err.error_dict()
    assert err.code == 401
    assert body["flows"] == [{"stages": ["m.login.dummy"]}] and body["completed"] == []
    assert isinstance(body["session"], str) and len(body["session"]) >= 16
    result = run(h.check_ui_auth(FakeRequest(), {"auth": {"type": "m.login.dummy", "session": body["session"]}},
                                 DUMMY))
    assert result.session_id == body["session"]
    assert result.clientdict["username"] == "a"
    # completed sessions are gone
    assert uia_error(h, {"auth": {"type": "m.login.dummy", "session": body["session"]}}).code == 400


def test_one_shot_dummy_without_session() -> None:
    h = make_handler()
    result = run(h.check_ui_auth(FakeRequest(), {"auth": {"type": "m.login.dummy"}}, DUMMY))
    assert result.results == {"m.login.dummy": True}


def test_password_stage_secrets_never_stored() -> None:
    import bcrypt

    db = sqlite_db()
    h = make_handler(db)
    created = run(h.store.create_user("@ann:example.org", bcrypt.hashpw(b"pw", bcrypt.gensalt(4)).decode()))
    assert created
    req = FakeRequest(b"/_matrix/client/v3/account/password")
    first = uia_error(h, {"new_password": "n"}, PASSWORD, requester_user_id="@ann:example.org", request=req)
    session = first.error_dict()["session"]
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ann"}, "password": "bad",
            "session": session}
    wrong = uia_error(h, {"new_password": "n", "auth": auth}, PASSWORD, requester_user_id="@ann:example.org",
                      request=req)
    assert (wrong.code, wrong.errcode) == (401, "M_FORBIDDEN")
    assert wrong.error_dict()["session"] == session and wrong.error_dict()["completed"] == []
    stored = run(h.store.get_ui_auth_session(session))
    assert stored["clientdict"] == {} and stored["serverdict"] == {}
    ok = run(h.check_ui_auth(req, {"new_password": "n", "auth": {**auth, "password": "pw"}}, PASSWORD,
                             requester_user_id="@ann:example.org"))
    assert ok.results == {"m.login.password": "@ann:example.org"}


def test_session_bound_to_operation_and_user() -> None:
    h = make_handler()
    session = uia_error(h, {}, PASSWORD, requester_user_id="@a:example.org",
                        request=FakeRequest(b"/_matrix/client/v3/delete_devices")).error_dict()["session"]
    other_op = uia_error(h, {"auth": {"type": "m.login.dummy", "session": session}}, DUMMY,
                         requester_user_id="@a:example.org", request=FakeRequest(b"/_matrix/client/v3/register"))
    assert (other_op.code, other_op.errcode) == (403, "M_FORBIDDEN")
    other_user = uia_error(h, {"auth": {"type": "m.login.password", "session": session}}, PASSWORD,
                           requester_user_id="@b:example.org",
                           request=FakeRequest(b"/_matrix/client/r0/delete_devices"))
    assert (other_user.code, other_user.errcode) == (403, "M_FORBIDDEN")


def test_sessions_persist_and_expire() -> None:
    db = sqlite_db()
    clock = FakeReactor()
    session = uia_error(make_handler(db, clock), {"username": "z"}).error_dict()["session"]
    # a new handler on the same database (a restarted server) knows the session
    h2 = make_handler(db, clock)
    assert run(h2.check_ui_auth(FakeRequest(), {"auth": {"type": "m.login.dummy", "session": session}},
                                DUMMY)).clientdict == {"username": "z"}
    session = uia_error(h2, {}).error_dict()["session"]
    clock.now += UI_AUTH_SESSION_LIFETIME_MS / 1000 + 1
    assert uia_error(h2, {"auth": {"type": "m.login.dummy", "session": session}}).code == 400


def test_unknown_stage_and_bad_auth() -> None:
    h = make_handler()
    err = uia_error(h, {"auth": {"type": "m.login.password"}}, DUMMY)
    assert (err.code, err.errcode) == (400, "M_UNRECOGNIZED")
    err = uia_error(h, {"auth": "dummy"})
    assert (err.code, err.errcode) == (400, "M_BAD_JSON")
    err = uia_error(h, {"auth": {"type": "m.login.dummy", "session": 5}})
    assert (err.code, err.errcode) == (400, "M_BAD_JSON")


def test_an_empty_password_never_validates() -> None:
    """Even for an account whose stored hash is that of the empty string (stored by an older version or by
    hand), an empty password does not log in; the stored password still does not match anything else."""
    import bcrypt

    h = make_handler()
    assert run(h.store.create_user("@blank:example.org", bcrypt.hashpw(b"", bcrypt.gensalt(4)).decode()))
    assert run(h.validate_password("@blank:example.org", "")) is False
    assert run(h.validate_password("@blank:example.org", "x")) is False

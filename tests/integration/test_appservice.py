"""Application services against a real homeserver process and a real appservice HTTP server on loopback.

Covers: transactions (order, hs_token, interest, retries after 500s with every event exactly once), ephemeral
typing, user and alias queries, ping and its errors, identity assertion and its refusals, appservice
registration, exclusive namespaces and /metrics. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Iterator

import pytest
import yaml

from tests.appservice.receiver import AppServiceReceiver, Registration, as_request, register_virtual_user
from tests.support.client import CS, Api, User, q, register
from tests.support.server import HomeserverProcess, free_port

SERVER = "test.local"


def _write_registration(path: Any, reg: Registration) -> str:
    with open(path, "w") as f:
        yaml.safe_dump(reg.as_yaml_dict(), f)
    return str(path)


class Setup:
    def __init__(self, hs: HomeserverProcess, receiver: AppServiceReceiver, reg: Registration,
                 nourl: Registration, dead: Registration) -> None:
        self.hs = hs
        self.api = Api(hs.base_url)
        self.receiver = receiver
        self.reg = reg
        self.nourl = nourl
        self.dead = dead

    def as_req(self, method: str, path: str, body: Any = None, user_id: str | None = None, **kw: Any) -> Any:
        return as_request(self.api, self.reg.as_token, method, path, body, user_id=user_id, **kw)

    @property
    def bot(self) -> str:
        return f"@{self.reg.sender_localpart}:{SERVER}"

    def room_with_bot(self, user: User) -> str:
        """A room created by ``user`` in which the appservice's bot is joined (so the AS is interested)."""
        room_id = user.create_room(preset="public_chat")
        user.invite(room_id, self.bot)
        r = self.as_req("POST", f"join/{q(room_id)}", {})
        assert r.status == 200, r.json
        return room_id


@pytest.fixture(scope="module")
def setup(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    d = tmp_path_factory.mktemp(f"as-{database}")
    token = uuid.uuid4().hex
    reg = Registration(id="tocsin_test", as_token="as_" + token, hs_token="hs_" + token,
                       sender_localpart="tocsinbot",
                       users=[{"regex": rf"@_as_.*:{re.escape(SERVER)}", "exclusive": True},
                              {"regex": r"@pager-.*", "exclusive": True},
                              {"regex": r"@shared-.*", "exclusive": False}],
                       aliases=[{"regex": r"#_as_.*", "exclusive": True}, {"regex": r"#pager-.*", "exclusive": True}],
                       receive_ephemeral=True)
    receiver = AppServiceReceiver(reg.hs_token).start()
    reg.url = receiver.url
    nourl = Registration(id="silent", as_token="as2_" + token, hs_token="hs2_" + token, sender_localpart="silentbot",
                         users=[{"regex": r"@silent-.*", "exclusive": True}], url=None)
    dead = Registration(id="dead", as_token="as3_" + token, hs_token="hs3_" + token, sender_localpart="deadbot",
                        users=[{"regex": r"@dead-.*", "exclusive": True}], url=f"http://127.0.0.1:{free_port()}")
    files = [_write_registration(d / f"{r.id}.yaml", r) for r in (reg, nourl, dead)]
    hs = HomeserverProcess(data_dir=str(d / "hs"), database=database,
                           extra_config={"app_service_config_files": files})
    api = Api("http://unused")

    def on_user_query(user_id: str) -> bool:
        if not user_id.startswith("@_as_known"):
            return False
        r = register_virtual_user(api, reg.as_token, user_id[1:].split(":")[0])
        return r.status == 200

    def on_alias_query(alias: str) -> bool:
        if not alias.startswith("#_as_auto"):
            return False
        r = as_request(api, reg.as_token, "POST", "createRoom", {"room_alias_name": alias[1:].split(":")[0]})
        return r.status == 200

    receiver.on_user_query = on_user_query
    receiver.on_alias_query = on_alias_query
    try:
        hs.start()
        api.base_url = hs.base_url
        yield Setup(hs, receiver, reg, nourl, dead)
    finally:
        log = hs.log_tail(100)
        hs.cleanup()
        receiver.stop()
        if "Traceback" in log:
            print(f"\n--- homeserver log tail ---\n{log}")


# -- transactions -------------------------------------------------------------------------------------------------


def test_transactions_deliver_interesting_events_in_order(setup: Setup) -> None:
    alice = register(setup.api)
    room_id = setup.room_with_bot(alice)
    sent = [alice.send(room_id, f"alert {i}") for i in range(30)]
    # A room without any namespaced member: the appservice must not see it.
    private_room = alice.create_room()
    private_event = alice.send(private_room, "not for the bridge")
    assert setup.receiver.wait_for_events(sent), "appservice did not receive every event"
    received = [e for e in setup.receiver.events if e["room_id"] == room_id]
    ids = [e["event_id"] for e in received]
    assert [i for i in ids if i in set(sent)] == sent  # stream order, each once
    assert len(ids) == len(set(ids))
    assert ids.index(sent[0]) > 0  # the bot's own join came first
    first = received[ids.index(sent[0])]
    assert first["type"] == "m.room.message" and first["sender"] == alice.user_id
    assert first["content"]["body"] == "alert 0"
    assert private_event not in setup.receiver.event_ids()
    assert all(e["room_id"] != private_room for e in setup.receiver.events)
    assert setup.receiver.bad_auth == 0
    assert all(n <= 100 for _t, n in setup.receiver.attempts)


def _room_before_outage(setup: Setup, alice: Any) -> tuple[str, int]:
    """A room with the bot, once the bot's own join has been delivered (so an outage starts with the test's
    messages); returns ``(room_id, transaction attempts so far)``."""
    room_id = setup.room_with_bot(alice)
    assert setup.receiver.wait_for(lambda r: any(e["room_id"] == room_id and e["type"] == "m.room.member"
                                                 and e.get("state_key") == setup.bot for e in r.events))
    return room_id, len(setup.receiver.attempts)


def test_appservice_answering_500_gets_every_event_exactly_once(setup: Setup) -> None:
    alice = register(setup.api)
    receiver = setup.receiver
    room_id, before = _room_before_outage(setup, alice)
    receiver.status_override = 500
    try:
        sent = [alice.send(room_id, f"during outage {i}") for i in range(15)]
        assert receiver.wait_for(lambda r: len(r.attempts) >= before + 3, timeout=20), "no retries seen"
    finally:
        receiver.status_override = None
    assert receiver.wait_for_events(sent, timeout=60)
    more = [alice.send(room_id, f"after outage {i}") for i in range(5)]
    assert receiver.wait_for_events(more)
    ids = receiver.event_ids()
    for event_id in sent + more:
        assert ids.count(event_id) == 1
    in_room = [i for i in ids if i in set(sent + more)]
    assert in_room == sent + more
    failed = receiver.attempts[before:]
    # The first failing transaction was retried with the same txnId and the same events.
    first_txn, first_n = failed[0]
    retries = [a for a in failed if a[0] == first_txn]
    assert len(retries) >= 2 and all(n == first_n for _t, n in retries)
    assert first_txn in receiver.processed_txns


def test_ephemeral_typing_and_receipts_reach_appservice(setup: Setup) -> None:
    alice = register(setup.api)
    room_id = setup.room_with_bot(alice)
    alice.ok("PUT", f"rooms/{q(room_id)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 10000})
    assert setup.receiver.wait_for(lambda r: any(
        e.get("type") == "m.typing" and e.get("room_id") == room_id and alice.user_id in e["content"]["user_ids"]
        for e in r.ephemeral), timeout=15)
    event_id = alice.send(room_id, "read me")
    alice.ok("POST", f"rooms/{q(room_id)}/receipt/m.read/{q(event_id)}", {})
    alice.ok("POST", f"rooms/{q(room_id)}/receipt/m.read.private/{q(event_id)}", {})
    assert setup.receiver.wait_for(lambda r: any(
        e.get("type") == "m.receipt" and e.get("room_id") == room_id
        and alice.user_id in e["content"].get(event_id, {}).get("m.read", {}) for e in r.ephemeral), timeout=15)
    time.sleep(0.5)
    assert not any(e.get("type") == "m.receipt" and "m.read.private" in e["content"].get(event_id, {})
                   for e in setup.receiver.ephemeral)
    # A room the appservice has no interest in: no typing from it.
    other = alice.create_room()
    alice.ok("PUT", f"rooms/{q(other)}/typing/{q(alice.user_id)}", {"typing": True, "timeout": 10000})
    time.sleep(0.5)
    assert not any(e.get("room_id") == other for e in setup.receiver.ephemeral)


def test_metrics_per_appservice(setup: Setup) -> None:
    alice = register(setup.api)
    room_id = setup.room_with_bot(alice)
    assert setup.receiver.wait_for_events([alice.send(room_id, "metrics")])
    text = ""

    def value(name: str, as_id: str) -> float:
        m = re.search(rf'^{name}\{{appservice="{as_id}"\}} (\S+)$', text, re.M)
        assert m, f"{name} for {as_id} missing"
        return float(m.group(1))

    # The receiver records the events before it answers; the homeserver counts them out of the queue only once
    # it has the answer and has forgotten the transaction in its database. Poll (bounded) for that, not a pause.
    deadline = time.monotonic() + 20
    while True:
        text = setup.api.request("GET", "/metrics").body.decode()
        if value("tocsin_appservice_queued_events", "tocsin_test") == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)

    assert value("tocsin_appservice_transactions_sent_total", "tocsin_test") >= 1
    assert value("tocsin_appservice_queued_events", "tocsin_test") == 0
    assert 0 <= value("tocsin_appservice_seconds_since_last_success", "tocsin_test") < 60
    assert value("tocsin_appservice_transactions_failed_total", "tocsin_test") >= 0
    assert value("tocsin_appservice_seconds_since_last_success", "silent") == -1


# -- queries --------------------------------------------------------------------------------------------------


def test_user_query_creates_user_on_invite(setup: Setup) -> None:
    alice = register(setup.api)
    room_id = alice.create_room()
    known = f"@_as_known{uuid.uuid4().hex[:6]}:{SERVER}"
    r = alice.req("POST", f"rooms/{q(room_id)}/invite", {"user_id": known})
    assert r.status == 200, r.json
    assert known in setup.receiver.user_queries
    members = alice.ok("GET", f"rooms/{q(room_id)}/joined_members")
    state = alice.ok("GET", f"rooms/{q(room_id)}/state/m.room.member/{q(known)}")
    assert state["membership"] == "invite" and known not in members["joined"]
    unknown = f"@_as_nobody{uuid.uuid4().hex[:6]}:{SERVER}"
    r = alice.req("POST", f"rooms/{q(room_id)}/invite", {"user_id": unknown})
    assert r.status >= 400
    assert unknown in setup.receiver.user_queries


def test_alias_query_creates_room(setup: Setup) -> None:
    alias = f"#_as_auto{uuid.uuid4().hex[:6]}:{SERVER}"
    alice = register(setup.api)
    r = alice.req("GET", f"directory/room/{q(alias)}")
    assert r.status == 200, r.json
    assert r.json["room_id"].startswith("!")
    assert alias in setup.receiver.alias_queries
    missing = f"#_as_missing{uuid.uuid4().hex[:6]}:{SERVER}"
    r = alice.req("GET", f"directory/room/{q(missing)}")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    assert missing in setup.receiver.alias_queries


# -- ping -----------------------------------------------------------------------------------------------------


def _ping(setup: Setup, token: str, as_id: str, body: Any = None) -> Any:
    return setup.api.request("POST", f"/_matrix/client/v1/appservice/{q(as_id)}/ping",
                             body if body is not None else {}, token=token, timeout=30)


def test_ping_success_and_errors(setup: Setup) -> None:
    r = _ping(setup, setup.reg.as_token, "tocsin_test", {"transaction_id": "ping-1"})
    assert r.status == 200, r.json
    assert isinstance(r.json["duration_ms"], int) and 0 <= r.json["duration_ms"] < 5000
    assert {"transaction_id": "ping-1"} in setup.receiver.pings

    setup.receiver.ping_status = 418
    try:
        r = _ping(setup, setup.reg.as_token, "tocsin_test")
    finally:
        setup.receiver.ping_status = 200
    assert (r.status, r.errcode()) == (502, "M_BAD_STATUS")
    assert r.json["status"] == 418 and "ping says no" in r.json["body"]

    r = _ping(setup, setup.reg.as_token, "silent")  # someone else's id
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    alice = register(setup.api)
    r = _ping(setup, alice.access_token, "tocsin_test")
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = _ping(setup, "nope", "tocsin_test")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = _ping(setup, setup.nourl.as_token, "silent")
    assert (r.status, r.errcode()) == (400, "M_URL_NOT_SET")
    r = _ping(setup, setup.dead.as_token, "dead")
    assert (r.status, r.errcode()) == (502, "M_CONNECTION_FAILED")


def test_ping_timeout(setup: Setup) -> None:
    setup.receiver.ping_delay_s = 7
    try:
        started = time.monotonic()
        r = _ping(setup, setup.reg.as_token, "tocsin_test")
        elapsed = time.monotonic() - started
    finally:
        setup.receiver.ping_delay_s = 0
    assert (r.status, r.errcode()) == (504, "M_CONNECTION_TIMEOUT")
    assert elapsed < 7


# -- acting as the appservice ---------------------------------------------------------------------------------


def test_as_token_acts_as_sender_and_masquerades(setup: Setup) -> None:
    r = setup.as_req("GET", "account/whoami")
    assert (r.status, r.json["user_id"]) == (200, setup.bot)
    local = f"_as_v{uuid.uuid4().hex[:8]}"
    r = register_virtual_user(setup.api, setup.reg.as_token, local)
    assert r.status == 200, r.json
    virtual = f"@{local}:{SERVER}"
    assert r.json["user_id"] == virtual and "access_token" not in r.json
    r = setup.as_req("GET", "account/whoami", user_id=virtual)
    assert (r.status, r.json["user_id"]) == (200, virtual)

    alice = register(setup.api)
    room_id = alice.create_room(preset="public_chat")
    assert setup.as_req("POST", f"join/{q(room_id)}", {}, user_id=virtual).status == 200
    r = setup.as_req("PUT", f"rooms/{q(room_id)}/send/m.room.message/t1", {"msgtype": "m.text", "body": "hi"},
                     user_id=virtual)
    assert r.status == 200, r.json
    event = alice.ok("GET", f"rooms/{q(room_id)}/event/{q(r.json['event_id'])}")
    assert event["sender"] == virtual
    # Rate limits do not apply to a rate_limited: false appservice: a burst goes through.
    for i in range(30):
        r = setup.as_req("PUT", f"rooms/{q(room_id)}/send/m.room.message/b{i}", {"msgtype": "m.text", "body": "x"},
                         user_id=virtual)
        assert r.status == 200, r.json


def test_masquerade_refusals(setup: Setup) -> None:
    alice = register(setup.api)
    r = setup.as_req("GET", "account/whoami", user_id=alice.user_id)  # outside the namespace
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = setup.as_req("GET", "account/whoami", user_id=f"@_as_ghost{uuid.uuid4().hex[:6]}:{SERVER}")  # unregistered
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")
    r = setup.api.request("GET", CS + "/account/whoami", token="as_wrong", params={"user_id": setup.bot})
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    # An ordinary user's token cannot assert another identity.
    r = alice.req("GET", "account/whoami", params={"user_id": setup.bot})
    assert (r.status, r.json["user_id"]) == (200, alice.user_id)


def test_appservice_registration_rules(setup: Setup) -> None:
    body = {"type": "m.login.application_service", "username": f"_as_r{uuid.uuid4().hex[:6]}"}
    r = setup.api.request("POST", CS + "/register", body)
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")
    r = setup.api.request("POST", CS + "/register", body, token="as_wrong")
    assert (r.status, r.errcode()) == (401, "M_UNKNOWN_TOKEN")
    r = register_virtual_user(setup.api, setup.reg.as_token, f"outsider{uuid.uuid4().hex[:6]}")
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    r = register_virtual_user(setup.api, setup.reg.as_token, f"silent-{uuid.uuid4().hex[:6]}")  # another AS's
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    r = register_virtual_user(setup.api, setup.reg.as_token, body["username"], inhibit_login=False)
    assert r.status == 200, r.json
    r2 = setup.api.request("GET", CS + "/account/whoami", token=r.json["access_token"])
    assert (r2.status, r2.json["user_id"]) == (200, r.json["user_id"])
    r = register_virtual_user(setup.api, setup.reg.as_token, body["username"])
    assert (r.status, r.errcode()) == (400, "M_USER_IN_USE")
    # Registration bursts are not rate limited for the appservice.
    for _ in range(15):
        r = register_virtual_user(setup.api, setup.reg.as_token, f"_as_burst{uuid.uuid4().hex[:8]}")
        assert r.status == 200, r.json
    # Non-exclusive namespace: the appservice may register there, and so may ordinary users.
    assert register_virtual_user(setup.api, setup.reg.as_token, f"shared-{uuid.uuid4().hex[:6]}").status == 200
    register(setup.api, f"shared-{uuid.uuid4().hex[:6]}")


def test_exclusive_namespaces_refuse_ordinary_users(setup: Setup) -> None:
    name = f"pager-{uuid.uuid4().hex[:6]}"
    r = setup.api.request("POST", CS + "/register",
                          {"username": name, "password": "long enough pw", "auth": {"type": "m.login.dummy"}})
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    r = setup.api.request("GET", CS + "/register/available", params={"username": name})
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    alice = register(setup.api)
    r = alice.req("POST", "createRoom", {"room_alias_name": name})
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    room_id = alice.create_room()
    r = alice.req("PUT", f"directory/room/{q('#' + name + ':' + SERVER)}", {"room_id": room_id})
    assert (r.status, r.errcode()) == (400, "M_EXCLUSIVE")
    # The appservice itself may create aliases in its namespace.
    r = setup.as_req("POST", "createRoom", {"room_alias_name": name})
    assert r.status == 200, r.json
    r = alice.req("GET", f"directory/room/{q('#' + name + ':' + SERVER)}")
    assert (r.status, r.json["room_id"]) == (200, setup.as_req("GET", f"directory/room/{q('#' + name + ':' + SERVER)}").json["room_id"])


def test_login_as_namespaced_user(setup: Setup) -> None:
    local = f"_as_login{uuid.uuid4().hex[:6]}"
    assert register_virtual_user(setup.api, setup.reg.as_token, local).status == 200
    body = {"type": "m.login.application_service", "identifier": {"type": "m.id.user", "user": local}}
    r = setup.api.request("POST", CS + "/login", body, token=setup.reg.as_token)
    assert r.status == 200, r.json
    assert r.json["user_id"] == f"@{local}:{SERVER}"
    alice = register(setup.api)
    body["identifier"]["user"] = alice.user_id
    r = setup.api.request("POST", CS + "/login", body, token=setup.reg.as_token)
    assert (r.status, r.errcode()) == (403, "M_FORBIDDEN")


def test_successful_ping_ends_the_backoff_wait(setup: Setup) -> None:
    alice = register(setup.api)
    receiver = setup.receiver
    room_id, before = _room_before_outage(setup, alice)
    receiver.status_override = 500
    try:
        sent = [alice.send(room_id, f"while down {i}") for i in range(3)]
        # Five failures: the next retry is 8 s or more away (backoff 0.5 s doubling).
        assert receiver.wait_for(lambda r: len(r.attempts) >= before + 5, timeout=30), "no retries seen"
    finally:
        receiver.status_override = None
    r = _ping(setup, setup.reg.as_token, "tocsin_test", {"transaction_id": "back-up"})
    assert r.status == 200, r.json
    assert receiver.wait_for_events(sent, timeout=4), "the backlog waited for the backoff despite the ping"

"""PUT /sendToDevice and the ``to_device`` section of /sync (spec: "Send-to-Device messaging")."""

from __future__ import annotations

import uuid

from tests.integration.e2e_keys_support import login, upload, with_password_uia
from tests.support.client import Api, User, q, register


def _send(sender: User, event_type: str, messages: dict, txn_id: str | None = None) -> None:
    sender.ok("PUT", f"sendToDevice/{q(event_type)}/{txn_id or uuid.uuid4().hex}", {"messages": messages})


def _events(sync: dict, event_type: str) -> list[dict]:
    return [e for e in sync.get("to_device", {}).get("events", []) if e["type"] == event_type]


def test_delivered_in_order_once_and_idempotent_per_txn(api: Api) -> None:
    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    _send(a, "org.example.ping", {b.user_id: {b.device_id: {"n": 1}}}, "t1")
    _send(a, "org.example.ping", {b.user_id: {b.device_id: {"n": 1}}}, "t1")  # a retransmission
    _send(a, "org.example.ping", {b.user_id: {b.device_id: {"n": 2}}}, "t2")
    # the same txnId from another device of the sender is another message
    a2 = login(a)
    _send(a2, "org.example.ping", {b.user_id: {b.device_id: {"n": 3}}}, "t1")
    s = b.sync(since)
    got = _events(s, "org.example.ping")
    assert [(e["sender"], e["content"]) for e in got] == [(a.user_id, {"n": 1}), (a.user_id, {"n": 2}),
                                                           (a.user_id, {"n": 3})]
    assert _events(b.sync(s["next_batch"]), "org.example.ping") == []


def test_lost_sync_response_is_redelivered(api: Api) -> None:
    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    _send(a, "org.example.page", {b.user_id: {b.device_id: {"page": 7}}})
    first = b.sync(since, timeout=5000)
    assert [e["content"] for e in _events(first, "org.example.page")] == [{"page": 7}]
    retry = b.sync(since)  # the first response never arrived
    assert [e["content"] for e in _events(retry, "org.example.page")] == [{"page": 7}]
    assert _events(b.sync(retry["next_batch"]), "org.example.page") == []
    # an initial sync (no since) delivers what is pending too
    _send(a, "org.example.page", {b.user_id: {b.device_id: {"page": 8}}})
    assert [e["content"] for e in _events(b.sync(), "org.example.page")] == [{"page": 8}]


def test_long_poll_wakes_on_to_device(api: Api) -> None:
    import threading

    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    timer = threading.Timer(0.5, _send, (a, "org.example.wake", {b.user_id: {b.device_id: {}}}))
    timer.start()
    try:
        s = b.sync(since, timeout=10000)
    finally:
        timer.join()
    assert len(_events(s, "org.example.wake")) == 1


def test_wildcard_reaches_every_device_and_only_those(api: Api) -> None:
    a, b = register(api), register(api)
    b2 = login(b)
    c = register(api)
    tokens = {u.device_id: u.sync()["next_batch"] for u in (b, b2, c)}
    _send(a, "org.example.all", {b.user_id: {"*": {"hello": "all"}, b2.device_id: {"hello": "you"}}})
    assert [e["content"] for e in _events(b.sync(tokens[b.device_id]), "org.example.all")] == [{"hello": "all"}]
    assert [e["content"] for e in _events(b2.sync(tokens[b2.device_id]), "org.example.all")] == [{"hello": "you"}]
    assert _events(c.sync(tokens[c.device_id]), "org.example.all") == []


def test_deleted_device_loses_pending_messages(api: Api) -> None:
    a, b = register(api), register(api)
    b2 = login(b)
    upload(b2)
    _send(a, "org.example.gone", {b.user_id: {b2.device_id: {"x": 1}}})
    with_password_uia(b, "DELETE", f"devices/{q(b2.device_id)}", {})
    # a new login that happens to reuse the device ID must not see the old device's messages
    r = b.api.request("POST", "/_matrix/client/v3/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": b.user_id},
        "password": b.password, "device_id": b2.device_id})
    assert r.status == 200, r.json
    b3 = User(b.api, b.user_id, r.json["access_token"], b2.device_id, b.password)
    assert _events(b3.sync(), "org.example.gone") == []


def test_bad_requests_store_nothing(api: Api) -> None:
    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    cases = [
        ({"messages": "x"}, 400, "M_BAD_JSON"),
        ({}, 400, "M_BAD_JSON"),
        ({"messages": {b.user_id: {b.device_id: "not an object"}}}, 400, "M_BAD_JSON"),
        ({"messages": {"not-a-user": {"D": {}}}}, 400, "M_INVALID_PARAM"),
        ({"messages": {b.user_id: {b.device_id: {"big": "x" * 70000}}}}, 413, "M_TOO_LARGE"),
    ]
    for body, status, errcode in cases:
        r = a.req("PUT", f"sendToDevice/org.example.bad/{uuid.uuid4().hex}", body)
        assert (r.status, r.errcode()) == (status, errcode), (body, r.json)
    many = {b.user_id: {f"D{i}": {} for i in range(10001)}}
    r = a.req("PUT", f"sendToDevice/org.example.bad/{uuid.uuid4().hex}", {"messages": many})
    assert (r.status, r.errcode()) == (413, "M_TOO_LARGE")
    assert _events(b.sync(since), "org.example.bad") == []
    r = a.api.request("PUT", f"/_matrix/client/v3/sendToDevice/x/{uuid.uuid4().hex}", {"messages": {}})
    assert (r.status, r.errcode()) == (401, "M_MISSING_TOKEN")

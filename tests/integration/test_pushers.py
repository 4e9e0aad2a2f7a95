"""Pushers and the HTTP pusher against a real push gateway (issue 3 item 4, and its bad input).

The gateway is a stdlib HTTP server on 127.0.0.1 implementing ``POST /_matrix/push/v1/notify``.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from tests.integration.pushlib import room_with, wait_for
from tests.support.client import Api, User, register
from tests.support.server import HomeserverProcess
from tests.support.tls import make_pki

APP_ID = "org.example.oncall.android"


class PushGateway:
    """Records every notify request; answers 200 (optionally rejecting pushkeys) or 500 during an outage."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.lock = threading.Lock()
        self.accepted: list[dict[str, Any]] = []
        self.failed = 0
        self.outage = False
        self.reject: set[str] = set()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - stdlib API
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with gateway.lock:
                    if self.path != "/_matrix/push/v1/notify":
                        code, answer = 404, {"errcode": "M_UNRECOGNIZED"}
                    elif gateway.outage:
                        gateway.failed += 1
                        code, answer = 500, {"error": "outage"}
                    else:
                        gateway.accepted.append(body["notification"])
                        keys = [d["pushkey"] for d in body["notification"]["devices"]]
                        code, answer = 200, {"rejected": [k for k in keys if k in gateway.reject]}
                raw = json.dumps(answer).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = self.server.server_address[1]
        if tls is None:
            self.url = f"http://127.0.0.1:{port}/_matrix/push/v1/notify"
        else:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True)
            self.url = f"https://localhost:{port}/_matrix/push/v1/notify"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def for_event(self, event_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [n for n in self.accepted if n["event_id"] == event_id]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[PushGateway]:
    gw = PushGateway()
    try:
        yield gw
    finally:
        gw.close()


def pusher_body(url: str, pushkey: str = "pk-1", **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "http", "app_id": APP_ID, "pushkey": pushkey, "app_display_name": "OnCall",
        "device_display_name": "Pager phone", "lang": "en",
        "data": {"url": url, "format": "event_id_only", "custom": "x"},
    }
    body.update(extra)
    return body


def pushers(user: User) -> list[dict[str, Any]]:
    return user.ok("GET", "pushers")["pushers"]


def test_set_list_delete(api: Api) -> None:
    u = register(api)
    url = "https://push.example.org/_matrix/push/v1/notify"
    u.ok("POST", "pushers/set", pusher_body(url, profile_tag="tag1"))
    assert pushers(u) == [{"pushkey": "pk-1", "kind": "http", "app_id": APP_ID, "app_display_name": "OnCall",
                           "device_display_name": "Pager phone", "lang": "en", "profile_tag": "tag1",
                           "data": {"url": url, "format": "event_id_only", "custom": "x"}}]
    # Same app_id and pushkey: updated in place.
    u.ok("POST", "pushers/set", pusher_body(url, device_display_name="New phone"))
    assert [p["device_display_name"] for p in pushers(u)] == ["New phone"]
    u.ok("POST", "pushers/set", {"kind": None, "app_id": APP_ID, "pushkey": "pk-1"})
    assert pushers(u) == []


def test_append_false_takes_the_pushkey_from_other_users(api: Api) -> None:
    a, b, c = register(api), register(api), register(api)
    url = "https://push.example.org/_matrix/push/v1/notify"
    a.ok("POST", "pushers/set", pusher_body(url, "shared"))
    b.ok("POST", "pushers/set", pusher_body(url, "shared", append=True))
    assert len(pushers(a)) == 1 and len(pushers(b)) == 1
    c.ok("POST", "pushers/set", pusher_body(url, "shared"))
    assert pushers(a) == [] and pushers(b) == [] and len(pushers(c)) == 1


def test_bad_pushers_are_refused_and_nothing_stored(api: Api) -> None:
    u = register(api)
    good = "https://push.example.org/_matrix/push/v1/notify"
    no_url = pusher_body(good)
    no_url["data"] = {"format": "event_id_only"}
    no_lang = pusher_body(good)
    del no_lang["lang"]
    cases = [
        (no_url, "M_INVALID_PARAM"),
        (pusher_body("ftp://push.example.org/_matrix/push/v1/notify"), "M_INVALID_PARAM"),
        (pusher_body("push.example.org/_matrix/push/v1/notify"), "M_INVALID_PARAM"),
        (pusher_body("https://push.example.org/notify"), "M_INVALID_PARAM"),
        (pusher_body(good, kind="email"), "M_INVALID_PARAM"),
        (pusher_body(good, data={"url": good, "format": "full"}), "M_INVALID_PARAM"),
        (pusher_body(good, data="nope"), "M_INVALID_PARAM"),
        (pusher_body(good, append="yes"), "M_INVALID_PARAM"),
        (pusher_body(good, pushkey=""), "M_INVALID_PARAM"),
        (pusher_body(good, pushkey="k" * 513), "M_INVALID_PARAM"),
        (no_lang, "M_MISSING_PARAM"),
        ({"kind": "http", "app_id": APP_ID}, "M_MISSING_PARAM"),
    ]
    for body, errcode in cases:
        r = u.req("POST", "pushers/set", body)
        assert (r.status, r.errcode()) == (400, errcode), (body, r.json)
    assert pushers(u) == []


def test_gateway_gets_one_notify_per_push(api: Api, gateway: PushGateway) -> None:
    # Three members: .m.rule.message (no sound) rather than the one-to-one rule applies to plain messages.
    alice, (bob, _carol), room = room_with(api, 2)
    bob.ok("POST", "pushers/set", pusher_body(gateway.url))
    plain = alice.send(room, "disk 91%")
    mention = alice.send(room, "bob, look", **{"m.mentions": {"user_ids": [bob.user_id]}})
    notice = alice.send(room, "fyi", msgtype="m.notice")  # suppressed: no push
    wait_for(lambda: gateway.for_event(mention), what="the mention's push")
    time.sleep(1.0)  # anything sent twice would arrive by now
    assert len(gateway.for_event(plain)) == 1 and len(gateway.for_event(mention)) == 1
    assert gateway.for_event(notice) == []
    first, second = gateway.for_event(plain)[0], gateway.for_event(mention)[0]
    assert first["room_id"] == room and first["prio"] == "low"
    assert "content" not in first and "sender" not in first  # event_id_only
    device = first["devices"][0]
    assert (device["app_id"], device["pushkey"]) == (APP_ID, "pk-1")
    assert device["data"] == {"format": "event_id_only", "custom": "x"}  # url is not forwarded
    assert isinstance(device["pushkey_ts"], int) and device["pushkey_ts"] > 0
    assert device["tweaks"] == {}
    assert second["prio"] == "high"
    assert second["devices"][0]["tweaks"] == {"sound": "default", "highlight": True}
    assert second["counts"]["unread"] == 2
    # Alice has no pusher, and Bob's own messages never push him.
    bob_msg = bob.send(room, "on it")
    time.sleep(0.5)
    assert gateway.for_event(bob_msg) == []


def test_full_format_carries_the_event(api: Api, gateway: PushGateway) -> None:
    alice, (bob,), room = room_with(api, 1, name="Payments")
    body = pusher_body(gateway.url)
    body["data"] = {"url": gateway.url}
    bob.ok("POST", "pushers/set", body)
    event_id = alice.send(room, "latency high")
    (got,) = wait_for(lambda: gateway.for_event(event_id), what="the push")
    assert (got["type"], got["sender"], got["content"]["body"]) == ("m.room.message", alice.user_id,
                                                                    "latency high")
    assert got["room_name"] == "Payments"
    assert got["devices"][0]["data"] == {}


def test_rejected_pushkey_removes_the_pusher(api: Api, gateway: PushGateway) -> None:
    alice, (bob,), room = room_with(api)
    bob.ok("POST", "pushers/set", pusher_body(gateway.url, "dead-key"))
    gateway.reject.add("dead-key")
    event_id = alice.send(room, "anyone?")
    wait_for(lambda: gateway.for_event(event_id), what="the push")
    wait_for(lambda: pushers(bob) == [], what="the rejected pusher's removal")
    later = alice.send(room, "still there?")
    time.sleep(0.5)
    assert gateway.for_event(later) == []


def test_restart_during_gateway_outage_delivers_each_push_once(fresh_homeserver: HomeserverProcess,
                                                                gateway: PushGateway) -> None:
    hs = fresh_homeserver.start()
    api = Api(hs.base_url)
    alice, (bob,), room = room_with(api)
    bob.ok("POST", "pushers/set", pusher_body(gateway.url))
    gateway.outage = True
    first = alice.send(room, "page 1")
    second = alice.send(room, "page 2")
    wait_for(lambda: gateway.failed >= 2, what="failed attempts during the outage")
    hs.stop()
    hs.start()
    time.sleep(0.5)  # the restarted server retries against a gateway still down
    with gateway.lock:
        gateway.outage = False
    wait_for(lambda: gateway.for_event(first) and gateway.for_event(second), timeout=30,
             what="both pushes after the outage")
    third = alice.send(room, "page 3")
    wait_for(lambda: gateway.for_event(third), what="a push after recovery")
    time.sleep(2.0)
    assert [len(gateway.for_event(e)) for e in (first, second, third)] == [1, 1, 1]
    # In stream order.
    with gateway.lock:
        order = [n["event_id"] for n in gateway.accepted]
    assert order == [first, second, third]


def _mapped(pid: int, fragment: str) -> bool:
    with open(f"/proc/{pid}/maps") as f:
        return any(fragment in line for line in f)


def test_https_gateway_loads_tls_on_first_use(fresh_homeserver: HomeserverProcess, tmp_path: Any) -> None:
    """The server starts without pyOpenSSL and cryptography (``homeserver.http.tls_gate``), and still pushes to
    an ``https://`` gateway, verifying its certificate (a private CA the process trusts through
    ``SSL_CERT_FILE``); a gateway whose certificate it cannot verify gets nothing."""
    pki = make_pki(str(tmp_path / "pki"))
    fresh_homeserver.env["SSL_CERT_FILE"] = pki.ca_pem
    fresh_homeserver.start()
    assert fresh_homeserver.proc is not None
    pid = fresh_homeserver.proc.pid
    api = Api(fresh_homeserver.base_url)
    alice, (bob,), room = room_with(api)
    assert not _mapped(pid, "cryptography/hazmat/bindings"), "TLS was loaded at start-up"
    gateway = PushGateway(tls=pki.server_context())
    untrusted_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    other = make_pki(str(tmp_path / "other"))  # same host name, signed by a CA the server does not trust
    untrusted_ctx.load_cert_chain(other.cert_pem, other.key_pem)
    untrusted = PushGateway(tls=untrusted_ctx)
    try:
        bob.ok("POST", "pushers/set", pusher_body(gateway.url, "pk-tls"))
        bob.ok("POST", "pushers/set", pusher_body(untrusted.url, "pk-untrusted", append=True))
        event_id = alice.send(room, "disk full on db-1")
        (got,) = wait_for(lambda: gateway.for_event(event_id), what="the push over https")
        assert got["room_id"] == room
        assert [d["pushkey"] for d in got["devices"]] == ["pk-tls"]
        assert _mapped(pid, "cryptography/hazmat/bindings")
        time.sleep(1.0)
        assert untrusted.for_event(event_id) == []
    finally:
        gateway.close()
        untrusted.close()

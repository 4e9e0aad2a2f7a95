"""The bridge's HTTP listener refuses oversized bodies while they arrive, over raw sockets.

A bridge process is started without a homeserver (nothing it does here needs one): a refused ingest never
touches the database or Matrix.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Iterator

import pytest

from .harness import FIXTURES, BridgeProcess, BridgeRegistration, free_port, http

LIMIT = 200_000


class _NoHomeserver:
    """Stands in for a homeserver nobody listens on (the bridge only needs its URL and name to start)."""

    name = "none"
    server_name = "localhost"

    def __init__(self) -> None:
        self.base_url = f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def lone_bridge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeProcess]:
    d: Path = tmp_path_factory.mktemp("bridge-limits")
    reg = BridgeRegistration(d)
    bridge = BridgeProcess(d, reg, _NoHomeserver(),  # type: ignore[arg-type]
                           routes=[], default_route={"name": "main", "room": "#alerts-main:localhost"},
                           max_body_bytes=LIMIT)
    bridge.start()
    try:
        yield bridge
    finally:
        bridge.stop()


def _connect(bridge: BridgeProcess) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", bridge.registration.port), timeout=5)
    return s


def _read_response(s: socket.socket, timeout_s: float = 5) -> tuple[int, dict[str, str], bytes]:
    """Read one HTTP/1.1 response with a Content-Length; ``(status, lower-cased headers, body)``."""
    s.settimeout(timeout_s)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"connection closed before a full response head: {buf!r}")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest[:length]


def _head(bridge: BridgeProcess, length: int | None, extra: str = "") -> bytes:
    framing = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return (
        "POST /api/v1/alerts/alertmanager HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {bridge.tokens['alertmanager']}\r\nContent-Type: application/json\r\n"
        f"{framing}{extra}\r\n"
    ).encode()


def _rejected(bridge: BridgeProcess, reason: str) -> float:
    want = f'tocsin_alert_requests_rejected_total{{reason="{reason}",source="alertmanager"}} '
    for line in bridge.metrics().splitlines():
        if line.startswith(want):
            return float(line.split()[-1])
    return 0.0


def test_declared_length_over_limit_is_refused_before_the_body(lone_bridge: BridgeProcess) -> None:
    before = _rejected(lone_bridge, "too_large")
    with _connect(lone_bridge) as s:
        # Ten megabytes announced, not one byte sent: the answer must come anyway.
        started = time.monotonic()
        s.sendall(_head(lone_bridge, 10_000_000))
        status, headers, body = _read_response(s)
        assert time.monotonic() - started < 3
    assert status == 413
    assert headers["connection"] == "close"
    assert json.loads(body) == {"error": f"body of 10000000 bytes exceeds {LIMIT} bytes", "reason": "too_large"}
    assert _rejected(lone_bridge, "too_large") == before + 1
    assert lone_bridge.incidents() == []


def test_expect_continue_gets_413_not_100(lone_bridge: BridgeProcess) -> None:
    with _connect(lone_bridge) as s:
        s.sendall(_head(lone_bridge, LIMIT + 1, "Expect: 100-continue\r\n"))
        status, _, body = _read_response(s)
    assert status == 413 and json.loads(body)["reason"] == "too_large"


def test_chunked_body_is_cut_off_at_the_limit(lone_bridge: BridgeProcess) -> None:
    before = _rejected(lone_bridge, "too_large")
    chunk = b"x" * 50_000
    with _connect(lone_bridge) as s:
        s.sendall(_head(lone_bridge, None))
        for _ in range(LIMIT // len(chunk) + 1):  # one chunk past the limit, and no terminating chunk
            s.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        status, _, body = _read_response(s)
    assert status == 413
    assert json.loads(body) == {"error": f"body exceeds {LIMIT} bytes", "reason": "too_large"}
    assert _rejected(lone_bridge, "too_large") == before + 1
    assert lone_bridge.incidents() == []


def test_bodies_within_the_limit_still_reach_the_handlers(lone_bridge: BridgeProcess) -> None:
    # Chunked and under the limit: parsed, then refused for what it says (not for its size).
    body = b'{"version": "4"}'
    with _connect(lone_bridge) as s:
        s.sendall(_head(lone_bridge, None) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
        status, _, answer = _read_response(s)
    assert status == 400 and json.loads(answer)["error"] == "missing field groupKey"
    # A whole body sent before reading the answer (what urllib does) gets the 413, not a reset.
    code, answer2 = lone_bridge.post("alertmanager", b'{"pad": "' + b"y" * (LIMIT + 10) + b'"}')
    assert code == 413 and answer2["reason"] == "too_large"
    # Appservice transactions have their own, larger cap: a 1 MB transaction is over the ingest limit but fine.
    txn = json.dumps({"events": [], "pad": "z" * 1_000_000}).encode()
    code, answer3 = http("PUT", f"{lone_bridge.base_url}/_matrix/app/v1/transactions/big1", txn,
                         {"Authorization": f"Bearer {lone_bridge.registration.hs_token}",
                          "Content-Type": "application/json"})
    assert (code, answer3) == (200, {})


def test_hostile_requests_get_a_json_4xx_not_a_500(lone_bridge: BridgeProcess) -> None:
    """Deeply nested JSON, a non-UTF-8 Authorization header, a ``since`` beyond 64 bits and a trailing slash
    each get a JSON 4xx (they used to give a 500 HTML page or a database error) and store nothing."""
    deep = b"[" * 60_000 + b"]" * 60_000
    code, answer = lone_bridge.post("alertmanager", deep)
    assert code == 400 and answer["reason"] == "invalid_json", answer
    code, answer = lone_bridge.post("alertmanager", b"{}", token=None,
                                    headers={"Authorization": "Bearer \xff\xfe"})
    assert code in (401, 403) and answer["reason"] in ("unauthorized", "forbidden"), answer
    for since in ("99999999999999999999999999", "9223372036854775808", "%C2%B2"):
        code, answer = http("GET", f"{lone_bridge.base_url}/api/v1/incidents?since={since}", None,
                            {"Authorization": f"Bearer {lone_bridge.api_token}"})
        assert code == 400 and "since" in answer["error"], (since, answer)
    code, answer = lone_bridge.post("alertmanager/", b"{}")
    assert (code, answer) == (404, {"error": "not found"})
    assert lone_bridge.incidents() == []


def test_nul_and_lone_surrogates_in_an_alert_become_replacement_characters(lone_bridge: BridgeProcess) -> None:
    """An alert is never dropped for a character the store cannot hold: NUL and unpaired UTF-16 surrogates
    (in values and keys) become U+FFFD, so the text around them is kept instead of cut at the NUL."""
    payload = json.loads((FIXTURES / "alertmanager" / "firing.json").read_text())
    payload["groupKey"] = "{}:{alertname=\"NulProbe\"}"
    alert = payload["alerts"][0]
    alert["fingerprint"] = "ffff0000ffff0001"
    alert["annotations"]["summary"] = "before\u0000after \ud83d\udcdf"
    alert["labels"]["instance"] = "host-\ud800"
    alert["labels"]["odd\udfffkey"] = "v"
    raw = json.dumps(payload).encode()  # escapes: \u0000, \ud800, and the pager emoji as a surrogate pair
    assert b"\\u0000" in raw and b"\\ud800" in raw
    code, answer = lone_bridge.post("alertmanager", raw)
    assert code == 200 and answer["status"] == "stored", answer
    stored = lone_bridge.incident(answer["incident_id"])["alerts"][0]
    assert stored["annotations"]["summary"] == "before\ufffdafter \U0001F4DF"
    assert stored["labels"]["instance"] == "host-\ufffd"
    assert stored["labels"]["odd\ufffdkey"] == "v"


def test_malformed_transaction_items_are_skipped_not_failed(lone_bridge: BridgeProcess) -> None:
    """An appservice transaction holding items that are not events (or malformed receipt EDUs) is answered 200
    with those items skipped: a 500 would make the homeserver retry the same transaction forever. A body nested
    past the parser's limit is a 400."""
    headers = {"Authorization": f"Bearer {lone_bridge.registration.hs_token}", "Content-Type": "application/json"}
    url = f"{lone_bridge.base_url}/_matrix/app/v1/transactions"
    body = {"events": [1, "x", None, [], {"type": "m.room.message", "room_id": "!elsewhere:localhost",
                                          "sender": "@someone:localhost", "event_id": "$e1",
                                          "content": {"msgtype": "m.text", "body": "hello"}}],
            "ephemeral": [{"type": "m.receipt", "room_id": "!r:localhost", "content": {"$e": {"m.read": [1]}}},
                          {"type": "m.receipt", "room_id": "!r:localhost", "content": [1]}]}
    code, answer = http("PUT", f"{url}/skip1", json.dumps(body).encode(), headers)
    assert (code, answer) == (200, {})
    code, answer = http("PUT", f"{url}/deep1", b'{"events": ' + b"[" * 50_000 + b"]" * 50_000 + b"}", headers)
    assert code == 400 and answer["errcode"] == "M_BAD_JSON", answer

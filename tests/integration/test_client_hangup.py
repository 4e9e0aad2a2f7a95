"""A client that hangs up before the answer: a write still runs to its end, a read is dropped.

A bridge killed right after sending, a phone losing its network mid-request: the server sees the connection
close while the request's work is in flight. A send must then complete as a whole (stored, in the room's
in-memory state, announced to /sync) so that the client's retry finds it, never half done: a committed event
that /sync never shows, or that the next event does not follow, is lost to every client.
"""

from __future__ import annotations

import json
import socket
import time
import urllib.parse
import uuid

from tests.integration.roomlib import all_messages, bodies, timeline
from tests.support.client import CS, Api, q, register

HANGUPS = 20


def _put_and_hang_up(base_url: str, token: str, path: str, body: dict) -> None:
    """Send one complete PUT request and close the connection without reading a byte of the answer."""
    url = urllib.parse.urlsplit(base_url)
    payload = json.dumps(body).encode()
    head = (f"PUT {CS}/{path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\nConnection: close\r\n\r\n")
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(head.encode() + payload)


def test_sends_whose_client_hangs_up_all_complete(api: Api) -> None:
    alice, bob = register(api), register(api)
    room = alice.create_room(preset="public_chat")
    bob.join(room)
    since = bob.sync()["next_batch"]
    before = len(all_messages(alice, room))
    sent = [f"hung up {i} {uuid.uuid4().hex[:6]}" for i in range(HANGUPS)]
    txn_ids = [uuid.uuid4().hex for _ in sent]
    for body, txn_id in zip(sent, txn_ids):
        _put_and_hang_up(api.base_url, alice.access_token, f"rooms/{q(room)}/send/m.room.message/{txn_id}",
                         {"msgtype": "m.text", "body": body})
    deadline = time.monotonic() + 20
    history = all_messages(alice, room)
    while len(history) < before + HANGUPS and time.monotonic() < deadline:
        time.sleep(0.1)
        history = all_messages(alice, room)
    assert sorted(bodies(history[before:])) == sorted(sent)

    # A retry with the same txn_id gets the stored event: nothing was half done, nothing is sent twice.
    for body, txn_id in zip(sent[:3], txn_ids[:3]):
        r = alice.req("PUT", f"rooms/{q(room)}/send/m.room.message/{txn_id}", {"msgtype": "m.text", "body": body})
        assert r.status == 200, r.json
        assert r.json["event_id"] == next(e["event_id"] for e in history if e["content"].get("body") == body)

    # The room goes on after them: /sync (served from the room's in-memory state) shows the same events in
    # the same order as the stored history, then the next message.
    last = alice.send(room, "after the hang-ups")
    history = all_messages(alice, room)
    assert history[-1]["event_id"] == last and len(history) == before + HANGUPS + 1
    synced = timeline(bob.sync(since=since, filter={"room": {"timeline": {"limit": 100}}}), room)
    assert [e["event_id"] for e in synced] == [e["event_id"] for e in history[before:]]


def _waiting_syncs(api: Api) -> float:
    """The ``tocsin_sync_waiting_requests`` gauge from ``/metrics``."""
    text = api.request("GET", "/metrics").body.decode()
    return float(next(line.split()[1] for line in text.splitlines()
                      if line.startswith("tocsin_sync_waiting_requests ")))


def _wait_until(check, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_long_poll_whose_client_hangs_up_is_dropped(fresh_homeserver) -> None:
    """A read is cancelled when its client goes away: its waiter goes at once, not at the end of its timeout."""
    hs = fresh_homeserver.start()
    api = Api(hs.base_url)
    alice = register(api)
    room = alice.create_room()
    since = alice.sync()["next_batch"]
    url = urllib.parse.urlsplit(api.base_url)
    socks = []
    try:
        for _ in range(5):
            sock = socket.create_connection((url.hostname, url.port), timeout=10)
            socks.append(sock)
            sock.sendall(f"GET {CS}/sync?since={q(since)}&timeout=60000 HTTP/1.1\r\nHost: {url.netloc}\r\n"
                         f"Authorization: Bearer {alice.access_token}\r\n\r\n".encode())
        assert _wait_until(lambda: _waiting_syncs(api) == 5), _waiting_syncs(api)
    finally:
        for sock in socks:
            sock.close()
    # Gone long before their 60 s timeout (15 s leaves room for a busy machine).
    assert _wait_until(lambda: _waiting_syncs(api) == 0, 15), _waiting_syncs(api)
    event_id = alice.send(room, "after the dropped long-polls")
    body = alice.sync(since=since, timeout=10000)
    assert [e["event_id"] for e in timeline(body, room)] == [event_id]

"""To-device messages come at most 100 per /sync; the rest follow in order in the next ones (spec: "Send-to-Device
messaging" leaves the batch size to the server; ``next_batch`` must resume exactly after the last one delivered)."""

from __future__ import annotations

import time
import uuid

from homeserver.streams import StreamToken
from tests.support.client import Api, User, q, register

PER_SYNC = 100


def _numbers(sync: dict) -> list[int]:
    return [e["content"]["n"] for e in sync["to_device"]["events"] if e["type"] == "org.example.batch"]


def _send_many(sender: User, target: User, count: int) -> None:
    for n in range(count):
        sender.ok("PUT", f"sendToDevice/org.example.batch/{uuid.uuid4().hex}",
                  {"messages": {target.user_id: {target.device_id: {"n": n}}}})


def test_250_messages_arrive_as_100_100_50_in_order_once(api: Api) -> None:
    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    _send_many(a, b, 250)

    batches: list[list[int]] = []
    tokens = [since]
    for _ in range(3):
        started = time.monotonic()
        s = b.sync(tokens[-1], timeout=20000)
        # messages were waiting, so none of these long-polls may wait
        assert time.monotonic() - started < 10, "a sync with pending to-device messages long-polled"
        batches.append(_numbers(s))
        tokens.append(s["next_batch"])
    assert [len(x) for x in batches] == [PER_SYNC, PER_SYNC, 50]
    assert batches[0] + batches[1] + batches[2] == list(range(250))
    assert _numbers(b.sync(tokens[-1])) == []

    # each next_batch's to_device position stops at its batch's last message, so it moves forward each time
    parsed = [StreamToken.parse(t) for t in tokens]
    assert parsed[0].to_device < parsed[1].to_device < parsed[2].to_device < parsed[3].to_device


def test_lost_capped_batch_is_delivered_again(api: Api) -> None:
    a, b = register(api), register(api)
    since = b.sync()["next_batch"]
    _send_many(a, b, 150)
    first = b.sync(since)
    assert _numbers(first) == list(range(100))
    second = b.sync(first["next_batch"])
    assert _numbers(second) == list(range(100, 150))
    # the second response was lost: the client retries with the same token and gets the same batch
    assert _numbers(b.sync(first["next_batch"])) == list(range(100, 150))
    assert _numbers(b.sync(second["next_batch"])) == []


def test_initial_sync_is_capped_too(api: Api) -> None:
    a, b = register(api), register(api)
    _send_many(a, b, 120)
    first = b.sync()
    assert _numbers(first) == list(range(100))
    assert _numbers(b.sync(first["next_batch"])) == list(range(100, 120))
    r = api.request("GET", f"/_matrix/client/v3/sync?since={q(first['next_batch'])}", token=b.access_token)
    assert r.status == 200 and _numbers(r.json) == list(range(100, 120)), "not acknowledged by a lost reply"

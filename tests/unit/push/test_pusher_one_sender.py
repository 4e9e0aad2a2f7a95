"""Removing and adding a pusher again while its sender is in the middle of a delivery keeps one sender for the
key: every pending push goes to the gateway once."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, task

from homeserver.handlers.pushers import PusherHandler
from homeserver.storage.push import PendingPush, Pusher

USER = "@oncall:test"
KEY = (USER, "com.example.pager", "token-1")
BODY = {"kind": "http", "app_id": KEY[1], "pushkey": KEY[2], "app_display_name": "Pager",
        "device_display_name": "Phone", "lang": "en", "data": {"url": "http://127.0.0.1:1/_matrix/push/v1/notify"}}


class FakePushStore:
    def __init__(self) -> None:
        self.pending: list[PendingPush] = []

    def get_all_pushers_sync(self) -> list[Pusher]:
        return []

    def get_pusher_keys_with_pending_sync(self) -> list[Any]:
        return []

    async def add_pusher(self, pusher: Pusher, append: bool) -> list[Any]:
        return []

    async def delete_pusher(self, key: Any) -> bool:
        self.pending = [p for p in self.pending if (p.user_id, p.app_id, p.pushkey) != key]
        return True

    async def get_pending_pushes(self, key: Any, limit: int) -> list[PendingPush]:
        return [p for p in self.pending if (p.user_id, p.app_id, p.pushkey) == key][:limit]

    async def delete_pending_push(self, key: Any, event_id: str) -> None:
        self.pending = [p for p in self.pending if not ((p.user_id, p.app_id, p.pushkey) == key
                                                        and p.event_id == event_id)]


def push(event_id: str, so: int) -> PendingPush:
    return PendingPush(USER, KEY[1], KEY[2], event_id, "!ops:test", so, ["notify"], 1_700_000_000_000)


def run(d: Any) -> None:
    out: list[Any] = []
    defer.ensureDeferred(d).addBoth(out.append)
    assert out == [None], out


def test_readding_a_pusher_mid_delivery_reuses_the_running_sender() -> None:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    store = FakePushStore()
    handler = PusherHandler(SimpleNamespace(clock=clock, push_store=store, reactor=clock))
    gateway: list[tuple[str, defer.Deferred]] = []

    def deliver(pusher: Pusher, p: PendingPush) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        gateway.append((p.event_id, d))
        return d

    handler.deliver = deliver  # type: ignore[method-assign]
    run(handler.set_pusher(USER, dict(BODY)))
    store.pending.append(push("$first", 1))
    handler.on_new_pushes({KEY})
    assert [e for e, _ in gateway] == ["$first"]  # in the gateway's hands

    run(handler.set_pusher(USER, {**BODY, "kind": None}))  # removed (its pending rows with it)
    run(handler.set_pusher(USER, dict(BODY)))  # and added again
    store.pending.append(push("$second", 2))
    handler.on_new_pushes({KEY})
    assert [e for e, _ in gateway] == ["$first"]  # no second sender started beside the busy one

    gateway[0][1].callback("sent")
    assert [e for e, _ in gateway] == ["$first", "$second"]
    gateway[1][1].callback("sent")
    assert [e for e, _ in gateway] == ["$first", "$second"]  # each push once
    assert store.pending == []
    assert len(handler._senders) == 1 and not handler._senders[KEY].running


def test_sender_of_a_removed_pusher_is_dropped_when_its_delivery_ends() -> None:
    clock = task.Clock()
    store = FakePushStore()
    handler = PusherHandler(SimpleNamespace(clock=clock, push_store=store, reactor=clock))
    gateway: list[defer.Deferred] = []

    def deliver(pusher: Pusher, p: PendingPush) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        gateway.append(d)
        return d

    handler.deliver = deliver  # type: ignore[method-assign]
    run(handler.set_pusher(USER, dict(BODY)))
    store.pending.extend([push("$a", 1), push("$b", 2)])
    handler.on_new_pushes({KEY})
    run(handler.set_pusher(USER, {**BODY, "kind": None}))
    assert KEY in handler._senders  # still delivering "$a"
    gateway[0].callback("sent")
    assert len(gateway) == 1  # "$b" went with the pusher
    assert handler._senders == {}

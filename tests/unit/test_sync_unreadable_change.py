"""A long-poll woken by a change it cannot read yet waits for it without holding the reactor.

Stream positions are allocated in order but may commit out of order (two PostgreSQL connections, or a background
write): the notifier can announce position 6 while 5 is still in flight, and the sync token may only advance to 4.
The waiting /sync used to rebuild at once, find nothing readable, ask the notifier again (which still reports the
change) and rebuild: with every read served from cache nothing in that loop ever yielded to the reactor, so the
in-flight write could not finish and the server stood still until the request's timeout.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, task

from homeserver.handlers.sync import SyncConfig, SyncHandler
from homeserver.notifier import Notifier
from homeserver.streams import StreamToken

USER = "@bob:test"


def _empty(now: StreamToken) -> dict[str, Any]:
    return {"next_batch": now.to_string(), "rooms": {"join": {}, "invite": {}, "leave": {}, "knock": {}},
            "account_data": {"events": []}, "presence": {"events": []}, "to_device": {"events": []},
            "device_lists": {"changed": [], "left": []}}


def test_change_beyond_the_readable_position_is_waited_for_not_spun_on() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    notifier.set_baseline(StreamToken())
    positions = {"token": StreamToken(device_lists=4)}  # 5 is in flight, 6 is committed and announced

    async def get_rooms_for_user(user_id: str) -> frozenset[str]:
        return frozenset()

    handler = SyncHandler.__new__(SyncHandler)
    handler.hs = SimpleNamespace(clock=clock, stream_positions=SimpleNamespace(current_token=lambda: positions["token"]))
    handler.notifier = notifier
    handler.room_store = SimpleNamespace(get_rooms_for_user=get_rooms_for_user)
    builds: list[StreamToken] = []

    async def build(config: SyncConfig, now: StreamToken) -> dict[str, Any]:
        # Everything cached: returns without yielding, as a real incremental build often does.
        builds.append(now)
        if len(builds) > 20:
            raise AssertionError("the long-poll rebuilds in a loop without yielding")
        if now.device_lists >= 6:
            return {**_empty(now), "device_lists": {"changed": ["@alice:test"], "left": []}}
        return _empty(now)

    handler.build = build  # type: ignore[method-assign]
    notifier.notify("device_lists", 6, users=[USER])
    config = SyncConfig(requester=SimpleNamespace(user_id=USER), filter=None, since=StreamToken(device_lists=4))
    d = defer.ensureDeferred(handler.wait_for_sync(config, 30_000))

    assert not d.called, d.result if d.called else None
    assert len(builds) == 1
    clock.advance(0.05)  # position 5 still in flight: no rebuild while nothing new is readable
    assert not d.called and len(builds) == 1
    positions["token"] = StreamToken(device_lists=6)  # 5 committed: 6 is readable
    clock.advance(0.05)
    assert d.called
    assert d.result["device_lists"]["changed"] == ["@alice:test"]
    assert builds[-1].device_lists == 6


def test_timeout_while_the_change_stays_unreadable_answers_empty() -> None:
    clock = task.Clock()
    notifier = Notifier(clock)
    notifier.set_baseline(StreamToken())
    since = StreamToken(device_lists=4)

    async def get_rooms_for_user(user_id: str) -> frozenset[str]:
        return frozenset()

    handler = SyncHandler.__new__(SyncHandler)
    handler.hs = SimpleNamespace(clock=clock, stream_positions=SimpleNamespace(current_token=lambda: since))
    handler.notifier = notifier
    handler.room_store = SimpleNamespace(get_rooms_for_user=get_rooms_for_user)

    async def build(config: SyncConfig, now: StreamToken) -> dict[str, Any]:
        return _empty(now)

    handler.build = build  # type: ignore[method-assign]
    notifier.notify("device_lists", 6, users=[USER])
    config = SyncConfig(requester=SimpleNamespace(user_id=USER), filter=None, since=since)
    d = defer.ensureDeferred(handler.wait_for_sync(config, 1_000))
    assert not d.called
    clock.pump([0.1] * 11)
    assert d.called
    assert d.result == _empty(since)

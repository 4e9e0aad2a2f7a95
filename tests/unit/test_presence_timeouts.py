"""Presence idle and offline timeouts, driven by a fake clock through the periodic sweep (no per-user timers)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import defer, task

from homeserver.handlers.presence import (
    IDLE_TIMEOUT_MS,
    OFFLINE_TIMEOUT_MS,
    SWEEP_INTERVAL_S,
    PresenceHandler,
)
from homeserver.http.auth import Requester
from homeserver.storage.presence import UserPresence
from homeserver.streams import StreamIdGenerator, StreamToken


class FakePresenceStore:
    def __init__(self) -> None:
        self.stream_ids = StreamIdGenerator(0)
        self.rows: dict[str, UserPresence] = {}

    def load_all_sync(self) -> dict[str, UserPresence]:
        return {}

    async def upsert_presence(self, states: Any) -> None:
        for s in states:
            self.rows[s.user_id] = s


def make_handler() -> tuple[PresenceHandler, task.Clock, list[tuple[str, int, frozenset[str]]], list[Any]]:
    clock = task.Clock()
    clock.advance(1_700_000_000)
    notified: list[tuple[str, int, frozenset[str]]] = []
    hooks: list[Any] = []

    async def share(user_id: str) -> set[str]:
        return {user_id, "@watcher:hs", "@a:hs", "@b:hs", "@c:hs"}

    hs = SimpleNamespace(
        clock=clock, hostname="hs",
        config=SimpleNamespace(presence_enabled=True),
        presence_store=FakePresenceStore(),
        event_creation_handler=SimpleNamespace(add_persist_hook=hooks.append),
        room_store=SimpleNamespace(get_users_who_share_room_with=share),
        notifier=SimpleNamespace(notify=lambda stream, pos, users=(), rooms=(): notified.append(
            (stream, pos, frozenset(users)))),
    )
    return PresenceHandler(hs), clock, notified, hooks


def run(coro: Any) -> Any:
    d = defer.ensureDeferred(coro)
    assert d.called, "fake store calls complete synchronously"
    return d.result


def state_of(handler: PresenceHandler, user_id: str) -> dict[str, Any]:
    events = run(handler.get_sync_presence("@watcher:hs", None, StreamToken(presence=10**9)))
    return next(e["content"] for e in events if e["sender"] == user_id)


def test_idle_user_becomes_unavailable_then_offline_by_sweep() -> None:
    handler, clock, notified, _ = make_handler()
    run(handler.set_state(Requester("@a:hs", "D", 1), "@a:hs", "online", "on call"))
    assert notified == [("presence", 1, frozenset({"@a:hs", "@b:hs", "@c:hs", "@watcher:hs"}))]
    clock.advance(IDLE_TIMEOUT_MS / 1000 - SWEEP_INTERVAL_S)
    assert state_of(handler, "@a:hs")["presence"] == "online"
    clock.advance(2 * SWEEP_INTERVAL_S)
    content = state_of(handler, "@a:hs")
    assert content["presence"] == "unavailable" and content["currently_active"] is False
    assert content["status_msg"] == "on call"
    assert content["last_active_ago"] >= IDLE_TIMEOUT_MS
    assert handler.store.rows["@a:hs"].state == "unavailable"
    clock.advance((OFFLINE_TIMEOUT_MS - IDLE_TIMEOUT_MS) / 1000 + SWEEP_INTERVAL_S)
    assert state_of(handler, "@a:hs")["presence"] == "offline"
    assert [n[1] for n in notified] == [1, 2, 3]


def test_syncing_user_stays_online_until_idle_and_activity_revives() -> None:
    handler, clock, notified, hooks = make_handler()
    run(handler.on_sync("@b:hs", "online"))
    assert state_of(handler, "@b:hs")["presence"] == "online"
    for _ in range(int(OFFLINE_TIMEOUT_MS / 1000 / SWEEP_INTERVAL_S) + 2):
        clock.advance(SWEEP_INTERVAL_S)
        run(handler.on_sync("@b:hs", "online"))  # still syncing, but not doing anything
    assert state_of(handler, "@b:hs")["presence"] == "unavailable"  # idle, not gone
    hooks[0].after_persist(SimpleNamespace(sender="@b:hs"), 1, None)
    assert state_of(handler, "@b:hs")["presence"] == "online"
    hooks[0].after_persist(SimpleNamespace(sender="@remote:elsewhere"), 2, None)
    assert "@remote:elsewhere" not in handler.store.rows


def test_incremental_sync_only_returns_changes_after_since() -> None:
    handler, _clock, _notified, _ = make_handler()
    run(handler.set_state(Requester("@a:hs", "D", 1), "@a:hs", "online", None))
    run(handler.set_state(Requester("@c:hs", "D", 1), "@c:hs", "unavailable", None))
    for viewer in ("@a:hs", "@watcher:hs"):
        events = run(handler.get_sync_presence(viewer, StreamToken(presence=1), StreamToken(presence=2)))
        assert [(e["sender"], e["content"]["presence"]) for e in events] == [("@c:hs", "unavailable")]
    assert run(handler.get_sync_presence("@a:hs", StreamToken(presence=2), StreamToken(presence=2))) == []
    initial = run(handler.get_sync_presence("@a:hs", None, StreamToken(presence=1)))
    assert [e["sender"] for e in initial] == ["@a:hs"]  # c's change is past "now"


def test_sync_cancelled_while_presence_is_stored_still_announces_it() -> None:
    """A /sync whose client hangs up while its ``set_presence`` change is being stored: the change still reaches
    memory and the users who share a room, so stored and announced presence never disagree."""
    handler, _clock, notified, _ = make_handler()
    held: list[defer.Deferred] = []

    def upsert_later(states: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        held.append(d)
        d.addCallback(lambda _: handler.store.rows.update({s.user_id: s for s in states}))
        return d

    handler.store.upsert_presence = upsert_later  # type: ignore[method-assign]
    syncing = defer.ensureDeferred(handler.on_sync("@b:hs", "online"))
    outcome: list[Any] = []
    syncing.addBoth(outcome.append)
    syncing.cancel()
    assert outcome == []  # held until the write is done
    held[0].callback(None)
    assert outcome[0].check(defer.CancelledError)
    assert handler.store.rows["@b:hs"].state == "online"
    assert state_of(handler, "@b:hs")["presence"] == "online"
    assert notified == [("presence", 1, frozenset({"@a:hs", "@b:hs", "@c:hs", "@watcher:hs"}))]

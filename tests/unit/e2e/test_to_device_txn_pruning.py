"""ToDeviceStore forgets send-to-device transaction IDs after 24 hours, but never the stream's high-water mark."""

from __future__ import annotations

from typing import Any

from homeserver.storage.to_device import TXN_PRUNE_INTERVAL_MS, TXN_RETENTION_MS, ToDeviceStore
from homeserver.streams import StreamPositions
from tests.unit.accounts_testlib import run, sqlite_db

HOUR_MS = 60 * 60 * 1000
START_S = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START_S

    def seconds(self) -> float:
        return self.now


def _store(db: Any, clock: Clock) -> tuple[ToDeviceStore, StreamPositions]:
    positions = StreamPositions()
    return ToDeviceStore(db, positions, clock), positions


def _device(db: Any, user_id: str, device_id: str) -> None:
    db.run_interaction_sync("device", lambda t: t.execute(
        "INSERT INTO devices (user_id, device_id, creation_ts) VALUES (?, ?, 0)", (user_id, device_id)))


def _send(store: ToDeviceStore, txn_id: str) -> set[str] | None:
    pos = store.generator.allocate()
    try:
        return run(store.add_messages("@a:x", "ADEV", txn_id, "m.ping", {"@b:x": {"BDEV": {"t": txn_id}}}, pos))
    finally:
        store.generator.mark_done(pos)


def _txns(db: Any) -> list[tuple[str, int]]:
    return db.run_interaction_sync("txns", lambda t: t.execute(
        "SELECT txn_id, stream_id FROM to_device_txns ORDER BY stream_id").fetchall())


def test_txn_ids_older_than_a_day_are_forgotten_on_insert() -> None:
    db, clock = sqlite_db(), Clock()
    _device(db, "@b:x", "BDEV")
    store, _ = _store(db, clock)
    assert _send(store, "old1") == {"@b:x"}
    assert _send(store, "old2") == {"@b:x"}
    clock.now += 20 * HOUR_MS / 1000
    assert _send(store, "recent") == {"@b:x"}
    assert _send(store, "old1") is None  # 20 h later a retransmission is still recognised

    clock.now += 5 * HOUR_MS / 1000  # old1/old2 are 25 h old, "recent" 5 h
    assert _send(store, "new") == {"@b:x"}
    assert [t for t, _ in _txns(db)] == ["recent", "new"]
    assert _send(store, "recent") is None
    # once forgotten, the same txn ID is a new message
    assert _send(store, "old1") == {"@b:x"}


def test_pruning_is_throttled() -> None:
    db, clock = sqlite_db(), Clock()
    _device(db, "@b:x", "BDEV")
    store, _ = _store(db, clock)
    _send(store, "x")
    clock.now += (TXN_RETENTION_MS - 5 * 60_000) / 1000
    _send(store, "y")  # prunes, but nothing is a day old yet
    clock.now += 6 * 60  # "x" is now over a day old, the last prune only 6 minutes ago
    _send(store, "z")
    assert [t for t, _ in _txns(db)] == ["x", "y", "z"]
    clock.now += (TXN_PRUNE_INTERVAL_MS - 6 * 60_000) / 1000
    _send(store, "w")
    assert [t for t, _ in _txns(db)] == ["y", "z", "w"]


def test_the_highest_position_survives_pruning_and_restarts() -> None:
    db, clock = sqlite_db(), Clock()
    _device(db, "@b:x", "BDEV")
    store, positions = _store(db, clock)
    for n in range(3):
        _send(store, f"t{n}")
    # the device acknowledged everything: the inbox is empty
    msgs, upto = run(store.take_messages("@b:x", "BDEV", 3, 3, 100))
    assert (msgs, upto) == ([], 3)
    assert run(store.prune_txns(int(clock.now * 1000) + TXN_RETENTION_MS)) == 2
    assert _txns(db) == [("t2", 3)]
    _, positions = _store(db, clock)
    assert positions.current_token().to_device == 3

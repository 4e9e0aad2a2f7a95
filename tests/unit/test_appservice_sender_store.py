"""The appservice sender against the real transaction store (SQLite): persisted but unacknowledged transactions go
first with their own txn_id, a busy appservice's acknowledgement and next transaction share one database write,
and a failed write leaves the transaction to be sent again with the same txn_id, nothing lost or reordered."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from homeserver.appservice.sender import AppServiceSender
from homeserver.storage.appservice import AppServiceStore
from homeserver.streams import StreamIdGenerator
from tests.unit.accounts_testlib import run, sqlite_db
from tests.unit.test_appservice_sender_order import fake_hs_and_service

AS_ID = "alerts"


class CountingStore(AppServiceStore):
    """The real store, counting its calls; ``fail_next_complete`` makes the next acknowledgement write fail."""

    def __init__(self, db: Any) -> None:
        super().__init__(db)
        self.calls: list[str] = []
        self.fail_next_complete = False

    async def get_pending_transactions(self, appservice_id: str) -> Any:
        self.calls.append("pending")
        return await super().get_pending_transactions(appservice_id)

    async def create_transaction(self, *args: Any) -> Any:
        self.calls.append("create")
        return await super().create_transaction(*args)

    async def complete_and_create_transaction(self, *args: Any) -> Any:
        self.calls.append("complete+create")
        if self.fail_next_complete:
            self.fail_next_complete = False
            raise RuntimeError("database went away")
        return await super().complete_and_create_transaction(*args)


class RecordingApi:
    """Acknowledges every push; while pushing, runs ``during_push`` once (to queue more events mid-flight)."""

    def __init__(self) -> None:
        self.pushed: list[tuple[str, list[str]]] = []
        self.during_push: Any = None

    async def push_transaction(self, service: Any, txn_id: str, body: dict[str, Any]) -> bool:
        self.pushed.append((txn_id, [e["event_id"] for e in body["events"]]))
        if self.during_push is not None:
            hook, self.during_push = self.during_push, None
            hook()
        return True


def setup() -> tuple[AppServiceSender, CountingStore, RecordingApi, Any, task.Clock]:
    db = sqlite_db()
    store, api, clock, ids = CountingStore(db), RecordingApi(), task.Clock(), StreamIdGenerator(0)
    hs, service = fake_hs_and_service(clock, ids, AS_ID)
    sender = AppServiceSender(hs, service, store, api, 0)  # type: ignore[arg-type]

    def queue(event_id: str) -> None:
        position = ids.allocate()
        db.run_interaction_sync("q", lambda txn: store.enqueue_event_txn(txn, [AS_ID], position, event_id))
        ids.mark_done(position)
        sender.on_event_queued(position)

    return sender, store, api, queue, clock


def table_rows(store: AppServiceStore, table: str) -> int:
    return store.db.run_interaction_sync("count", lambda txn: txn.execute(f"SELECT COUNT(*) FROM {table}")
                                         .fetchone()[0])


def test_unacknowledged_transaction_from_before_goes_first_with_its_txn_id() -> None:
    sender, store, api, queue, clock = setup()
    queue("$a")
    clock.advance(0)  # (delivered at once; now make one that a "previous process" left unacknowledged)
    assert api.pushed == [("1", ["$a"])]
    queue("$b")
    leftover = run(store.create_transaction(AS_ID, 10, 100, []))  # persisted, never acknowledged
    assert leftover.txn_id == 2 and leftover.event_ids == ["$b"]
    queue("$c")
    restarted = AppServiceSender(sender.hs, sender.service, store, api, 1)
    restarted.kick()
    assert api.pushed[1:] == [("2", ["$b"]), ("3", ["$c"])]
    assert table_rows(store, "appservice_txns") == 0 and table_rows(store, "appservice_queue") == 0


def test_busy_appservice_acknowledges_and_takes_the_next_in_one_write() -> None:
    sender, store, api, queue, clock = setup()
    queue("$1")
    api.during_push = lambda: (queue("$2"), queue("$3"))
    clock.advance(0)
    assert api.pushed == [("1", ["$1"]), ("2", ["$2", "$3"])]
    # The first pass looks for leftovers once; then one write per transaction (the last finds the queue empty).
    assert store.calls == ["pending", "create", "complete+create", "complete+create"]
    store.calls.clear()
    queue("$4")
    clock.advance(0)
    assert api.pushed[-1] == ("3", ["$4"])
    assert store.calls == ["create", "complete+create"]  # no second look for leftovers while all goes well
    assert table_rows(store, "appservice_txns") == 0


def test_failed_acknowledgement_write_resends_the_same_txn_id_then_continues() -> None:
    sender, store, api, queue, clock = setup()
    queue("$1")
    store.fail_next_complete = True
    api.during_push = lambda: queue("$2")
    clock.advance(0)
    assert api.pushed == [("1", ["$1"])]
    assert table_rows(store, "appservice_txns") == 1  # still persisted: the deletion was rolled back
    clock.advance(60)  # the backoff
    assert api.pushed == [("1", ["$1"]), ("1", ["$1"]), ("2", ["$2"])]
    assert store.calls.count("pending") == 2
    assert table_rows(store, "appservice_txns") == 0 and table_rows(store, "appservice_queue") == 0

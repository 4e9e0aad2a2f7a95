"""An appservice's queued event above a still-persisting lower position is delivered once that position completes,
even when the lower event does not interest the appservice (nothing else would kick its sender)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from twisted.internet import task

from homeserver.appservice.handler import AppServices
from homeserver.appservice.registration import ApplicationService
from homeserver.appservice.sender import RETRY_WAITING_S, AppServiceSender
from homeserver.storage.appservice import PendingTransaction
from homeserver.streams import StreamIdGenerator


class FakeStore:
    """The queue of one appservice: (stream_ordering, event_id) rows; transactions take rows <= max_pos."""

    def __init__(self) -> None:
        self.queue: list[tuple[int, str]] = []
        self.max_positions: list[int] = []
        self._txn_id = 0

    async def get_pending_transactions(self, as_id: str) -> list[PendingTransaction]:
        return []

    async def create_transaction(self, as_id: str, max_pos: int, limit: int,
                                 ephemeral: list[Any]) -> PendingTransaction | None:
        self.max_positions.append(max_pos)
        taken = [e for e in self.queue if e[0] <= max_pos][:limit]
        if not taken and not ephemeral:
            return None
        self.queue = [e for e in self.queue if e not in taken]
        self._txn_id += 1
        return PendingTransaction(as_id, self._txn_id, [e[1] for e in taken], list(ephemeral))

    async def complete_transaction(self, as_id: str, txn_id: int) -> None:
        return None

    async def complete_and_create_transaction(self, as_id: str, done_txn_id: int, max_pos: int, limit: int,
                                              ephemeral: list[Any]) -> PendingTransaction | None:
        return await self.create_transaction(as_id, max_pos, limit, ephemeral)


class FakeApi:
    def __init__(self) -> None:
        self.delivered: list[list[str]] = []

    async def push_transaction(self, service: Any, txn_id: str, body: dict[str, Any]) -> bool:
        self.delivered.append([e["event_id"] for e in body["events"]])
        return True


def fake_hs_and_service(clock: task.Clock, ids: StreamIdGenerator, service_id: str) -> tuple[Any, ApplicationService]:
    """What an AppServiceSender needs of the homeserver (events are ``{"event_id"}`` stand-ins), and a service."""

    async def get_events(event_ids: Any) -> dict[str, Any]:
        return {e: SimpleNamespace(event_id=e) for e in event_ids}

    async def serialize(events: Any, requester: Any, bundle_relations: bool = True) -> list[dict[str, Any]]:
        return [{"event_id": e.event_id} for e in events]

    hs = SimpleNamespace(clock=clock, event_store=SimpleNamespace(stream_ids=ids, get_events=get_events),
                         event_serializer=SimpleNamespace(serialize=serialize))
    service = ApplicationService(id=service_id, url="http://127.0.0.1:1/as", as_token="a", hs_token="h",
                                 sender="@alerts:test")
    return hs, service


def make_sender(service_id: str) -> tuple[AppServiceSender, FakeStore, FakeApi, StreamIdGenerator, task.Clock]:
    clock = task.Clock()
    ids = StreamIdGenerator(10)

    hs, service = fake_hs_and_service(clock, ids, service_id)
    store, api = FakeStore(), FakeApi()
    return AppServiceSender(hs, service, store, api, 0), store, api, ids, clock  # type: ignore[arg-type]


def test_queued_event_above_an_in_flight_position_is_sent_when_the_events_stream_passes_it() -> None:
    sender, store, api, ids, clock = make_sender("order-listener")
    other, alert = ids.allocate(), ids.allocate()  # 11 (no interest) and 12 (the alert) persist concurrently
    store.queue.append((alert, "$alert"))
    sender.on_event_queued(alert)  # the alert commits first
    ids.mark_done(alert)
    clock.advance(0)
    assert store.max_positions == [10] and api.delivered == []  # 12 may not overtake 11
    ids.mark_done(other)  # 11 commits; only the events stream's announcement tells the sender
    handler = SimpleNamespace(senders={"order-listener": sender})
    AppServices._on_stream(handler, "events", other)  # type: ignore[arg-type]
    AppServices._on_stream(handler, "events", alert)  # type: ignore[arg-type]
    assert api.delivered == [["$alert"]]
    assert store.queue == [] and not sender.running


def test_waiting_sender_looks_again_when_a_lower_position_is_released_without_an_announcement() -> None:
    sender, store, api, ids, clock = make_sender("order-retry")
    failed, alert = ids.allocate(), ids.allocate()
    store.queue.append((alert, "$alert"))
    sender.on_event_queued(alert)
    ids.mark_done(alert)
    clock.advance(0)
    assert api.delivered == []
    clock.advance(RETRY_WAITING_S)  # 11 still in flight: keep waiting
    assert api.delivered == []
    ids.mark_done(failed)  # 11's persist failed: its position is released, never announced
    clock.advance(RETRY_WAITING_S)
    assert api.delivered == [["$alert"]]
    assert clock.getDelayedCalls() == []  # no retry left scheduled once delivered


def test_nothing_waits_when_every_queued_event_was_readable() -> None:
    sender, store, api, ids, clock = make_sender("order-plain")
    pos = ids.allocate()
    store.queue.append((pos, "$a"))
    sender.on_event_queued(pos)
    ids.mark_done(pos)
    clock.advance(0)
    assert api.delivered == [["$a"]]
    assert clock.getDelayedCalls() == []

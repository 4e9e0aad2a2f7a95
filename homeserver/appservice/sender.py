"""The transaction sender: one per application service, one transaction in flight at a time.

Spec: Application Service API, "Pushing events" (``PUT /_matrix/app/v1/transactions/{txnId}``): events in order,
the same ``txnId`` and body on every retry until the appservice answers 200.

How nothing is lost or duplicated: interested events are queued in the event's own database transaction (see
:mod:`homeserver.appservice.handler`). The sender moves up to :data:`MAX_EVENTS_PER_TRANSACTION` queued events into
a persisted transaction (``txn_id`` + exact event list) *before* the first attempt, retries it with capped
exponential backoff, and deletes it only after a 200. After a crash the persisted transaction is sent again with
the same ``txn_id`` (the appservice deduplicates by ``txn_id``), then the queue continues where it stopped.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import Counter, Gauge
from twisted.internet import defer

from homeserver.appservice.api import AppServiceApi
from homeserver.appservice.registration import ApplicationService
from homeserver.storage.appservice import AppServiceStore, PendingTransaction

logger = logging.getLogger(__name__)

MAX_EVENTS_PER_TRANSACTION = 100
MAX_EPHEMERAL_PENDING = 1000
BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 60.0
#: How often (s) a sender waiting for a lower event position to complete looks again without an announcement.
RETRY_WAITING_S = 1.0

queued_events = Gauge("tocsin_appservice_queued_events",
                      "Events for the appservice not yet acknowledged (queued or in the in-flight transaction)",
                      ["appservice"])
transactions_sent = Counter("tocsin_appservice_transactions_sent_total",
                            "Transactions the appservice acknowledged with 200", ["appservice"])
transactions_failed = Counter("tocsin_appservice_transactions_failed_total",
                              "Transaction attempts that failed (error status, refused connection, timeout)",
                              ["appservice"])
events_sent = Counter("tocsin_appservice_events_sent_total", "Events delivered in acknowledged transactions",
                      ["appservice"])
seconds_since_success = Gauge("tocsin_appservice_seconds_since_last_success",
                              "Seconds since the appservice last acknowledged a transaction (-1: never since start)",
                              ["appservice"])


class AppServiceSender:
    """Delivers one appservice's queue. Call :meth:`kick` whenever something was queued for it.

    ``hs`` provides ``clock``, ``event_store`` (``get_events``, ``stream_ids``) and ``event_serializer``.
    """

    def __init__(self, hs: Any, service: ApplicationService, store: AppServiceStore, api: AppServiceApi,
                 queued_at_start: int) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.service = service
        self.store = store
        self.api = api
        self.queued = queued_at_start
        self.in_flight = 0
        self.last_success: float | None = None
        self._ephemeral: list[dict[str, Any]] = []
        self._running = False
        self._kicked = False
        # The highest event position queued for this appservice, and the position the sender waits for when its
        # last look at the queue could not take everything because a lower event was still being persisted.
        self._highest_queued = 0
        self._waiting_for = 0
        self._retry_call: Any = None
        # False until the transactions left persisted but unacknowledged (by an earlier process, or by an error
        # in this one) were sent: only then does the sender know there are none.
        self._pending_checked = False
        # Every event queued at or below this position is in a transaction already (the last look at the queue
        # took all it found up to it): a kick for such an event has nothing to add.
        self._taken_through = 0
        label = service.id
        queued_events.labels(label).set_function(lambda: self.queued + self.in_flight)
        seconds_since_success.labels(label).set_function(
            lambda: -1.0 if self.last_success is None else self.clock.seconds() - self.last_success)
        self._sent = transactions_sent.labels(label)
        self._failed = transactions_failed.labels(label)
        self._events_sent = events_sent.labels(label)

    @property
    def running(self) -> bool:
        return self._running

    def add_ephemeral(self, edu: dict[str, Any]) -> None:
        """Queue an ephemeral event (``m.typing``...) for the next transaction. Kept in memory only: typing and
        receipts are transient, and the oldest are dropped beyond :data:`MAX_EPHEMERAL_PENDING`."""
        if self.service.url is None or not self.service.receive_ephemeral:
            return
        self._ephemeral.append(edu)
        if len(self._ephemeral) > MAX_EPHEMERAL_PENDING:
            del self._ephemeral[: len(self._ephemeral) - MAX_EPHEMERAL_PENDING]
        self.kick()

    def on_event_queued(self, stream_ordering: int) -> None:
        """An event at ``stream_ordering`` was queued for this appservice (its transaction committed): deliver
        it once every lower event position is persisted."""
        self.queued += 1
        self._highest_queued = max(self._highest_queued, stream_ordering)
        # After the persist hook returns the event's position is marked done, so the sender can read it.
        self.clock.callLater(0, self.kick)

    def on_events_position(self, position: int) -> None:
        """The events stream was announced up to ``position`` (announcements come in order, once every lower
        position is persisted). Kicks the sender if it left queued events above the complete position."""
        if self._waiting_for and position >= self._waiting_for:
            self._waiting_for = 0
            self.kick()

    def _retry_if_still_waiting(self) -> None:
        # Fallback for a lower position that is released without an announcement (its persist failed): the
        # events listener would not fire until the next event, so look again while still waiting.
        self._retry_call = None
        if not self._waiting_for:
            return
        if self.hs.event_store.stream_ids.current() >= self._waiting_for:
            self._waiting_for = 0
            self.kick()
        else:
            self._retry_call = self.clock.callLater(RETRY_WAITING_S, self._retry_if_still_waiting)

    def kick(self) -> None:
        """Start delivering if idle; if a delivery loop runs, make it look at the queue once more."""
        if self.service.url is None:
            return
        if not self._has_work():
            return
        self._kicked = True
        if self._running:
            return
        self._running = True
        d = defer.ensureDeferred(self._run())
        d.addErrback(lambda f: logger.error("appservice %s sender stopped: %s", self.service.id,
                                            f.getTraceback()))

    async def _run(self) -> None:
        failures = 0
        try:
            # Bounded by the queue: each pass either sends transactions or finds nothing to send and stops.
            while True:
                self._kicked = False
                try:
                    if not self._pending_checked:
                        # At start-up or after an error: transactions persisted but not acknowledged go first,
                        # with their own txn_id and events.
                        for txn in await self.store.get_pending_transactions(self.service.id):
                            await self._push_until_acknowledged(txn)
                            await self.store.complete_transaction(self.service.id, txn.txn_id)
                            self.in_flight = 0
                        self._pending_checked = True
                    txn = await self._next_transaction(None)
                    while txn is not None:
                        await self._push_until_acknowledged(txn)
                        # Forget the acknowledged transaction and take the next one in one database write.
                        txn = await self._next_transaction(txn)
                    failures = 0
                    if not (self._kicked and self._has_work()):
                        return
                except Exception:  # noqa: BLE001 - e.g. the database went away: wait and try again
                    logger.exception("appservice %s: sender error", self.service.id)
                    # What this pass persisted but could not complete is in the database: look there first.
                    self._pending_checked = False
                    failures += 1
                    await self._sleep(self._backoff(failures))
        finally:
            self._running = False

    async def _next_transaction(self, done: PendingTransaction | None) -> PendingTransaction | None:
        """A new transaction of what is queued now (None when nothing is), forgetting the acknowledged ``done``
        in the same database transaction."""
        ephemeral, self._ephemeral = self._ephemeral, []
        try:
            # Only positions below which every event is committed: a later-committing lower position must not
            # be overtaken (order), nor skipped.
            max_pos = self.hs.event_store.stream_ids.current()
            if self._highest_queued > max_pos:
                # Events queued above max_pos stay for now; nothing else may kick this sender when max_pos later
                # passes them (the lower event need not interest this appservice), so wait for that position.
                self._waiting_for = max(self._waiting_for, self._highest_queued)
                if self._retry_call is None:
                    self._retry_call = self.clock.callLater(RETRY_WAITING_S, self._retry_if_still_waiting)
            if done is None:
                txn = await self.store.create_transaction(self.service.id, max_pos, MAX_EVENTS_PER_TRANSACTION,
                                                          ephemeral)
            else:
                txn = await self.store.complete_and_create_transaction(
                    self.service.id, done.txn_id, max_pos, MAX_EVENTS_PER_TRANSACTION, ephemeral)
                self.in_flight = 0
        except BaseException:
            self._ephemeral[:0] = ephemeral
            raise
        if txn is None or len(txn.event_ids) < MAX_EVENTS_PER_TRANSACTION:
            self._taken_through = max(self._taken_through, max_pos)
        if txn is not None:
            self.queued = max(0, self.queued - len(txn.event_ids))
        return txn

    def _has_work(self) -> bool:
        """Whether a pass could find something: leftovers not yet looked for, ephemeral events, or an event
        queued above what the last look took."""
        return not self._pending_checked or bool(self._ephemeral) or self._highest_queued > self._taken_through

    @staticmethod
    def _backoff(failures: int) -> float:
        return min(BACKOFF_CAP_S, BACKOFF_BASE_S * (2 ** min(failures - 1, 16)))

    def _sleep(self, seconds: float) -> defer.Deferred:
        """A backoff wait of ``seconds`` that :meth:`retry_now` can cut short."""
        waiting: defer.Deferred = defer.Deferred()
        call = self.clock.callLater(seconds, self._end_wait, waiting)
        self._wait = (waiting, call)
        return waiting

    @staticmethod
    def _end_wait(waiting: defer.Deferred) -> None:
        if not waiting.called:
            waiting.callback(None)

    def retry_now(self) -> None:
        """End a backoff wait at once: the appservice just proved it is reachable (a successful ping), so a
        bridge coming back after an outage gets its backlog without waiting out the backoff (as Synapse does)."""
        wait = getattr(self, "_wait", None)
        if wait is None:
            return
        waiting, call = wait
        if call.active():
            call.cancel()
        self._end_wait(waiting)

    async def _build_body(self, txn: PendingTransaction) -> dict[str, Any]:
        found = await self.hs.event_store.get_events(txn.event_ids)
        events = [found[e] for e in txn.event_ids if e in found]
        body: dict[str, Any] = {"events": await self.hs.event_serializer.serialize(events, None,
                                                                                  bundle_relations=False)}
        if self.service.receive_ephemeral:
            body["ephemeral"] = txn.ephemeral
            # Bridges written before Matrix 1.13 read MSC2409's unstable key.
            body["de.sorunome.msc2409.ephemeral"] = txn.ephemeral
        return body

    async def _push_until_acknowledged(self, txn: PendingTransaction) -> None:
        """PUT ``txn`` until the appservice answers 200 (capped exponential backoff). The caller forgets it."""
        self.in_flight = len(txn.event_ids)
        body = await self._build_body(txn)
        failures = 0
        while not await self.api.push_transaction(self.service, str(txn.txn_id), body):
            self._failed.inc()
            failures += 1
            await self._sleep(self._backoff(failures))
        self._sent.inc()
        self._events_sent.inc(len(body["events"]))
        self.last_success = self.clock.seconds()

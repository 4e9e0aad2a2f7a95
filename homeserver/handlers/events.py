"""Creating, authorizing, persisting and announcing room events: the one path every event takes.

Spec: Client-Server API "Sending events to a room" (transaction IDs), Room versions 10/11 "Authorization rules",
"Redactions". createRoom, membership changes, state, messages, redactions and appservices all end up in
:meth:`EventCreationHandler.send_event`, which holds the room's lock while it picks ``prev_events``/``depth``,
builds and signs the event, checks the auth rules against current state and persists it, so a room's history stays
linear and every event is checked against the state it was built on.
"""

from __future__ import annotations

import heapq
import logging
from collections import OrderedDict
from typing import Any, Callable, Protocol

from prometheus_client import Counter
from twisted.internet import defer

from homeserver.events import Event, RoomVersion
from homeserver.events.auth import auth_types_for_event, check_auth_rules, check_redaction_allowed
from homeserver.events.builder import build_event
from homeserver.http.auth import Requester
from homeserver.http.errors import ForbiddenError, NotFoundError
from homeserver.http.ratelimit import Ratelimiter
from homeserver.storage.database import delay_cancellation

logger = logging.getLogger(__name__)

events_persisted = Counter("tocsin_events_persisted_total", "Room events persisted", ["type"])

_COUNTED_TYPES = {
    "m.room.message", "m.room.encrypted", "m.room.member", "m.reaction", "m.room.redaction", "m.room.create",
}


class PersistHook(Protocol):
    """Work that must be durable together with an event (push actions, appservice queues...).

    ``prepare`` runs before the transaction (may do I/O, returns anything); ``persist_txn`` runs inside the
    event's transaction with that value; ``after_persist`` runs on the reactor after commit.
    """

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> Any:
        """Before the event's transaction (may do I/O; raising a ``MatrixError`` refuses the event): returns the
        ``prepared`` value the other two get.
        """

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Inside the event's transaction (``txn``, no I/O but SQL): write what must commit with the event."""

    def after_persist(self, event: Event, stream_ordering: int, prepared: Any) -> None:
        """On the reactor after commit: wake whoever acts on the event. An exception is logged, not raised."""


# (user_id, device scope, room_id, endpoint scope, txn_id): what a client transaction ID is unique within.
TxnKey = tuple[str, str, str, str, str]


def txn_endpoint_scope(event_type: str, content: dict[str, Any], redacts: str | None) -> str:
    """The request-path part of a transaction ID's scope (the room is keyed separately):
    ``"redact/<event ID>"`` for ``PUT /rooms/{roomId}/redact/{eventId}/{txnId}``, else
    ``"send/<event type>"`` for ``PUT /rooms/{roomId}/send/{eventType}/{txnId}``.

    A redaction sent through ``/send/m.room.redaction`` names its target in ``content["redacts"]``; one from
    ``/redact`` carries the target in the path only, which is how the two are told apart when the caller does
    not say.
    """
    if event_type == "m.room.redaction" and redacts is not None and "redacts" not in content:
        return f"redact/{redacts}"
    return f"send/{event_type}"


def _is_rate_limited(requester: Requester) -> bool:
    """Spec (Application Service API, registration ``rate_limited``): an appservice's own sender is never limited;
    users it masquerades as are, unless its registration says ``rate_limited: false``."""
    service = requester.app_service
    if service is None:
        return True
    sender = getattr(service, "sender", None)
    return bool(getattr(service, "rate_limited", True)) and requester.user_id != sender


#: Recent transaction keys remembered in memory (see :meth:`EventCreationHandler.create_and_send_event`).
RECENT_TXNS_CACHE_SIZE = 10_000


class EventCreationHandler:
    """Builds and sends events. Attributes of ``hs`` used: clock, config, signing_key, hostname, db, event_store,
    room_store, notifier."""

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.db = hs.db
        self.event_store = hs.event_store
        self.room_store = hs.room_store
        self.notifier = hs.notifier
        self.stream_ids = hs.event_store.stream_ids
        self._room_locks: dict[str, defer.DeferredLock] = {}
        self._txn_locks: dict[TxnKey, defer.DeferredLock] = {}
        # Transaction keys of recent sends -> event ID, so a client's retry is answered without building again.
        self._recent_txns: OrderedDict[TxnKey, str] = OrderedDict()
        self._pending_notify: list[tuple[int, int, Callable[[], None]]] = []
        self._notify_seq = 0
        self.message_ratelimiter = Ratelimiter(hs.clock, hs.config.rc_message)
        self.persist_hooks: list[PersistHook] = []

    def now_ms(self) -> int:
        """The clock's current time in milliseconds since the epoch (``origin_server_ts``)."""
        return int(self.clock.seconds() * 1000)

    def add_persist_hook(self, hook: PersistHook) -> None:
        """Run ``hook`` for every event created from now on, after the hooks added before it."""
        self.persist_hooks.append(hook)

    def _room_lock(self, room_id: str) -> defer.DeferredLock:
        lock = self._room_locks.get(room_id)
        if lock is None:
            lock = self._room_locks[room_id] = defer.DeferredLock()
        return lock

    async def create_and_send_event(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: dict[str, Any],
        state_key: str | None = None,
        txn_id: str | None = None,
        redacts: str | None = None,
        ratelimit: bool = True,
        txn_scope: str | None = None,
    ) -> Event:
        """Send an event as ``requester``; idempotent per (user, device, room, endpoint, ``txn_id``).

        Spec: Client-Server API "Transaction identifiers": the scope is the device and the request path, so the
        same ``txn_id`` in another room, for another event type or on ``/redact`` sends a new event.
        ``txn_scope`` names the endpoint (``"send/<type>"`` or ``"redact/<event ID>"``); by default it is
        derived by :func:`txn_endpoint_scope`.

        Raises:
            NotFoundError: 404 unknown room.
            AuthError/ForbiddenError: 403 when the auth rules (or the redaction rule) refuse it.
            BadJsonError / TooLargeError: 400 / 413 from the event builder.
            LimitExceededError: 429 from ``rc_message``.
        """
        txn_key: TxnKey | None = None
        if txn_id is not None:
            device_scope = requester.device_id or f"token:{requester.access_token_id}"
            endpoint = txn_scope if txn_scope is not None else txn_endpoint_scope(event_type, content, redacts)
            txn_key = (requester.user_id, device_scope, room_id, endpoint, txn_id)
        if txn_key is None:
            return await self._create_and_send(requester, room_id, event_type, content, state_key, None, redacts,
                                               ratelimit)
        lock = self._txn_locks.get(txn_key)
        if lock is None:
            lock = self._txn_locks[txn_key] = defer.DeferredLock()
        await lock.acquire()
        try:
            # No database look-up before sending: a retry is rare, and the transaction ID is stored in the event's
            # own transaction under a unique key. A retry soon after is answered from memory; any other retry
            # either fails to persist (the key exists) or is refused (rate limit, auth rules, a redacted target
            # now gone): only then is the stored event looked up and returned, as the spec wants.
            known = self._recent_txns.get(txn_key)
            if known is not None:
                event = await self.event_store.get_event(known)
                if event is not None:
                    return event
            try:
                event = await self._create_and_send(requester, room_id, event_type, content, state_key, txn_key,
                                                    redacts, ratelimit)
            except Exception:
                existing = await self.event_store.get_txn_event_id(*txn_key)
                event = await self.event_store.get_event(existing) if existing is not None else None
                if event is None:
                    raise
                return event
            self._recent_txns[txn_key] = event.event_id
            if len(self._recent_txns) > RECENT_TXNS_CACHE_SIZE:
                self._recent_txns.popitem(last=False)
            return event
        finally:
            lock.release()
            if not lock.locked and not lock.waiting:
                self._txn_locks.pop(txn_key, None)

    async def _create_and_send(self, requester: Requester, room_id: str, event_type: str, content: dict[str, Any],
                               state_key: str | None, txn_key: TxnKey | None, redacts: str | None,
                               ratelimit: bool) -> Event:
        if ratelimit and _is_rate_limited(requester):
            self.message_ratelimiter.check(requester.user_id)
        if redacts is not None:
            target = await self.event_store.get_event(redacts)
            if target is not None and target.room_id != room_id:
                target = None
            redacted_sender = target.sender if target is not None else None
        else:
            redacted_sender = None
        event = await self.send_event(room_id, requester.user_id, event_type, content, state_key=state_key,
                                      redacts=redacts, txn_key=txn_key, redacted_sender=redacted_sender)
        if txn_key is not None:
            event.internal_metadata["txn_id"] = txn_key[4]
            event.internal_metadata["device_id"] = txn_key[1]
        return event

    async def send_event(
        self,
        room_id: str,
        sender: str,
        event_type: str,
        content: dict[str, Any],
        *,
        state_key: str | None = None,
        redacts: str | None = None,
        txn_key: TxnKey | None = None,
        redacted_sender: str | None = None,
        new_room_version: RoomVersion | None = None,
        check: Callable[[Event, dict[tuple[str, str], Event]], None] | None = None,
    ) -> Event:
        """Build, authorize, persist and announce one event under the room's lock.

        ``new_room_version`` is given only for a room's ``m.room.create`` event. ``check`` is an extra rule run
        against the auth state after the spec's auth rules (it raises a MatrixError to refuse).
        """
        lock = self._room_lock(room_id)
        await lock.acquire()
        try:
            if new_room_version is not None:
                self.room_store.new_room(room_id, new_room_version)
            room_version = await self.room_store.get_room_version(room_id)
            if room_version is None:
                raise NotFoundError("Unknown room")
            state_ids = await self.room_store.get_current_state_ids(room_id)
            if new_room_version is None and not state_ids:
                raise NotFoundError("Unknown room")
            auth_keys = auth_types_for_event(room_version, event_type, sender, state_key, content)
            auth_event_ids = [state_ids[k] for k in auth_keys if k in state_ids]
            prev_event_id, depth = await self.room_store.get_latest_event(room_id)
            event = build_event(
                room_version,
                room_id=room_id,
                type=event_type,
                sender=sender,
                content=content,
                state_key=state_key,
                prev_event_ids=[prev_event_id] if prev_event_id else [],
                auth_event_ids=auth_event_ids,
                depth=depth + 1,
                origin_server_ts=self.now_ms(),
                server_name=self.hs.hostname,
                signing_key=self.hs.signing_key,
                redacts=redacts,
            )
            if txn_key is not None:
                # Set before persisting: a /sync woken by this event may serialize it before send_event returns.
                event.internal_metadata["txn_id"] = txn_key[4]
                event.internal_metadata["device_id"] = txn_key[1]
            auth_events = await self.event_store.get_events(auth_event_ids)
            auth_state = {k: auth_events[state_ids[k]] for k in auth_keys
                          if k in state_ids and state_ids[k] in auth_events}
            check_auth_rules(room_version, event, auth_state)
            if event_type == "m.room.redaction":
                if not check_redaction_allowed(event, redacted_sender, auth_state):
                    raise ForbiddenError("You don't have permission to redact this event")
            if check is not None:
                check(event, auth_state)
            if event.is_state():
                prev_id = state_ids.get((event_type, state_key))  # type: ignore[arg-type]
                if prev_id is not None:
                    prev = await self.event_store.get_event(prev_id)
                    unsigned: dict[str, Any] = {"replaces_state": prev_id}
                    if prev is not None:
                        unsigned["prev_content"] = prev.content
                        unsigned["prev_sender"] = prev.sender
                    event.internal_metadata["unsigned"] = unsigned
            prepared = [await hook.prepare(event, state_ids) for hook in self.persist_hooks]
            await self._persist(event, prepared, new_room_version is not None, txn_key)
            return event
        finally:
            lock.release()
            if not lock.locked and not lock.waiting and room_id in self._room_locks:
                del self._room_locks[room_id]

    def _persist(self, event: Event, prepared: list[Any], is_new_room: bool,
                 txn_key: TxnKey | None) -> "defer.Deferred[None]":
        """Persist ``event`` at the next stream position, then update the caches and announce it.

        Once started this runs to the end even if the caller is cancelled meanwhile (the cancellation is held
        until then): an event committed but never applied to the in-memory room state would be missing from
        /sync and forked from by the next event.
        """
        return delay_cancellation(defer.ensureDeferred(self._persist_now(event, prepared, is_new_room, txn_key)))

    async def _persist_now(self, event: Event, prepared: list[Any], is_new_room: bool,
                           txn_key: TxnKey | None) -> None:
        position = self.stream_ids.allocate()
        now = self.now_ms()

        def _txn(txn: Any) -> None:
            self.event_store.persist_event_txn(txn, event, position, is_new_room=is_new_room, txn_id=txn_key,
                                               now_ms=now)
            for hook, value in zip(self.persist_hooks, prepared):
                hook.persist_txn(txn, event, position, value)

        try:
            await self.db.run_interaction("persist_event", _txn)
        except BaseException:
            self.stream_ids.mark_done(position)
            # This position may have been the last gap below events persisted meanwhile: announce them now
            # rather than with the next successful event.
            try:
                self._flush_notifications()
            except Exception:  # noqa: BLE001 - the persist failure is what the caller must see
                logger.exception("announcing events after a failed persist")
            if is_new_room:
                self.room_store.forget_new_room(event.room_id)
            raise
        self.event_store.after_persist(event, position)
        self.room_store.on_event_persisted(event, position)
        events_persisted.labels(event.type if event.type in _COUNTED_TYPES else "other").inc()
        for hook, value in zip(self.persist_hooks, prepared):
            try:
                hook.after_persist(event, position, value)
            except Exception:  # noqa: BLE001 - a hook's bug must not fail a persisted send
                logger.exception("persist hook failed after commit")
        users = [event.state_key] if event.type == "m.room.member" and event.state_key else []
        self._queue_notify(position, lambda: self.notifier.notify("events", position, users=users,
                                                                  rooms=[event.room_id]))
        self.stream_ids.mark_done(position)
        self._flush_notifications()

    def _queue_notify(self, position: int, fn: Callable[[], None]) -> None:
        self._notify_seq += 1
        heapq.heappush(self._pending_notify, (position, self._notify_seq, fn))

    def _flush_notifications(self) -> None:
        """Announce positions only once every lower position is persisted, so a woken /sync can read them."""
        current = self.stream_ids.current()
        while self._pending_notify and self._pending_notify[0][0] <= current:
            _, _, fn = heapq.heappop(self._pending_notify)
            fn()

"""Wakes waiting ``/sync`` requests (and other listeners) when a stream advances.

The notifier remembers, per user and per room, the last stream positions it announced. A waiter passes the token
its sync result was computed at; if anything relevant to it was announced after that token it returns at once,
otherwise it sleeps until the next relevant announcement or its timeout. Nothing can fall between computing a
result and starting to wait.

This in-memory notifier serves one process. The interface (``notify`` / ``wait_for_change``) is what a multi-process
deployment implements over Redis pub/sub or PostgreSQL LISTEN/NOTIFY.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Iterable

from prometheus_client import Gauge
from twisted.internet import defer

from homeserver.streams import STREAM_NAMES, StreamToken

logger = logging.getLogger(__name__)

waiting_sync_requests = Gauge("tocsin_sync_waiting_requests", "Long-polling /sync requests currently waiting")

#: Waits time out together in steps of this many milliseconds: a wait ends at the first step at or after its
#: deadline (at most this much late), and all waits ending at one step share one reactor timer.
TIMEOUT_STEP_MS = 100


class _Waiter:
    __slots__ = ("deferred", "keys", "step", "_on_cancel")

    def __init__(self, keys: tuple[str, ...], on_cancel: Callable[["_Waiter"], None]) -> None:
        # Cancelled when the client goes away mid-wait: unregister at once rather than at the timeout.
        self._on_cancel = on_cancel
        self.deferred: defer.Deferred = defer.Deferred(canceller=self._cancelled)
        self.keys = keys
        self.step = 0  # the timeout step it ends at (a key of Notifier._timeouts)

    def _cancelled(self, _deferred: defer.Deferred) -> None:
        self._on_cancel(self)


class Notifier:
    """Per-user and per-room announcements of new stream positions.

    Keys are user IDs (``@...``) and room IDs (``!...``); a waiter listens on its user and its rooms.
    """

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._last: dict[str, dict[str, int]] = {}
        # key -> its waiter, or a set of them when there are several. One held /sync waits on its user's key, which
        # usually has only that waiter: no set of one per connection.
        self._waiters: dict[str, _Waiter | set[_Waiter]] = {}
        self._current = StreamToken()
        self._callbacks: list[Callable[[str, int], None]] = []
        # Positions the streams were at when this process started: announcements after them are all in _last.
        self._baseline: StreamToken | None = None
        # Timeouts: step number (time in TIMEOUT_STEP_MS units) -> (the waiters ending then, the one reactor
        # timer for them). One timer per step in use instead of one per held request (about 0.4 KiB each).
        self._timeouts: dict[int, tuple[set[_Waiter], Any]] = {}

    @property
    def current_token(self) -> StreamToken:
        """The highest positions announced so far (all streams)."""
        return self._current

    def add_stream_listener(self, callback: Callable[[str, int], None]) -> None:
        """Call ``callback(stream_name, position)`` on every announcement (appservice sender, pushers...)."""
        self._callbacks.append(callback)

    def notify(self, stream: str, position: int, users: Iterable[str] = (), rooms: Iterable[str] = ()) -> None:
        """Announce that ``stream`` reached ``position`` with data for ``users`` and/or ``rooms``.

        Must be called on the reactor thread, after the data is committed.
        """
        assert stream in STREAM_NAMES, stream
        self._current = self._current.copy_and_advance(stream, position)
        woken: set[_Waiter] = set()
        for key in list(users) + list(rooms):
            last = self._last.get(key)
            if last is None:
                self._last[key] = {stream: position}
            elif last.get(stream, 0) < position:
                last[stream] = position
            waiters = self._waiters.get(key)
            if waiters is not None:
                if type(waiters) is _Waiter:
                    woken.add(waiters)
                else:
                    woken.update(waiters)
        if woken:
            # Woken on the next reactor turn, not from inside the caller: the request that caused the change (e.g.
            # a send) answers first, as clients expect (matrix-js-sdk matches its local echo to the send's
            # response before the remote echo arrives in /sync).
            self.reactor.callLater(0, self._finish_all, woken)
        for cb in self._callbacks:
            try:
                cb(stream, position)
            except Exception:  # noqa: BLE001 - one listener's bug must not stop the others
                logger.exception("stream listener failed")

    def set_baseline(self, token: StreamToken) -> None:
        """Record the stream positions at start-up (before any write): every later change is announced here."""
        self._baseline = token

    def knows_changes_since(self, since: StreamToken) -> bool:
        """True if every change after ``since`` was announced to this notifier, so :meth:`has_changed` answers
        for ``since`` exactly: ``since`` is at or after the start-up positions (a token from before a restart is
        not, nor is any token before :meth:`set_baseline` was called).
        """
        return self._baseline is not None and since.is_at_or_after(self._baseline)

    def has_changed(self, keys: Iterable[str], since: StreamToken) -> bool:
        """True if anything was announced for ``keys`` after ``since``."""
        for key in keys:
            last = self._last.get(key)
            if last:
                for stream, position in last.items():
                    if position > getattr(since, stream):
                        return True
        return False

    def wait_for_change(self, user_id: str, room_ids: Iterable[str], since: StreamToken,
                        timeout_ms: int) -> "defer.Deferred[bool]":
        """Wait until something for ``user_id`` or ``room_ids`` is announced after ``since``, at most
        ``timeout_ms`` milliseconds (the timeout fires at the first :data:`TIMEOUT_STEP_MS` step at or after the
        deadline, so up to 100 ms late). The Deferred fires with True if woken by a change, False on timeout; it
        has already fired when there was a change (True) or ``timeout_ms <= 0`` (False). Cancelling it (the
        client went away) unregisters the waiter at once.

        A plain function returning the waiter's own Deferred, not a coroutine: a held long-poll keeps no frame
        of its own here.
        """
        keys = (user_id, *room_ids)
        if self.has_changed(keys, since):
            return defer.succeed(True)
        if timeout_ms <= 0:
            return defer.succeed(False)
        waiter = _Waiter(keys, self._unregister)
        for key in keys:
            present = self._waiters.get(key)
            if present is None:
                self._waiters[key] = waiter
            elif type(present) is _Waiter:
                self._waiters[key] = {present, waiter}
            else:
                present.add(waiter)
        now = self.reactor.seconds()
        step = math.ceil((now * 1000 + timeout_ms) / TIMEOUT_STEP_MS)
        entry = self._timeouts.get(step)
        if entry is None:
            delay_s = max(0.0, step * TIMEOUT_STEP_MS / 1000 - now)
            entry = self._timeouts[step] = (set(), self.reactor.callLater(delay_s, self._time_out, step))
        entry[0].add(waiter)
        waiter.step = step
        waiting_sync_requests.inc()
        return waiter.deferred

    def _time_out(self, step: int) -> None:
        waiters, _timer = self._timeouts.pop(step, (set(), None))
        for waiter in list(waiters):
            self._finish(waiter, False)

    def _finish_all(self, waiters: set[_Waiter]) -> None:
        for waiter in waiters:
            self._finish(waiter, True)

    def _finish(self, waiter: _Waiter, changed: bool) -> None:
        if waiter.deferred.called:
            return
        self._unregister(waiter)
        waiter.deferred.callback(changed)

    def _unregister(self, waiter: _Waiter) -> None:
        waiting_sync_requests.dec()
        for key in waiter.keys:
            waiters = self._waiters.get(key)
            if waiters is waiter:
                del self._waiters[key]
            elif waiters is not None and type(waiters) is not _Waiter:
                waiters.discard(waiter)
                if len(waiters) == 1:
                    self._waiters[key] = next(iter(waiters))
        entry = self._timeouts.get(waiter.step)
        if entry is not None:
            waiters, timer = entry
            waiters.discard(waiter)
            if not waiters:
                del self._timeouts[waiter.step]
                if timer.active():
                    timer.cancel()

"""Presence: online / unavailable / offline, status messages, idle detection and presence in ``/sync``.

Spec: Client-Server API, "Presence" (``/presence/{userId}/status``, ``m.presence`` events in ``/sync``'s
``presence`` section, ``set_presence`` on ``/sync``).

The latest presence of every user is kept in memory (one small object per user; this is a single process) and
in ``presence_stream``; every change takes a new ``presence`` stream position and wakes the ``/sync`` requests of
the users who share a room with the changed user. Time-based changes (idle -> unavailable, gone -> offline) come
from one periodic sweep over the users who are not offline, not from per-user timers.
"""

from __future__ import annotations

import bisect
import logging
from dataclasses import replace
from typing import Any

from twisted.internet import defer, task

from homeserver.events import Event
from homeserver.http.auth import Requester
from homeserver.http.errors import ForbiddenError, InvalidParamError, NotFoundError
from homeserver.storage.presence import PresenceStore, UserPresence
from homeserver.storage.database import delay_cancellation
from homeserver.streams import StreamToken

logger = logging.getLogger(__name__)

PRESENCE_STATES = ("online", "unavailable", "offline")
IDLE_TIMEOUT_MS = 5 * 60 * 1000  # no activity for this long: online -> unavailable
OFFLINE_TIMEOUT_MS = 10 * 60 * 1000  # neither activity nor /sync for this long: -> offline
SWEEP_INTERVAL_S = 30.0
MAX_STATUS_MSG_LEN = 4096  # characters; the spec sets none, but presence is fanned out to every co-member
# Changes remembered for incremental /sync (positions and users, ascending); older since tokens scan everyone.
_CHANGE_LOG_MAX = 100_000


class _ActivityHook:
    """Persist hook: a local user sending an event is active (spec: "last_active_ago")."""

    def __init__(self, handler: "PresenceHandler") -> None:
        self.handler = handler

    async def prepare(self, event: Event, state_ids: dict[tuple[str, str], str]) -> None:
        """Nothing to prepare."""
        return None

    def persist_txn(self, txn: Any, event: Event, stream_ordering: int, prepared: Any) -> None:
        """Nothing to write: activity is kept in memory."""
        pass

    def after_persist(self, event: Event, stream_ordering: int, prepared: Any) -> None:
        """After commit: the event's sender was active now."""
        self.handler.note_activity(event.sender)


class PresenceHandler:
    """``hs.presence_handler``.

    Public API:
    - ``await set_state(requester, user_id, presence, status_msg) -> None`` (PUT /presence/{userId}/status)
    - ``await get_state(user_id) -> dict`` (GET /presence/{userId}/status)
    - ``await on_sync(user_id, set_presence) -> None`` (called by ``/sync``)
    - ``await get_sync_presence(user_id, since, now) -> list[m.presence event dict]`` (called by sync)
    - ``note_activity(user_id)``: the user did something (sending events calls it through a persist hook)
    - ``await sweep()``: idle/offline transitions (runs every :data:`SWEEP_INTERVAL_S` seconds)
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self.enabled: bool = hs.config.presence_enabled
        self.store: PresenceStore = hs.presence_store
        self._states: dict[str, UserPresence] = self.store.load_all_sync()
        # Writes are rare (state changes only) and must reach memory and the DB in stream order.
        self._write_lock = defer.DeferredLock()
        # (stream_id, user_id) of every change made by this process, ascending: an incremental /sync looks only at
        # the users who changed since its token instead of at everyone it shares a room with. Complete above
        # ``_change_log_floor``.
        self._change_positions: list[int] = []
        self._change_users: list[str] = []
        self._change_log_floor = self.store.stream_ids.current()
        hs.event_creation_handler.add_persist_hook(_ActivityHook(self))
        self._sweeper = task.LoopingCall(lambda: defer.ensureDeferred(self._run_sweep()))
        self._sweeper.clock = hs.clock
        if self.enabled:
            self._sweeper.start(SWEEP_INTERVAL_S, now=False)

    def now_ms(self) -> int:
        """The clock's current time in milliseconds since the epoch."""
        return int(self.clock.seconds() * 1000)

    def _current(self, user_id: str) -> UserPresence:
        return self._states.get(user_id) or UserPresence(user_id)

    # -- reads -----------------------------------------------------------------------------------------------

    def format_content(self, state: UserPresence, now_ms: int) -> dict[str, Any]:
        """The ``content`` of an ``m.presence`` event (also the body of GET /presence/{userId}/status)."""
        content: dict[str, Any] = {"presence": state.state, "currently_active": state.currently_active}
        if state.last_active_ts:
            content["last_active_ago"] = max(0, now_ms - state.last_active_ts)
        if state.status_msg is not None:
            content["status_msg"] = state.status_msg
        return content

    async def get_state(self, user_id: str) -> dict[str, Any]:
        """Presence of ``user_id``; ``{"presence": "offline"}`` if never set. Raises NotFoundError for an unknown
        user."""
        if await self.hs.profile_store.get_profile(user_id) is None:
            raise NotFoundError("Unknown user")
        if not self.enabled:
            return {"presence": "offline"}
        return self.format_content(self._current(user_id), self.now_ms())

    async def get_sync_presence(self, user_id: str, since: StreamToken | None, now: StreamToken,
                                newly_joined_room_ids: frozenset[str] | set[str] = frozenset()
                                ) -> list[dict[str, Any]]:
        """``m.presence`` events of users sharing a room with ``user_id`` (and the user itself) that changed in
        ``(since.presence, now.presence]``; for an initial sync (``since`` None) every such user who is not
        offline without a status message. Members of ``newly_joined_room_ids`` are sent whatever their last
        change, since the user has not seen their presence before."""
        if not self.enabled:
            return []
        lower = since.presence if since is not None else 0
        upper = now.presence
        newcomers: set[str] = set()
        for room_id in newly_joined_room_ids:
            newcomers.update(await self.hs.room_store.get_users_in_room(room_id))
        if since is not None and lower >= upper and not newcomers:
            return []
        now_ms = self.now_ms()
        events = []
        if since is not None and not newcomers and lower >= self._change_log_floor:
            lo = bisect.bisect_right(self._change_positions, lower)
            hi = bisect.bisect_right(self._change_positions, upper)
            changed = set(self._change_users[lo:hi])
            if not changed:
                return []
            shared = await self.hs.room_store.get_users_who_share_room_with(user_id)
            for other in sorted(changed & shared):
                state = self._states.get(other)
                if state is None or not lower < state.stream_id <= upper:
                    continue
                events.append({"type": "m.presence", "sender": other, "content": self.format_content(state, now_ms)})
            return events
        for other in sorted(await self.hs.room_store.get_users_who_share_room_with(user_id)):
            state = self._states.get(other)
            if state is None or state.stream_id > upper:
                continue
            if not lower < state.stream_id and other not in newcomers:
                continue
            if since is None and state.state == "offline" and state.status_msg is None:
                continue
            events.append({"type": "m.presence", "sender": other, "content": self.format_content(state, now_ms)})
        return events

    # -- writes ----------------------------------------------------------------------------------------------

    async def set_state(self, requester: Requester, user_id: str, presence: Any, status_msg: Any) -> None:
        """Set ``presence`` ("online"/"unavailable"/"offline") and ``status_msg`` (None clears it).

        Raises ForbiddenError (403) for another user, InvalidParamError (400) for a bad presence or status_msg.
        Does nothing when presence is disabled in the config.
        """
        if requester.user_id != user_id:
            raise ForbiddenError("You may only set your own presence")
        if presence not in PRESENCE_STATES:
            raise InvalidParamError(f"presence must be one of {', '.join(PRESENCE_STATES)}")
        if status_msg is not None and not isinstance(status_msg, str):
            raise InvalidParamError("status_msg must be a string")
        if status_msg is not None and len(status_msg) > MAX_STATUS_MSG_LEN:
            raise InvalidParamError(f"status_msg is too long (at most {MAX_STATUS_MSG_LEN} characters)")
        if not self.enabled:
            return
        now = self.now_ms()

        def change(old: UserPresence) -> UserPresence:
            new = replace(old, state=presence, status_msg=status_msg, currently_active=presence == "online")
            if presence == "online":
                new.last_active_ts = now
            return new

        await self._update([user_id], change)

    async def on_sync(self, user_id: str, set_presence: str) -> None:
        """A ``/sync`` with ``set_presence`` started: ``online`` brings an offline user online, ``unavailable``
        marks an online or offline user unavailable, ``offline`` leaves presence alone (spec: ``set_presence``)."""
        if not self.enabled or set_presence == "offline":
            return
        now = self.now_ms()
        current = self._states.get(user_id)
        if current is not None:
            current.last_user_sync_ts = now  # memory only: it decides the offline timeout, nobody sees it
        state = current.state if current is not None else "offline"
        if set_presence == "online" and state == "offline":
            await self._update([user_id], lambda old: replace(
                old, state="online", last_active_ts=now, last_user_sync_ts=now, currently_active=True))
        elif set_presence == "unavailable" and state in ("online", "offline"):
            await self._update([user_id], lambda old: replace(
                old, state="unavailable", last_user_sync_ts=now, currently_active=False))
        elif current is None:
            self._states[user_id] = UserPresence(user_id, last_user_sync_ts=now)

    def note_activity(self, user_id: str) -> None:
        """``user_id`` acted (sent an event): refresh ``last_active_ts``; an idle or offline user comes online."""
        if not self.enabled or not user_id.endswith(":" + self.hs.hostname):
            return
        now = self.now_ms()
        current = self._states.get(user_id)
        if current is not None and current.state == "online" and current.currently_active:
            current.last_active_ts = now  # memory only: no one needs a stream update for a fresher timestamp
            return
        d = defer.ensureDeferred(self._update([user_id], lambda old: replace(
            old, state="online", last_active_ts=now, currently_active=True)))
        d.addErrback(lambda f: logger.error("presence activity update of %s failed: %s", user_id, f.value))

    async def sweep(self) -> None:
        """Online users without activity for :data:`IDLE_TIMEOUT_MS` become unavailable; users with neither
        activity nor ``/sync`` for :data:`OFFLINE_TIMEOUT_MS` become offline."""
        now = self.now_ms()
        due = sorted(u for u, s in self._states.items() if _timed_out_state(s, now) is not None)
        if not due:
            return

        def change(old: UserPresence) -> UserPresence:
            # Re-checked under the write lock: the user may have acted since the scan.
            target = _timed_out_state(old, now)
            return old if target is None else replace(old, state=target, currently_active=False)

        await self._update(due, change)

    async def _run_sweep(self) -> None:
        try:
            await self.sweep()
        except Exception:  # noqa: BLE001 - a failed sweep is retried at the next tick; the loop must go on
            logger.exception("presence sweep failed")

    def _update(self, user_ids: list[str], change: Any) -> "defer.Deferred[None]":
        """Apply ``change(old) -> new`` to each user under the write lock, persist with new stream positions,
        then update memory and wake the users who share a room with each changed user. Runs to the end even if
        the caller is cancelled meanwhile (a ``/sync`` whose client went away): stored and in-memory presence
        never disagree."""
        return delay_cancellation(defer.ensureDeferred(self._update_now(user_ids, change)))

    async def _update_now(self, user_ids: list[str], change: Any) -> None:
        await self._write_lock.acquire()
        try:
            gen = self.store.stream_ids
            positions = gen.allocate_many(len(user_ids))
            try:
                new_states = [replace(change(self._current(u)), stream_id=p) for u, p in zip(user_ids, positions)]
                await self.store.upsert_presence(new_states)
                for state in new_states:
                    self._states[state.user_id] = state
                    self._change_positions.append(state.stream_id)
                    self._change_users.append(state.user_id)
                if len(self._change_positions) > 2 * _CHANGE_LOG_MAX:
                    cut = len(self._change_positions) - _CHANGE_LOG_MAX
                    self._change_log_floor = self._change_positions[cut - 1]
                    del self._change_positions[:cut]
                    del self._change_users[:cut]
            finally:
                for p in positions:
                    gen.mark_done(p)
        finally:
            self._write_lock.release()
        for state in new_states:
            users = await self.hs.room_store.get_users_who_share_room_with(state.user_id)
            self.hs.notifier.notify("presence", state.stream_id, users=users)


def _timed_out_state(state: UserPresence, now_ms: int) -> str | None:
    """The state ``state`` falls to at ``now_ms`` through inactivity, or None if it stays as it is."""
    if state.state == "offline":
        return None
    if now_ms - max(state.last_active_ts, state.last_user_sync_ts) > OFFLINE_TIMEOUT_MS:
        return "offline"
    if state.state == "online" and now_ms - state.last_active_ts > IDLE_TIMEOUT_MS:
        return "unavailable"
    return None

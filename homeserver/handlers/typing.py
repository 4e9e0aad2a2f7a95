"""Typing notifications, kept in memory (they expire within seconds; a restart forgets them, as intended).

Spec: Client-Server API "Typing Notifications". Each change advances the ``typing`` stream and wakes the room.
"""

from __future__ import annotations

from typing import Any

from homeserver.streams import StreamIdGenerator

MAX_TIMEOUT_MS = 120_000


class TypingHandler:
    """Who is typing in which room, in memory with per-user expiry timers; each change advances the ``typing``
    stream (positions seeded from the wall clock in ms) and wakes the room. Spec: Client-Server API "Typing
    Notifications".
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.clock = hs.clock
        self._typing: dict[str, dict[str, float]] = {}  # room_id -> user_id -> expiry (s)
        self._room_serial: dict[str, int] = {}
        self._timers: dict[tuple[str, str], Any] = {}
        # Typing is not persisted, so after a restart its positions must still exceed those in the sync tokens
        # clients hold: start from the wall clock (ms), which outruns any earlier run's count of changes.
        self.stream_ids = StreamIdGenerator(int(self.clock.seconds() * 1000))
        hs.stream_positions.register("typing", self.stream_ids)

    def set_typing(self, room_id: str, user_id: str, typing: bool, timeout_ms: int = 30_000) -> None:
        """Start (for ``timeout_ms``, capped at 120 s) or stop ``user_id`` typing in ``room_id``."""
        users = self._typing.setdefault(room_id, {})
        key = (room_id, user_id)
        timer = self._timers.pop(key, None)
        if timer is not None and timer.active():
            timer.cancel()
        was_typing = user_id in users
        if typing:
            timeout_ms = max(0, min(int(timeout_ms), MAX_TIMEOUT_MS))
            users[user_id] = self.clock.seconds() + timeout_ms / 1000
            self._timers[key] = self.clock.callLater(timeout_ms / 1000, self.set_typing, room_id, user_id, False)
            if not was_typing:
                self._changed(room_id)
        elif was_typing:
            del users[user_id]
            self._changed(room_id)

    def _changed(self, room_id: str) -> None:
        position = self.stream_ids.allocate()
        self.stream_ids.mark_done(position)
        self._room_serial[room_id] = position
        self.hs.notifier.notify("typing", position, rooms=[room_id])

    def rooms_changed_since(self, position: int) -> list[str]:
        """Rooms whose typing list changed after ``position`` of the ``typing`` stream."""
        return [room_id for room_id, pos in self._room_serial.items() if pos > position]

    def typing_users(self, room_id: str) -> list[str]:
        """User IDs typing in ``room_id`` now, sorted."""
        return sorted(self._typing.get(room_id, {}))

    def changed_since(self, room_id: str, position: int) -> bool:
        """True when ``room_id``'s typing list changed after ``position`` of the ``typing`` stream."""
        return self._room_serial.get(room_id, 0) > position

    def get_typing_event(self, room_id: str) -> dict[str, Any]:
        """The ``m.typing`` ephemeral event for ``/sync``."""
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

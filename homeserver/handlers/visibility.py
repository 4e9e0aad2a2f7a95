"""History visibility: which events a user may see (``/messages``, ``/context``, ``/event``, ``/sync``,
``/members``, ``/state``, relations, search).

Spec: Client-Server API "Room History Visibility". For each event the rule in force is the room's
``m.room.history_visibility`` just before the event, applied to the user's membership just before the event:
- ``world_readable``: everyone;
- ``shared``: members, and everyone who joins later (a user joined at the event, or with a join after it);
- ``invited``: as ``shared`` from the user's invite on (membership ``invite`` or ``join`` at the event);
- ``joined``: only while joined.
A user's own membership events are always visible to them.
"""

from __future__ import annotations

import bisect
from typing import Any, Iterable

from homeserver.events import Event
from homeserver.http.errors import ForbiddenError


class VisibilityHandler:
    """Which events a user may see under ``m.room.history_visibility`` and their membership, on every read path.
    Spec: Client-Server API "Room History Visibility" (see the module docstring).
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.room_store = hs.room_store
        self.event_store = hs.event_store

    async def get_ignored_users(self, user_id: str) -> set[str]:
        """Users in ``user_id``'s ``m.ignored_user_list`` account data (spec: "Ignoring Users")."""
        store = getattr(self.hs, "account_data_store", None)
        if store is None:
            return set()
        content = await store.get_account_data(user_id, "", "m.ignored_user_list")
        ignored = content.get("ignored_users") if isinstance(content, dict) else None
        return set(ignored) if isinstance(ignored, dict) else set()

    @staticmethod
    def drop_ignored(events: list[Event], ignored: set[str]) -> list[Event]:
        """``events`` without the messages of ignored senders (their state events stay: they shape the room)."""
        if not ignored:
            return events
        return [e for e in events if e.sender not in ignored or e.is_state()]

    async def _visibility_history(self, room_id: str) -> tuple[list[int], list[str]]:
        entries = await self.room_store.get_state_history(room_id, "m.room.history_visibility", "")
        positions: list[int] = []
        values: list[str] = []
        events = await self.event_store.get_events([e for _, e in entries])
        for pos, event_id in entries:
            ev = events.get(event_id)
            value = ev.content.get("history_visibility") if ev is not None else None
            positions.append(pos)
            values.append(value if isinstance(value, str) else "shared")
        return positions, values

    async def filter_events_for_user(self, user_id: str, events: list[Event]) -> list[Event]:
        """The events of ``events`` that ``user_id`` may see, in the same order."""
        if not events:
            return events
        by_room: dict[str, list[Event]] = {}
        for e in events:
            by_room.setdefault(e.room_id, []).append(e)
        allowed: set[str] = set()
        for room_id, room_events in by_room.items():
            history = await self.room_store.get_membership_history(room_id, user_id)
            if history and history[-1][1] == "join" and history[-1][0] < min(
                    e.internal_metadata.get("stream_ordering", 0) for e in room_events):
                # Joined before every one of these events and still joined: membership "join" at each of
                # them, which every history visibility allows (the common /sync case).
                allowed.update(e.event_id for e in room_events)
                continue
            vis_pos, vis_val = await self._visibility_history(room_id)
            m_pos = [h[0] for h in history]
            join_positions = [h[0] for h in history if h[1] == "join"]
            last_join = join_positions[-1] if join_positions else -1
            for e in room_events:
                pos = e.internal_metadata.get("stream_ordering", 0)
                if e.type == "m.room.member" and e.state_key == user_id:
                    allowed.add(e.event_id)
                    continue
                i = bisect.bisect_left(vis_pos, pos)
                visibility = vis_val[i - 1] if i > 0 else "shared"
                if visibility == "world_readable":
                    allowed.add(e.event_id)
                    continue
                j = bisect.bisect_left(m_pos, pos)
                membership = history[j - 1][1] if j > 0 else None
                if membership == "join":
                    allowed.add(e.event_id)
                elif visibility == "shared" and last_join > pos:
                    allowed.add(e.event_id)
                elif visibility == "invited" and (membership == "invite" or
                                                  (last_join > pos and _invited_before(history, pos))):
                    allowed.add(e.event_id)
        return [e for e in events if e.event_id in allowed]

    async def check_user_can_see_room(self, user_id: str, room_id: str) -> str | None:
        """Whether ``user_id`` may read ``room_id``'s timeline and state at all (``/messages``, ``/context``,
        ``/event``, ``/state``, ``/members``, relations, ``timestamp_to_event``).

        Returns ``"join"`` for a member, ``"leave"``/``"ban"`` for a former member (who reads up to
        :meth:`visible_up_to`), or None for anyone else in a ``world_readable`` room. Raises ForbiddenError (403)
        for a user who is not and never was joined (invitees included: they get the stripped state of ``/sync``,
        as in Synapse), and for a former member who forgot the room (``POST /forget``: it is as if they had
        never joined) unless the room is world-readable.
        """
        membership = await self.room_store.get_membership(room_id, user_id)
        if membership == "join":
            return membership
        if membership in ("leave", "ban"):
            history = await self.room_store.get_membership_history(room_id, user_id)
            if any(m == "join" for _, m in history) and not await self._forgotten(user_id, room_id):
                return membership
        if await self._world_readable(room_id):
            return None
        raise ForbiddenError("You are not in this room")

    async def _forgotten(self, user_id: str, room_id: str) -> bool:
        # Forgotten rooms are exactly the left/banned ones the "not forgotten" listing leaves out (a new
        # membership event resets the flag).
        kept = await self.room_store.get_rooms_with_membership(user_id, ("leave", "ban"))
        return not any(r[0] == room_id for r in kept)

    async def _world_readable(self, room_id: str) -> bool:
        ev = await self.room_store.get_current_state_event(room_id, "m.room.history_visibility", "")
        return ev is not None and ev.content.get("history_visibility") == "world_readable"

    async def visible_up_to(self, user_id: str, room_id: str) -> int | None:
        """For a user who left or was banned: the stream position of that leave (they see nothing after it);
        None if they are joined or the room is world-readable (no bound: per-event rules decide)."""
        membership = await self.room_store.get_membership(room_id, user_id)
        if membership == "join" or await self._world_readable(room_id):
            return None
        history = await self.room_store.get_membership_history(room_id, user_id)
        return history[-1][0] if history else 0


def _invited_before(history: Iterable[tuple[int, str]], pos: int) -> bool:
    return any(p < pos and m == "invite" for p, m in history)

"""Rooms, their current state and memberships, with in-memory caches kept in step by the event persister.

The caches (current state map, joined members, each user's rooms, each room's latest event) are filled lazily
from the database and updated by :meth:`RoomStore.on_event_persisted`, which runs on the reactor thread right
after an event's transaction commits and while the room's send lock is held. Nothing else writes these tables,
so the caches cannot go stale within the process.
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from typing import Any, Hashable, Iterable

from homeserver.events import KNOWN_ROOM_VERSIONS, Event, RoomVersion
from homeserver.storage.database import Database, Txn

StateKey = tuple[str, str]


# Upper bounds on the per-(room, user) and per-state-key history caches: past them the cache starts over (it is
# refilled from the database on demand), so memory stays bounded however many rooms and users there are.
_HISTORY_CACHE_MAX = 200_000
_USER_MEMBERSHIPS_CACHE_MAX = 100_000
# At most this many users' joined-room sets are cached; the least recently read is dropped first.
_USER_ROOMS_CACHE_MAX = 100_000
# At most this many rooms' current state (event IDs by type and state key, joined and invited members) are cached;
# the least recently read is dropped first (a few KiB to a few hundred KiB per room, by its state's size).
_ROOM_CACHE_MAX = 20_000


class _FillGuard:
    """Tells whether a cache fill raced with a write to the same key.

    A fill calls :meth:`begin` before its database read and :meth:`end` when the rows are back on the reactor;
    the persister calls :meth:`note_write` after each commit that changes the key. ``end`` returns False when a
    write was noted in between: the read may predate that commit (on PostgreSQL a read on another connection can
    start before a commit and finish after its cache update ran), so the fill must not be stored. Only keys with
    a fill in flight are tracked, so memory is bounded by the number of concurrent fills.
    """

    __slots__ = ("_inflight",)

    def __init__(self) -> None:
        # key -> [fills in flight, writes noted while any was in flight]
        self._inflight: dict[Hashable, list[int]] = {}

    def begin(self, key: Hashable) -> int:
        """Start a fill of ``key``; returns the token to hand to :meth:`end`."""
        entry = self._inflight.get(key)
        if entry is None:
            entry = self._inflight[key] = [0, 0]
        entry[0] += 1
        return entry[1]

    def note_write(self, key: Hashable) -> None:
        """A committed write changed ``key``'s data (call after commit, on the reactor)."""
        entry = self._inflight.get(key)
        if entry is not None:
            entry[1] += 1

    def end(self, key: Hashable, token: int) -> bool:
        """Finish a fill started with ``token``; True if no write to ``key`` was noted since (safe to store)."""
        entry = self._inflight[key]
        clean = entry[1] == token
        entry[0] -= 1
        if entry[0] == 0:
            del self._inflight[key]
        return clean


class _RoomCache:
    __slots__ = ("state", "joined", "invited", "latest_event_id", "latest_depth", "room_version",
                 "last_state_stream")

    def __init__(self, room_version: RoomVersion, state: dict[StateKey, str], latest: tuple[str, int] | None,
                 joined: set[str], invited: set[str], last_state_stream: int = 0) -> None:
        self.room_version = room_version
        self.state = state
        self.joined = joined
        self.invited = invited
        self.latest_event_id = latest[0] if latest else None
        self.latest_depth = latest[1] if latest else 0
        # Stream position of the room's newest state event: state "at" any later position is the current state.
        self.last_state_stream = last_state_stream


class RoomStore:
    """Room metadata, current state, memberships and aliases."""

    def __init__(self, db: Database, event_store: Any) -> None:
        self.db = db
        self.event_store = event_store
        # room_id -> current state, least recently read first (bounded by _ROOM_CACHE_MAX, see _cache_room).
        self._rooms: OrderedDict[str, _RoomCache] = OrderedDict()
        # user_id -> joined rooms, least recently read first (bounded by _USER_ROOMS_CACHE_MAX).
        self._user_rooms: OrderedDict[str, frozenset[str]] = OrderedDict()
        # Equal room sets are one object (see _shared_rooms): the members of a team's rooms have the same set.
        self._room_sets: dict[frozenset[str], frozenset[str]] = {}
        # Fills of _rooms (by room_id) and _user_rooms (by user_id) that raced with a persisted event are not
        # stored: on_event_persisted may already have run and would not patch a copy stored after it.
        self._room_fills = _FillGuard()
        self._user_room_fills = _FillGuard()
        # room_id -> last stream_ordering of an event in the room (every room, loaded at start).
        rows = db.run_interaction_sync(
            "room_last_stream",
            lambda t: t.execute("SELECT room_id, MAX(stream_ordering) FROM events GROUP BY room_id").fetchall(),
        )
        self._room_last_stream: dict[str, int] = {r[0]: int(r[1]) for r in rows}
        # Position of the newest membership event of any room (lets /sync skip looking for membership changes).
        row = db.run_interaction_sync(
            "last_membership_stream",
            lambda t: t.execute("SELECT COALESCE(MAX(stream_ordering), 0) FROM room_memberships").fetchone(),
        )
        self._last_membership_stream = int(row[0])
        # Read-through caches of membership rows, filled from the database and kept in step by
        # on_event_persisted. A fill whose query raced with a write (the write counter moved while it ran) is
        # used once but not stored, so a cache never holds data older than a persisted event.
        self._member_writes = 0
        self._state_writes = 0
        self._user_memberships: dict[str, dict[str, tuple[str, str, int, bool]]] = {}
        self._membership_history: dict[tuple[str, str], list[tuple[int, str]]] = {}
        self._state_history: dict[tuple[str, str, str], list[tuple[int, str]]] = {}

    # -- cache loading -----------------------------------------------------------------------------------------

    async def _room(self, room_id: str) -> _RoomCache | None:
        cached = self._rooms.get(room_id)
        if cached is not None:
            self._rooms.move_to_end(room_id)
            return cached

        def _txn(txn: Txn) -> _RoomCache | None:
            txn.execute("SELECT room_version FROM rooms WHERE room_id = ?", (room_id,))
            row = txn.fetchone()
            if row is None:
                return None
            txn.execute("SELECT type, state_key, event_id, membership FROM current_state_events WHERE room_id = ?",
                        (room_id,))
            state: dict[StateKey, str] = {}
            joined: set[str] = set()
            invited: set[str] = set()
            for etype, skey, event_id, membership in txn.fetchall():
                state[(etype, skey)] = event_id
                if etype == "m.room.member":
                    if membership == "join":
                        joined.add(skey)
                    elif membership == "invite":
                        invited.add(skey)
            txn.execute("SELECT event_id, depth FROM events WHERE room_id = ? ORDER BY stream_ordering DESC LIMIT 1",
                        (room_id,))
            latest = txn.fetchone()
            txn.execute("SELECT COALESCE(MAX(stream_ordering), 0) FROM current_state_events WHERE room_id = ?",
                        (room_id,))
            last_state = int(txn.fetchone()[0])
            return _RoomCache(KNOWN_ROOM_VERSIONS[row[0]], state, (latest[0], int(latest[1])) if latest else None,
                              joined, invited, last_state)

        token = self._room_fills.begin(room_id)
        try:
            loaded = await self.db.run_interaction("load_room", _txn)
        finally:
            clean = self._room_fills.end(room_id, token)
        if loaded is not None and clean and room_id not in self._rooms:
            self._cache_room(room_id, loaded)
        return self._rooms.get(room_id, loaded)

    def _cache_room(self, room_id: str, room: _RoomCache) -> None:
        """Cache ``room`` as the most recently read, dropping the least recently read rooms past
        ``_ROOM_CACHE_MAX``. A dropped room is loaded again from the database when next read (what on_event_persisted
        would have patched is committed by then). Never dropped: a room being created, whose create event is not
        persisted yet (no event, so nothing in the database to load it from); the cache then stays over the bound
        by those few until a later call."""
        self._rooms[room_id] = room
        excess = len(self._rooms) - _ROOM_CACHE_MAX
        if excess <= 0:
            return
        drop = []
        for candidate_id, candidate in self._rooms.items():
            if candidate.latest_event_id is not None:
                drop.append(candidate_id)
                if len(drop) == excess:
                    break
        for candidate_id in drop:
            del self._rooms[candidate_id]

    def new_room(self, room_id: str, room_version: RoomVersion) -> None:
        """Start the cache of a room being created (before its create event is persisted)."""
        self._cache_room(room_id, _RoomCache(room_version, {}, None, set(), set()))

    def forget_new_room(self, room_id: str) -> None:
        """Drop the cache of a room whose creation failed before anything was persisted."""
        self._rooms.pop(room_id, None)

    def on_event_persisted(self, event: Event, stream_ordering: int) -> None:
        """Update caches after ``event`` committed at ``stream_ordering``."""
        room = self._rooms.get(event.room_id)
        self._room_last_stream[event.room_id] = stream_ordering
        self._room_fills.note_write(event.room_id)
        if room is not None:
            room.latest_event_id = event.event_id
            room.latest_depth = event.depth
            if event.is_state():
                room.state[(event.type, event.state_key)] = event.event_id  # type: ignore[index]
                room.last_state_stream = stream_ordering
        if event.is_state():
            self._state_writes += 1
            history = self._state_history.get((event.room_id, event.type, event.state_key))  # type: ignore[arg-type]
            if history is not None:
                history.append((stream_ordering, event.event_id))
        if event.type == "m.room.member" and event.state_key is not None:
            user_id, membership = event.state_key, event.membership
            if isinstance(membership, str):
                self._member_writes += 1
                self._last_membership_stream = max(self._last_membership_stream, stream_ordering)
                m_history = self._membership_history.get((event.room_id, user_id))
                if m_history is not None:
                    m_history.append((stream_ordering, membership))
                current = self._user_memberships.get(user_id)
                if current is not None:
                    current[event.room_id] = (membership, event.event_id, stream_ordering, False)
            if room is not None:
                room.joined.discard(user_id)
                room.invited.discard(user_id)
                if membership == "join":
                    room.joined.add(user_id)
                elif membership == "invite":
                    room.invited.add(user_id)
            self._user_room_fills.note_write(user_id)
            rooms = self._user_rooms.get(user_id)
            if rooms is not None:
                if membership == "join":
                    self._user_rooms[user_id] = self._shared_rooms(rooms | {event.room_id})
                else:
                    self._user_rooms[user_id] = self._shared_rooms(rooms - {event.room_id})

    # -- rooms -------------------------------------------------------------------------------------------------

    async def room_exists(self, room_id: str) -> bool:
        """True when this server knows ``room_id``."""
        return await self._room(room_id) is not None

    async def get_room_version(self, room_id: str) -> RoomVersion | None:
        """The room's version, or None for an unknown room."""
        room = await self._room(room_id)
        return room.room_version if room else None

    async def get_latest_event(self, room_id: str) -> tuple[str | None, int]:
        """``(event_id, depth)`` of the room's newest event (``(None, 0)`` for a room being created)."""
        room = await self._room(room_id)
        if room is None:
            return None, 0
        return room.latest_event_id, room.latest_depth

    def get_room_last_stream(self, room_id: str) -> int:
        """Stream position of the room's newest event (0 if none)."""
        return self._room_last_stream.get(room_id, 0)

    async def get_last_state_stream(self, room_id: str) -> int:
        """Stream position of the room's newest state event (0 for an unknown room)."""
        room = await self._room(room_id)
        return room.last_state_stream if room is not None else 0

    def get_last_membership_stream(self) -> int:
        """Stream position of the newest membership event in any room (0 if none)."""
        return self._last_membership_stream

    async def set_room_is_public(self, room_id: str, is_public: bool) -> None:
        """Publish the room in, or remove it from, the public room directory."""
        await self.db.execute("set_room_is_public", "UPDATE rooms SET is_public = ? WHERE room_id = ?",
                              1 if is_public else 0, room_id)

    async def get_room_is_public(self, room_id: str) -> bool | None:
        """Whether the room is in the public room directory; None for an unknown room."""
        rows = await self.db.execute("get_room_is_public", "SELECT is_public FROM rooms WHERE room_id = ?", room_id)
        return bool(rows[0][0]) if rows else None

    async def get_public_room_ids(self) -> list[str]:
        """IDs of every room in the public room directory (unordered)."""
        rows = await self.db.execute("get_public_rooms", "SELECT room_id FROM rooms WHERE is_public = 1")
        return [r[0] for r in rows]

    # -- current state -----------------------------------------------------------------------------------------

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        """``{(type, state_key): event_id}`` of the room's current state (a copy); empty for unknown rooms."""
        room = await self._room(room_id)
        return dict(room.state) if room else {}

    async def get_current_state(self, room_id: str, types: Iterable[StateKey] | None = None) -> dict[StateKey, Event]:
        """Current state events, all or only ``types``."""
        room = await self._room(room_id)
        if room is None:
            return {}
        if types is None:
            wanted = dict(room.state)
        else:
            wanted = {k: room.state[k] for k in types if k in room.state}
        events = await self.event_store.get_events(wanted.values())
        return {k: events[v] for k, v in wanted.items() if v in events}

    async def get_current_state_event(self, room_id: str, etype: str, state_key: str) -> Event | None:
        """The current state event ``(etype, state_key)`` of the room, or None (unknown room or no such state)."""
        room = await self._room(room_id)
        if room is None:
            return None
        event_id = room.state.get((etype, state_key))
        if event_id is None:
            return None
        return await self.event_store.get_event(event_id)

    async def get_state_ids_at(self, room_id: str, stream_ordering: int) -> dict[StateKey, str]:
        """State of the room after the event at ``stream_ordering`` (the room's history is linear, so this is the
        latest state event per key at or before that position)."""
        room = await self._room(room_id)
        if room is None:
            return {}
        if stream_ordering >= self._room_last_stream.get(room_id, 0) or stream_ordering >= room.last_state_stream:
            return dict(room.state)

        def _txn(txn: Txn) -> dict[StateKey, str]:
            txn.execute(
                "SELECT DISTINCT type, state_key FROM events WHERE room_id = ? AND state_key IS NOT NULL "
                "AND stream_ordering > ?",
                (room_id, stream_ordering),
            )
            changed = txn.fetchall()
            result = dict(room.state)
            for etype, skey in changed:
                txn.execute(
                    "SELECT event_id FROM events WHERE room_id = ? AND type = ? AND state_key = ? "
                    "AND stream_ordering <= ? ORDER BY stream_ordering DESC LIMIT 1",
                    (room_id, etype, skey, stream_ordering),
                )
                row = txn.fetchone()
                if row is None:
                    result.pop((etype, skey), None)
                else:
                    result[(etype, skey)] = row[0]
            return result

        return await self.db.run_interaction("get_state_ids_at", _txn)

    async def get_state_at(self, room_id: str, stream_ordering: int) -> dict[StateKey, Event]:
        """As :meth:`get_state_ids_at`, with the events: ``{(type, state_key): Event}``."""
        ids = await self.get_state_ids_at(room_id, stream_ordering)
        events = await self.event_store.get_events(ids.values())
        return {k: events[v] for k, v in ids.items() if v in events}

    # -- memberships -------------------------------------------------------------------------------------------

    async def get_users_in_room(self, room_id: str) -> frozenset[str]:
        """Joined members."""
        room = await self._room(room_id)
        return frozenset(room.joined) if room else frozenset()

    async def get_invited_users(self, room_id: str) -> frozenset[str]:
        """User IDs whose current membership in the room is ``invite`` (empty for an unknown room)."""
        room = await self._room(room_id)
        return frozenset(room.invited) if room else frozenset()

    async def get_member_ids(self, room_id: str) -> dict[str, str]:
        """``{user_id: member_event_id}`` of every member event in current state."""
        room = await self._room(room_id)
        if room is None:
            return {}
        return {skey: eid for (etype, skey), eid in room.state.items() if etype == "m.room.member"}

    async def get_rooms_for_user(self, user_id: str) -> frozenset[str]:
        """Rooms ``user_id`` is joined to (cached; kept in step by :meth:`on_event_persisted`)."""
        rooms = self._user_rooms.get(user_id)
        if rooms is not None:
            self._user_rooms.move_to_end(user_id)
            return rooms
        token = self._user_room_fills.begin(user_id)
        try:
            rows = await self.db.execute(
                "get_rooms_for_user",
                "SELECT room_id FROM local_current_membership WHERE user_id = ? AND membership = 'join'",
                user_id,
            )
        finally:
            clean = self._user_room_fills.end(user_id, token)
        rooms = self._shared_rooms(frozenset(r[0] for r in rows))
        cached = self._user_rooms.get(user_id)
        if cached is not None:
            # Stored by a fill that finished first (and kept up to date since): newer than or as new as ours.
            return cached
        if clean:
            self._user_rooms[user_id] = rooms
            if len(self._user_rooms) > _USER_ROOMS_CACHE_MAX:
                self._user_rooms.popitem(last=False)
        return rooms

    def _shared_rooms(self, rooms: frozenset[str]) -> frozenset[str]:
        """``rooms``, or the equal set already cached for another user (each user's entry of the rooms-for-user
        cache would otherwise be a set of its own, 216 bytes and up). Bounded by starting over."""
        if len(self._room_sets) >= _USER_ROOMS_CACHE_MAX:
            self._room_sets.clear()
        return self._room_sets.setdefault(rooms, rooms)

    async def get_users_who_share_room_with(self, user_id: str) -> set[str]:
        """Users joined to any room ``user_id`` is joined to (including ``user_id``)."""
        users = {user_id}
        for room_id in await self.get_rooms_for_user(user_id):
            users.update(await self.get_users_in_room(room_id))
        return users

    async def get_membership(self, room_id: str, user_id: str) -> str | None:
        """The user's current membership in the room (``join``, ``invite``, ``leave``, ``ban``, ``knock``), or None if
        the user never had one or the room is unknown.
        """
        room = await self._room(room_id)
        if room is None:
            return None
        if user_id in room.joined:
            return "join"
        if user_id in room.invited:
            return "invite"
        event_id = room.state.get(("m.room.member", user_id))
        if event_id is None:
            return None
        event = await self.event_store.get_event(event_id)
        return event.membership if event else None

    async def get_rooms_with_membership(self, user_id: str,
                                        memberships: Iterable[str]) -> list[tuple[str, str, str, int]]:
        """``[(room_id, membership, event_id, stream_ordering)]`` for the user's current memberships in
        ``memberships``, not forgotten."""
        wanted = set(memberships)
        current = self._user_memberships.get(user_id)
        if current is None:
            writes = self._member_writes

            def _txn(txn: Txn) -> dict[str, tuple[str, str, int, bool]]:
                txn.execute(
                    "SELECT room_id, membership, event_id, stream_ordering, forgotten FROM local_current_membership "
                    "WHERE user_id = ?",
                    (user_id,),
                )
                return {r[0]: (r[1], r[2], int(r[3]), bool(r[4])) for r in txn.fetchall()}

            current = await self.db.run_interaction("get_rooms_with_membership", _txn)
            if writes == self._member_writes:
                if len(self._user_memberships) >= _USER_MEMBERSHIPS_CACHE_MAX:
                    self._user_memberships.clear()
                self._user_memberships[user_id] = current
        return [(room_id, m, event_id, pos) for room_id, (m, event_id, pos, forgotten) in current.items()
                if not forgotten and m in wanted]

    async def get_membership_changes(self, user_id: str, from_pos: int, to_pos: int) -> list[tuple[str, str, int]]:
        """``[(room_id, membership, stream_ordering)]`` of the user's membership events in ``(from_pos, to_pos]``,
        oldest first."""
        rows = await self.db.execute(
            "get_membership_changes",
            "SELECT room_id, membership, stream_ordering FROM room_memberships WHERE user_id = ? "
            "AND stream_ordering > ? AND stream_ordering <= ? ORDER BY stream_ordering",
            user_id, from_pos, to_pos,
        )
        return [(r[0], r[1], int(r[2])) for r in rows]

    async def get_membership_history(self, room_id: str, user_id: str) -> list[tuple[int, str]]:
        """``[(stream_ordering, membership)]`` of every membership event of the user in the room, oldest first."""
        key = (room_id, user_id)
        cached = self._membership_history.get(key)
        if cached is not None:
            return list(cached)
        writes = self._member_writes
        rows = await self.db.execute(
            "get_membership_history",
            "SELECT stream_ordering, membership FROM room_memberships WHERE room_id = ? AND user_id = ? "
            "ORDER BY stream_ordering",
            room_id, user_id,
        )
        history = [(int(r[0]), r[1]) for r in rows]
        if writes == self._member_writes:
            if len(self._membership_history) >= _HISTORY_CACHE_MAX:
                self._membership_history.clear()
            self._membership_history[key] = history
        return list(history)

    async def get_state_history(self, room_id: str, etype: str, state_key: str = "") -> list[tuple[int, str]]:
        """``[(stream_ordering, event_id)]`` of every state event of one key, oldest first."""
        key = (room_id, etype, state_key)
        cached = self._state_history.get(key)
        if cached is not None:
            return list(cached)
        writes = self._state_writes
        rows = await self.db.execute(
            "get_state_history",
            "SELECT stream_ordering, event_id FROM events WHERE room_id = ? AND type = ? AND state_key = ? "
            "ORDER BY stream_ordering",
            room_id, etype, state_key,
        )
        history = [(int(r[0]), r[1]) for r in rows]
        if writes == self._state_writes:
            if len(self._state_history) >= _HISTORY_CACHE_MAX:
                self._state_history.clear()
            self._state_history[key] = history
        return list(history)

    async def forget_room(self, user_id: str, room_id: str) -> None:
        """Mark the room forgotten for ``user_id`` (spec: ``POST /rooms/{roomId}/forget``)."""
        self._member_writes += 1
        try:
            await self.db.execute(
                "forget_room", "UPDATE local_current_membership SET forgotten = 1 WHERE user_id = ? AND room_id = ?",
                user_id, room_id)
        finally:
            # Dropped, not patched: the next read loads the row as committed.
            self._member_writes += 1
            self._user_memberships.pop(user_id, None)

    # -- aliases -----------------------------------------------------------------------------------------------

    async def create_alias(self, alias: str, room_id: str, creator: str) -> bool:
        """Returns False if the alias exists already."""

        def _txn(txn: Txn) -> bool:
            # Atomic on both engines: of concurrent creators exactly one inserts the row.
            txn.execute("INSERT INTO room_aliases (room_alias, room_id, creator) VALUES (?, ?, ?) "
                        "ON CONFLICT (room_alias) DO NOTHING", (alias, room_id, creator))
            return txn.rowcount == 1

        return await self.db.run_interaction("create_alias", _txn)

    async def get_alias(self, alias: str) -> tuple[str, str] | None:
        """``(room_id, creator)`` or None."""
        rows = await self.db.execute("get_alias", "SELECT room_id, creator FROM room_aliases WHERE room_alias = ?",
                                     alias)
        return (rows[0][0], rows[0][1]) if rows else None

    async def delete_alias(self, alias: str) -> None:
        """Delete the room alias ``alias`` (no error if it does not exist)."""
        await self.db.execute("delete_alias", "DELETE FROM room_aliases WHERE room_alias = ?", alias)

    async def get_aliases_for_room(self, room_id: str) -> list[str]:
        """The local aliases pointing at ``room_id``, sorted."""
        rows = await self.db.execute("get_aliases_for_room",
                                     "SELECT room_alias FROM room_aliases WHERE room_id = ? ORDER BY room_alias",
                                     room_id)
        return [r[0] for r in rows]


def membership_at(history: list[tuple[int, str]], stream_ordering: int) -> str | None:
    """The membership in force just before the event at ``stream_ordering``, from a sorted history."""
    positions = [h[0] for h in history]
    i = bisect.bisect_left(positions, stream_ordering)
    return history[i - 1][1] if i > 0 else None

"""Reading and persisting room events.

Persisting an event is one transaction: the event row, its place in current state, membership tables, redaction,
relation and transaction-ID rows. Only after it commits does the stream position advance and do the caches of
:class:`homeserver.storage.rooms.RoomStore` and the notifier learn about it, so a reader never sees a position
whose data is not durable.
"""

from __future__ import annotations

import bisect
import logging
import sys
from collections import OrderedDict
from typing import Any, Iterable

import orjson

from homeserver.events import KNOWN_ROOM_VERSIONS, Event, prune_event
from homeserver.events.event import share_pdu_strings
from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator

logger = logging.getLogger(__name__)

EVENT_COLUMNS = "e.stream_ordering, e.event_id, e.room_id, e.json, r.room_version"
_EVENT_CACHE_SIZE = 50_000
# How many recent invalidations (event ID -> sequence number) are remembered to vet cache fills; a fill that
# started before the oldest remembered one is used but not cached.
_INVALIDATION_LOG_MAX = 10_000
# Recent-events index: at most this many event IDs per room and this many rooms (then it starts over).
_RECENT_PER_ROOM = 256
_RECENT_ROOMS_MAX = 20_000


class _RecentEvents:
    """A room's newest ``(stream_ordering, event_id)`` pairs, ascending; every event of the room with a position
    above ``floor`` is in the list."""

    __slots__ = ("floor", "positions", "event_ids")

    def __init__(self, floor: int) -> None:
        self.floor = floor
        self.positions: list[int] = []
        self.event_ids: list[str] = []

    def append(self, stream_ordering: int, event_id: str) -> None:
        """Add the room's newest event (``stream_ordering`` ascending); past twice ``_RECENT_PER_ROOM`` entries the
        oldest are dropped and ``floor`` raised to the last dropped position.
        """
        self.positions.append(stream_ordering)
        self.event_ids.append(event_id)
        if len(self.positions) > 2 * _RECENT_PER_ROOM:
            cut = len(self.positions) - _RECENT_PER_ROOM
            self.floor = self.positions[cut - 1]
            del self.positions[:cut]
            del self.event_ids[:cut]

    def ids_between(self, from_pos: int, to_pos: int) -> list[str] | None:
        """IDs with ``from_pos < position <= to_pos`` ascending, or None when the list does not cover
        ``from_pos``."""
        if from_pos < self.floor:
            return None
        lo = bisect.bisect_right(self.positions, from_pos)
        hi = bisect.bisect_right(self.positions, to_pos)
        return self.event_ids[lo:hi]


def relation_of(event: Event) -> tuple[str, str, str | None] | None:
    """``(parent_event_id, rel_type, key)`` of the event's relation (``m.relates_to`` with string ``rel_type`` and
    ``event_id``; ``key`` for annotations, else None), or None: what is stored in ``event_relations``. A rich reply
    (``m.in_reply_to`` alone) is not a relation in this sense (spec: "Forming relationships between events")."""
    rel = event.content.get("m.relates_to")
    if not isinstance(rel, dict):
        return None
    rel_type, parent = rel.get("rel_type"), rel.get("event_id")
    if isinstance(rel_type, str) and isinstance(parent, str):
        key = rel.get("key") if isinstance(rel.get("key"), str) else None
        return parent, rel_type, key
    return None


class EventStore:
    """Events by ID (cached), by stream range, and their persistence.

    Every returned :class:`Event` has ``internal_metadata["stream_ordering"]`` (int) and, for redacted events, is
    the pruned copy with ``internal_metadata["redacted_because"]`` set to the redaction's event ID.
    """

    def __init__(self, db: Database, stream_positions: Any) -> None:
        self.db = db
        # The event cache is read and written on the reactor thread only. A fill (a database read of events
        # missing from it) may have read an event before a redaction of it committed and return after that
        # redaction's after_persist invalidated it: such a fill must not be stored, or the unredacted content
        # would be served from memory until evicted. Every invalidation takes the next sequence number; a fill
        # remembers the number current when it started and stores an event only if that event was not
        # invalidated since.
        self._cache: OrderedDict[str, Event] = OrderedDict()
        self._invalidation_seq = 0
        self._invalidated: OrderedDict[str, int] = OrderedDict()
        # Sequence number of the newest invalidation forgotten from ``_invalidated`` (fills older are not stored).
        self._invalidation_floor = 0
        # Events known to be redacted: only their pruned copy (with ``redacted_because``) may enter the cache.
        self._redacted: OrderedDict[str, None] = OrderedDict()
        row = db.run_interaction_sync(
            "max_stream_ordering",
            lambda t: t.execute("SELECT COALESCE(MAX(stream_ordering), 0) FROM events").fetchone(),
        )
        self.stream_ids = StreamIdGenerator(int(row[0]))
        stream_positions.register("events", self.stream_ids)
        # Events persisted by this process that no relation points to (yet): /sync need not look up bundled
        # aggregations for them. An event leaves the set when a relation to it is persisted (after_persist of
        # the child, before its position is announced).
        self._relation_free: OrderedDict[str, None] = OrderedDict()
        # Per room, the IDs of its newest events in stream order, complete above a floor position: /sync reads
        # a room's new events from here instead of the database. Filled only by after_persist, which runs in
        # each room's stream order (the room's send lock is held).
        self._recent: dict[str, _RecentEvents] = {}

    # -- reading -----------------------------------------------------------------------------------------------

    def _cache_put(self, event: Event) -> None:
        # Reactor thread only. A full copy of an event known to be redacted is refused whatever its source.
        if event.event_id in self._redacted and "redacted_because" not in event.internal_metadata:
            return
        self._cache[event.event_id] = event
        if len(self._cache) > _EVENT_CACHE_SIZE:
            self._cache.popitem(last=False)

    def invalidate(self, event_id: str) -> None:
        """Drop ``event_id`` from the in-memory event cache (e.g. after a redaction rewrote it); a read of it that
        is still in flight will not put its older copy back (see :meth:`_fill_cache`). Reactor thread only."""
        self._invalidation_seq += 1
        self._invalidated.pop(event_id, None)
        self._invalidated[event_id] = self._invalidation_seq
        if len(self._invalidated) > _INVALIDATION_LOG_MAX:
            _, seq = self._invalidated.popitem(last=False)
            self._invalidation_floor = max(self._invalidation_floor, seq)
        self._cache.pop(event_id, None)

    def _fill_cache(self, events: Iterable[Event], started_seq: int) -> None:
        """Cache ``events`` read by a fill that started when the invalidation sequence was ``started_seq``,
        except those invalidated since (their copy may predate the change that invalidated them)."""
        if started_seq == self._invalidation_seq:
            for event in events:
                self._cache_put(event)
            return
        if started_seq < self._invalidation_floor:
            return  # an invalidation after the fill started may have been forgotten: store nothing
        for event in events:
            if self._invalidated.get(event.event_id, 0) <= started_seq:
                self._cache_put(event)

    async def get_event(self, event_id: str, allow_none: bool = True) -> Event | None:
        """The event, or None if unknown (``allow_none``); raises NotFoundError otherwise."""
        events = await self.get_events([event_id])
        event = events.get(event_id)
        if event is None and not allow_none:
            from homeserver.http.errors import NotFoundError

            raise NotFoundError("Event not found")
        return event

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, Event]:
        """``{event_id: Event}`` for the known ones among ``event_ids``."""
        result: dict[str, Event] = {}
        missing = []
        for event_id in event_ids:
            event = self._cache.get(event_id)
            if event is not None:
                result[event_id] = event
            else:
                missing.append(event_id)
        if missing:
            started_seq = self._invalidation_seq
            fetched = await self.db.run_read("get_events", self._fetch_events_txn, missing)
            self._fill_cache(fetched, started_seq)
            for event in fetched:
                result[event.event_id] = event
        return result

    async def get_events_as_list(self, event_ids: list[str]) -> list[Event]:
        """The known events among ``event_ids``, in that order."""
        by_id = await self.get_events(event_ids)
        return [by_id[e] for e in event_ids if e in by_id]

    def _fetch_events_txn(self, txn: Txn, event_ids: list[str]) -> list[Event]:
        out: list[Event] = []
        for i in range(0, len(event_ids), 500):
            chunk = event_ids[i:i + 500]
            clause, params = txn.in_list("e.event_id", chunk)
            txn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id WHERE {clause}",
                params,
            )
            out.extend(self._rows_to_events(txn, txn.fetchall()))
        return out

    def _rows_to_events(self, txn: Txn, rows: list[tuple[Any, ...]]) -> list[Event]:
        # orjson reads an event in about half the time of the json module, and shares its keys between the events
        # it reads (about 25% less memory per cached event). Exact for events: their integers lie within
        # +-(2**53 - 1), checked at creation (orjson would read an integer beyond 64 bits as a float), and their
        # strings are valid UTF-8 (canonical JSON refuses lone surrogates).
        events: list[Event] = []
        for stream_ordering, event_id, _room_id, pdu_json, room_version in rows:
            pdu = share_pdu_strings(orjson.loads(pdu_json))
            unsigned = pdu.pop("unsigned", None)
            event = Event(pdu, KNOWN_ROOM_VERSIONS[room_version], sys.intern(event_id))
            event.internal_metadata["stream_ordering"] = stream_ordering
            if unsigned:
                event.internal_metadata["unsigned"] = unsigned
            events.append(event)
        if not events:
            return events
        ids = [e.event_id for e in events]
        clause, params = txn.in_list("rd.redacts", ids)
        # A redaction only applies within its own room: one sent in room A naming an event of room B is inert.
        txn.execute(f"SELECT rd.redacts, rd.event_id, e.room_id FROM redactions rd "
                    f"JOIN events e ON e.event_id = rd.event_id WHERE {clause} ORDER BY rd.stream_ordering", params)
        room_of = {e.event_id: e.room_id for e in events}
        redacted_by = {r[0]: r[1] for r in txn.fetchall() if room_of.get(r[0]) == r[2]}
        clause, params = txn.in_list("event_id", ids)
        txn.execute(f"SELECT event_id, device_id, txn_id FROM event_txn_ids WHERE {clause}", params)
        txns = {r[0]: (r[1], r[2]) for r in txn.fetchall()}
        out = []
        for event in events:
            if event.event_id in txns:
                event.internal_metadata["device_id"], event.internal_metadata["txn_id"] = txns[event.event_id]
            if event.event_id in redacted_by:
                event = self._redacted_copy(event, redacted_by[event.event_id])
            out.append(event)
        return out

    @staticmethod
    def _redacted_copy(event: Event, redaction_id: str) -> Event:
        pruned = prune_event(event)
        pruned.internal_metadata["redacted_because"] = redaction_id
        unsigned = dict(pruned.internal_metadata.get("unsigned") or {})
        unsigned.pop("prev_content", None)
        pruned.internal_metadata["unsigned"] = unsigned
        return pruned

    async def get_room_events(self, room_id: str, from_pos: int, to_pos: int, limit: int,
                              direction: str = "b") -> list[Event]:
        """Events of ``room_id`` with ``from_pos < stream_ordering <= to_pos``; ``direction`` "b" gives the
        newest ``limit`` newest-first, "f" the oldest ``limit`` oldest-first."""
        order = "DESC" if direction == "b" else "ASC"
        recent = self._recent.get(room_id)
        ids = recent.ids_between(from_pos, to_pos) if recent is not None else None
        if ids is not None:
            ids = ids[::-1][:limit] if direction == "b" else ids[:limit]
            by_id = await self.get_events(ids)
            if len(by_id) == len(ids):
                return [by_id[i] for i in ids]
        # Only the IDs come from the database thread; the events come through get_events, which consults and
        # fills the cache on the reactor (a cache touched from the database thread could be refilled with an
        # event's unredacted copy after its redaction's invalidation).
        rows = await self.db.execute_read(
            "get_room_events",
            f"SELECT event_id FROM events WHERE room_id = ? AND stream_ordering > ? AND stream_ordering <= ? "
            f"ORDER BY stream_ordering {order} LIMIT ?",
            room_id, from_pos, to_pos, limit,
        )
        ids = [r[0] for r in rows]
        by_id = await self.get_events(ids)
        return [by_id[i] for i in ids if i in by_id]

    async def get_events_in_stream_range(self, from_pos: int, to_pos: int, limit: int) -> list[Event]:
        """Events of all rooms with ``from_pos < stream_ordering <= to_pos``, oldest first, at most ``limit``."""

        def _txn(txn: Txn) -> list[Event]:
            txn.execute(
                f"SELECT {EVENT_COLUMNS} FROM events e JOIN rooms r ON r.room_id = e.room_id "
                "WHERE e.stream_ordering > ? AND e.stream_ordering <= ? ORDER BY e.stream_ordering ASC LIMIT ?",
                (from_pos, to_pos, limit),
            )
            return self._rows_to_events(txn, txn.fetchall())

        return await self.db.run_interaction("get_events_in_stream_range", _txn)

    async def get_stream_ordering_for_ts(self, room_id: str, ts: int, direction: str) -> str | None:
        """The event ID closest to ``ts`` (ms): the first at or after it ("f") or the last at or before it ("b")."""
        if direction == "f":
            sql = ("SELECT event_id FROM events WHERE room_id = ? AND origin_server_ts >= ? "
                   "ORDER BY origin_server_ts ASC, stream_ordering ASC LIMIT 1")
        else:
            sql = ("SELECT event_id FROM events WHERE room_id = ? AND origin_server_ts <= ? "
                   "ORDER BY origin_server_ts DESC, stream_ordering DESC LIMIT 1")
        rows = await self.db.execute("timestamp_to_event", sql, room_id, ts)
        return rows[0][0] if rows else None

    async def get_txn_event_id(self, user_id: str, device_id: str, room_id: str, scope: str,
                               txn_id: str) -> str | None:
        """The event ID already sent by ``user_id``'s ``device_id`` to ``room_id`` through the endpoint ``scope``
        (e.g. ``"send/m.room.message"``, ``"redact/$event"``) with transaction ID ``txn_id``, or None.

        Spec: Client-Server API "Transaction identifiers": the scope of a transaction ID is the device and the
        request path, so the same ``txn_id`` in another room or on another endpoint is a new request.
        """
        rows = await self.db.execute_read(
            "get_txn_event_id",
            "SELECT event_id FROM event_txn_ids WHERE user_id = ? AND device_id = ? AND room_id = ? AND scope = ? "
            "AND txn_id = ?",
            user_id, device_id, room_id, scope, txn_id,
        )
        return rows[0][0] if rows else None

    # -- persisting --------------------------------------------------------------------------------------------

    def persist_event_txn(self, txn: Txn, event: Event, stream_ordering: int, *, is_new_room: bool = False,
                          room_creator: str | None = None,
                          txn_id: tuple[str, str, str, str, str] | None = None, now_ms: int = 0) -> None:
        """Write ``event`` and everything that follows from it, inside the caller's transaction.

        ``txn_id`` is ``(user_id, device_id, room_id, scope, txn_id)`` for ``PUT .../send/{txnId}`` and
        ``PUT .../redact/{eventId}/{txnId}`` idempotency (see :meth:`get_txn_event_id`).
        """
        pdu_json = event.canonical_json(event.internal_metadata.get("unsigned")).decode("utf-8")
        event.forget_canonical_json()  # stored: the cached event keeps its PDU only
        if is_new_room:
            txn.execute_write(
                "INSERT INTO rooms (room_id, creator, room_version, is_public, creation_ts) VALUES (?, ?, ?, 0, ?)",
                (event.room_id, room_creator or event.sender, event.room_version.identifier, now_ms),
            )
        txn.execute_write(
            "INSERT INTO events (stream_ordering, depth, event_id, room_id, type, state_key, sender, "
            "origin_server_ts, json) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (stream_ordering, event.depth, event.event_id, event.room_id, event.type, event.state_key,
             event.sender, event.origin_server_ts, pdu_json),
        )
        if event.is_state():
            membership = event.membership if event.type == "m.room.member" else None
            txn.execute_write(
                "DELETE FROM current_state_events WHERE room_id = ? AND type = ? AND state_key = ?",
                (event.room_id, event.type, event.state_key),
            )
            txn.execute_write(
                "INSERT INTO current_state_events (room_id, type, state_key, event_id, stream_ordering, membership)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (event.room_id, event.type, event.state_key, event.event_id, stream_ordering, membership),
            )
            if event.type == "m.room.member" and isinstance(membership, str):
                txn.execute_write(
                    "INSERT INTO room_memberships (event_id, user_id, sender, room_id, membership, stream_ordering)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (event.event_id, event.state_key, event.sender, event.room_id, membership, stream_ordering),
                )
                txn.execute_write("DELETE FROM local_current_membership WHERE user_id = ? AND room_id = ?",
                                  (event.state_key, event.room_id))
                txn.execute_write(
                    "INSERT INTO local_current_membership (user_id, room_id, event_id, membership, "
                    "stream_ordering, forgotten) VALUES (?, ?, ?, ?, ?, 0)",
                    (event.state_key, event.room_id, event.event_id, membership, stream_ordering),
                )
        if event.type == "m.room.redaction" and event.redacts and self._redacts_same_room_txn(txn, event):
            txn.execute_write("INSERT INTO redactions (event_id, redacts, stream_ordering) VALUES (?, ?, ?)",
                              (event.event_id, event.redacts, stream_ordering))
            # Noted right after the commit, before after_persist drops the cached copy, so no path can cache
            # the target's full copy again.
            txn.call_after(self._note_redacted, event.redacts)
        relation = relation_of(event)
        if relation is not None:
            txn.execute_write(
                "INSERT INTO event_relations (event_id, relates_to_id, relation_type, aggregation_key, room_id, "
                "stream_ordering) VALUES (?, ?, ?, ?, ?, ?)",
                (event.event_id, relation[0], relation[1], relation[2], event.room_id, stream_ordering),
            )
        # A relation row may name an event before it exists (the child names an event ID it was told about).
        txn.execute("SELECT 1 FROM event_relations WHERE relates_to_id = ? LIMIT 1", (event.event_id,))
        if txn.fetchone() is None:
            txn.call_after(self._note_relation_free, event.event_id)
        if txn_id is not None:
            user_id, device_id, _room_id, scope, client_txn_id = txn_id
            txn.execute_write(
                "INSERT INTO event_txn_ids (user_id, device_id, room_id, scope, txn_id, event_id, inserted_ts) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (user_id, device_id, event.room_id, scope, client_txn_id, event.event_id, now_ms),
            )

    @staticmethod
    def _redacts_same_room_txn(txn: Txn, event: Event) -> bool:
        """Whether ``event`` (a redaction) may take effect: its target is unknown or in the same room."""
        txn.execute("SELECT room_id FROM events WHERE event_id = ?", (event.redacts,))
        row = txn.fetchone()
        return row is None or row[0] == event.room_id

    def _note_redacted(self, event_id: str) -> None:
        # Runs on the reactor right after a redaction of ``event_id`` that takes effect committed.
        self._redacted[event_id] = None
        self._redacted.move_to_end(event_id)
        if len(self._redacted) > _EVENT_CACHE_SIZE:
            self._redacted.popitem(last=False)

    def known_relation_free(self, event_id: str) -> bool:
        """True if no event relates to ``event_id`` (False means: unknown, look it up)."""
        return event_id in self._relation_free

    def _note_relation_free(self, event_id: str) -> None:
        # Runs on the reactor right after the event's transaction committed (before after_persist).
        self._relation_free[event_id] = None
        if len(self._relation_free) > _EVENT_CACHE_SIZE:
            self._relation_free.popitem(last=False)

    def after_persist(self, event: Event, stream_ordering: int) -> None:
        """Cache the new event; drop the cached copy of an event it redacts; keep the recent-events index and
        the relation-free set up to date."""
        event.internal_metadata["stream_ordering"] = stream_ordering
        self._cache_put(event)
        relation = relation_of(event)
        if relation is not None:
            self._relation_free.pop(relation[0], None)
        recent = self._recent.get(event.room_id)
        if recent is None:
            if len(self._recent) >= _RECENT_ROOMS_MAX:
                self._recent.clear()
            # Nothing of the room is known below this event yet: the list is complete above its predecessor.
            recent = self._recent[event.room_id] = _RecentEvents(stream_ordering - 1)
        recent.append(stream_ordering, event.event_id)
        if event.type == "m.room.redaction" and event.redacts in self._redacted:
            self.invalidate(event.redacts)

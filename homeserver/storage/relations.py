"""Reading event relationships (``m.relates_to``) for ``/relations``, ``/threads`` and bundled aggregations.

Spec: Client-Server API "Forming relationships between events", "Threading", "Event replacements",
"Event annotations", "Reference relations". The rows are written by the core with each event
(``event_relations``, see :meth:`homeserver.storage.events.EventStore.persist_event_txn`). A relation whose child
event was redacted no longer counts anywhere (the redaction strips ``m.relates_to`` from the child), so every
query here skips children that have a row in ``redactions``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from homeserver.storage.database import Database, Txn

_NOT_REDACTED = "NOT EXISTS (SELECT 1 FROM redactions rd WHERE rd.redacts = r.event_id)"
# A relation only counts within its parent's room: another room's event cannot add to this room's threads.
_SAME_ROOM = "JOIN events o ON o.event_id = r.relates_to_id AND o.room_id = r.room_id"
_CHUNK = 500


@dataclass
class RawAggregations:
    """What the database knows about the relations of a batch of parent events (see ``get_aggregations``).

    ``edits``: parent -> [(edit event_id, origin_server_ts ms)] (same sender, same type, not state);
    ``threads``: parent -> (count, latest thread event_id); ``participated``: parents whose thread the user
    posted in; ``references``: parent -> [event_id] oldest first.
    """

    edits: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    threads: dict[str, tuple[int, str]] = field(default_factory=dict)
    participated: set[str] = field(default_factory=set)
    references: dict[str, list[str]] = field(default_factory=dict)


class RelationsStore:
    """SQL over ``event_relations`` joined with ``events`` and ``redactions``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_relations_page(self, room_id: str, parent_ids: list[str], rel_type: str | None,
                                 event_type: str | None, from_pos: int | None, to_pos: int | None,
                                 direction: str, limit: int) -> list[tuple[str, int]]:
        """``[(event_id, stream_ordering)]`` of events of ``room_id`` relating to any of ``parent_ids``.

        Positions follow the /messages token convention: ``direction`` "b" returns ``to_pos < pos <= from_pos``
        newest first, "f" returns ``from_pos < pos <= to_pos`` oldest first (None: unbounded). At most ``limit``.
        """
        if not parent_ids:
            return []

        def _txn(txn: Txn) -> list[tuple[str, int]]:
            parent_clause, params = txn.in_list("r.relates_to_id", parent_ids)
            sql = ("SELECT r.event_id, r.stream_ordering FROM event_relations r "
                   f"JOIN events c ON c.event_id = r.event_id WHERE {parent_clause} AND r.room_id = ? "
                   f"AND {_NOT_REDACTED}")
            params.append(room_id)
            if rel_type is not None:
                sql += " AND r.relation_type = ?"
                params.append(rel_type)
            if event_type is not None:
                sql += " AND c.type = ?"
                params.append(event_type)
            lower, upper = (to_pos, from_pos) if direction == "b" else (from_pos, to_pos)
            if lower is not None:
                sql += " AND r.stream_ordering > ?"
                params.append(lower)
            if upper is not None:
                sql += " AND r.stream_ordering <= ?"
                params.append(upper)
            sql += f" ORDER BY r.stream_ordering {'DESC' if direction == 'b' else 'ASC'} LIMIT ?"
            params.append(limit)
            txn.execute(sql, params)
            return [(r[0], int(r[1])) for r in txn.fetchall()]

        return await self.db.run_interaction("get_relations_page", _txn)

    async def get_child_ids(self, room_id: str, parent_ids: list[str], limit: int) -> list[str]:
        """IDs of non-redacted events of ``room_id`` relating directly to any of ``parent_ids`` (at most
        ``limit``): one level of a recursive ``/relations`` walk."""
        if not parent_ids:
            return []

        def _txn(txn: Txn) -> list[str]:
            clause, params = txn.in_list("r.relates_to_id", parent_ids)
            txn.execute(f"SELECT r.event_id FROM event_relations r WHERE {clause} AND r.room_id = ? "
                        f"AND {_NOT_REDACTED} ORDER BY r.stream_ordering LIMIT ?", params + [room_id, limit])
            return [r[0] for r in txn.fetchall()]

        return await self.db.run_interaction("get_relation_child_ids", _txn)

    async def get_aggregations(self, parent_ids: list[str], user_id: str) -> RawAggregations:
        """Edits, thread summaries and references of ``parent_ids`` in one transaction (the /sync hot path)."""
        out = RawAggregations()
        if not parent_ids:
            return out

        def _txn(txn: Txn) -> RawAggregations:
            for i in range(0, len(parent_ids), _CHUNK):
                self._aggregations_chunk_txn(txn, parent_ids[i:i + _CHUNK], user_id, out)
            return out

        return await self.db.run_interaction("get_aggregations", _txn)

    @staticmethod
    def _aggregations_chunk_txn(txn: Txn, parent_ids: list[str], user_id: str, out: RawAggregations) -> None:
        clause, params = txn.in_list("relates_to_id", parent_ids)
        # Most events have no relations at all: one cheap index probe decides whether to look further.
        txn.execute(f"SELECT DISTINCT relation_type FROM event_relations WHERE {clause} "
                    "AND relation_type IN ('m.replace', 'm.thread', 'm.reference')", params)
        kinds = {r[0] for r in txn.fetchall()}
        if not kinds:
            return
        clause, params = txn.in_list("r.relates_to_id", parent_ids)
        if "m.replace" in kinds:
            # Only the original sender may edit, only to the same event type, and never a state event.
            txn.execute(
                "SELECT r.relates_to_id, r.event_id, c.origin_server_ts FROM event_relations r "
                "JOIN events c ON c.event_id = r.event_id JOIN events o ON o.event_id = r.relates_to_id "
                f"WHERE {clause} AND r.relation_type = 'm.replace' AND {_NOT_REDACTED} "
                "AND c.sender = o.sender AND c.type = o.type AND c.room_id = o.room_id "
                "AND o.state_key IS NULL AND c.state_key IS NULL",
                params,
            )
            for parent, edit_id, ts in txn.fetchall():
                out.edits.setdefault(parent, []).append((edit_id, int(ts)))
        if "m.thread" in kinds:
            txn.execute(
                "SELECT r.relates_to_id, COUNT(*), MAX(r.stream_ordering) FROM event_relations r "
                f"{_SAME_ROOM} WHERE {clause} AND r.relation_type = 'm.thread' AND {_NOT_REDACTED} "
                "GROUP BY r.relates_to_id",
                params,
            )
            counts = {r[0]: (int(r[1]), int(r[2])) for r in txn.fetchall()}
            if counts:
                pos_clause, pos_params = txn.in_list("stream_ordering", [c[1] for c in counts.values()])
                txn.execute(f"SELECT stream_ordering, event_id FROM events WHERE {pos_clause}", pos_params)
                id_at = {int(r[0]): r[1] for r in txn.fetchall()}
                for parent, (count, latest) in counts.items():
                    if latest in id_at:
                        out.threads[parent] = (count, id_at[latest])
                txn.execute(
                    "SELECT DISTINCT r.relates_to_id FROM event_relations r JOIN events c ON c.event_id = r.event_id "
                    f"{_SAME_ROOM} WHERE {clause} AND r.relation_type = 'm.thread' AND c.sender = ? "
                    f"AND {_NOT_REDACTED}",
                    params + [user_id],
                )
                out.participated.update(r[0] for r in txn.fetchall())
        if "m.reference" in kinds:
            txn.execute(
                f"SELECT r.relates_to_id, r.event_id FROM event_relations r {_SAME_ROOM} "
                f"WHERE {clause} AND r.relation_type = 'm.reference' AND {_NOT_REDACTED} "
                "ORDER BY r.stream_ordering",
                params,
            )
            for parent, child in txn.fetchall():
                out.references.setdefault(parent, []).append(child)

    async def get_thread_roots(self, room_id: str, user_id: str, participated_only: bool, before_pos: int | None,
                               limit: int) -> list[tuple[str, int]]:
        """``[(root event_id, latest activity stream_ordering)]`` of threads in ``room_id``, most recently active
        first, only those with activity ``< before_pos`` when given; ``participated_only``: threads whose root
        or any reply ``user_id`` sent."""

        def _txn(txn: Txn) -> list[tuple[str, int]]:
            sql = ("SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r "
                   "JOIN events o ON o.event_id = r.relates_to_id AND o.room_id = r.room_id "
                   f"WHERE r.room_id = ? AND r.relation_type = 'm.thread' AND {_NOT_REDACTED} ")
            params: list[Any] = [room_id]
            if participated_only:
                # Only replies in the thread's own room count as participation.
                sql += ("AND (o.sender = ? OR EXISTS (SELECT 1 FROM event_relations r2 "
                        "JOIN events c2 ON c2.event_id = r2.event_id WHERE r2.relates_to_id = r.relates_to_id "
                        "AND r2.room_id = r.room_id AND r2.relation_type = 'm.thread' AND c2.sender = ?)) ")
                params += [user_id, user_id]
            sql += "GROUP BY r.relates_to_id "
            if before_pos is not None:
                sql += "HAVING MAX(r.stream_ordering) < ? "
                params.append(before_pos)
            sql += "ORDER BY latest DESC LIMIT ?"
            params.append(limit)
            txn.execute(sql, params)
            return [(r[0], int(r[1])) for r in txn.fetchall()]

        return await self.db.run_interaction("get_thread_roots", _txn)

    async def has_annotation(self, room_id: str, sender: str, parent_id: str, event_type: str, key: str) -> bool:
        """Whether ``sender`` already has a live (non-redacted) ``m.annotation`` of ``key`` with ``event_type``
        on ``parent_id`` in ``room_id`` (one sent from another room does not count there)."""
        rows = await self.db.execute(
            "has_annotation",
            "SELECT 1 FROM event_relations r JOIN events c ON c.event_id = r.event_id "
            "WHERE r.relates_to_id = ? AND r.room_id = ? AND r.relation_type = 'm.annotation' "
            f"AND r.aggregation_key = ? AND c.sender = ? AND c.type = ? AND {_NOT_REDACTED} LIMIT 1",
            parent_id, room_id, key, sender, event_type,
        )
        return bool(rows)

"""The full-text index behind ``POST /search``: SQLite FTS5 or PostgreSQL ``tsvector``, one interface.

Spec: Client-Server API "Server Side Search". One index row per searchable event (``m.room.message`` body,
``m.room.name`` name, ``m.room.topic`` topic), keyed by the event's ``stream_ordering``. Rows are written inside the
event's own transaction (see :class:`homeserver.handlers.search.SearchIndexHook`), so an event is searchable
exactly when it is durable; a redaction deletes the redacted event's row in the redaction's transaction.

Search terms are reduced to plain words before they reach the database: neither FTS5's query syntax nor
PostgreSQL's ``tsquery`` operators are exposed to users, so no term can be a syntax error. Both engines stem
(``porter`` tokenizer / ``english`` configuration) and AND the words together.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from homeserver.events import Event
from homeserver.storage.database import Database, Txn

# event type -> (search key, content field)
SEARCHABLE: dict[str, tuple[str, str]] = {
    "m.room.message": ("content.body", "body"),
    "m.room.name": ("content.name", "name"),
    "m.room.topic": ("content.topic", "topic"),
}
SEARCH_KEYS: tuple[str, ...] = ("content.body", "content.name", "content.topic")

_WORD_RE = re.compile(r"\w+", re.UNICODE)
_MAX_WORDS = 16
#: ``order_by: rank`` ranks only this many of the newest matches: a common word in a large history must not make
#: one request score and sort every match.
MAX_RANK_CANDIDATES = 1000


def search_words(term: str) -> list[str]:
    """The words of a search term, lowercased, in order, without repeats (at most 16)."""
    out: list[str] = []
    for w in _WORD_RE.findall(term.lower()):
        if w not in out:
            out.append(w)
        if len(out) >= _MAX_WORDS:
            break
    return out


def searchable_value(event: Event) -> tuple[str, str] | None:
    """``(key, text)`` to index for ``event``, or None when it has nothing searchable."""
    spec = SEARCHABLE.get(event.type)
    if spec is None:
        return None
    if event.type == "m.room.message" and event.is_state():
        return None
    value = event.content.get(spec[1])
    if not isinstance(value, str) or not value:
        return None
    return spec[0], value


@dataclass(frozen=True)
class SearchHit:
    """One matching event: its ID, room, stream position and engine rank (higher is better)."""

    event_id: str
    room_id: str
    stream_ordering: int
    rank: float


class SearchStore:
    """SQL for the ``event_search`` index (migration 061, one file per engine)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing (inside the event's transaction) ---------------------------------------------------------------

    def index_event_txn(self, txn: Txn, event: Event, stream_ordering: int) -> None:
        """Index ``event`` if it has searchable text; drop the row of the event a redaction redacts (only within
        the redaction's own room: one naming another room's event is inert, as everywhere else)."""
        if event.type == "m.room.redaction" and event.redacts:
            self._delete_for_event_txn(txn, event.redacts, event.room_id)
            return
        found = searchable_value(event)
        if found is None:
            return
        key, value = found
        value = value.replace("\x00", " ")  # PostgreSQL text cannot hold NUL; JSON bodies may
        if txn.is_postgres:
            txn.execute_write(
                "INSERT INTO event_search (stream_ordering, room_id, key, vector) "
                "VALUES (?, ?, ?, to_tsvector('english', ?))",
                (stream_ordering, event.room_id, key, value),
            )
        else:
            txn.execute_write("INSERT INTO event_search (rowid, value, key) VALUES (?, ?, ?)",
                              (stream_ordering, value, key))

    @staticmethod
    def _delete_for_event_txn(txn: Txn, event_id: str, room_id: str) -> None:
        txn.execute("SELECT stream_ordering FROM events WHERE event_id = ? AND room_id = ?", (event_id, room_id))
        row = txn.fetchone()
        if row is None:
            return
        if txn.is_postgres:
            txn.execute("DELETE FROM event_search WHERE stream_ordering = ?", (row[0],))
        else:
            txn.execute("DELETE FROM event_search WHERE rowid = ?", (row[0],))

    # -- reading ------------------------------------------------------------------------------------------------

    async def search(self, room_ids: list[str], words: list[str], keys: list[str], order_by: str,
                     limit: int, before_pos: int | None = None, offset: int = 0,
                     senders: list[str] | None = None, not_senders: list[str] | None = None) -> list[SearchHit]:
        """Events of ``room_ids`` whose ``keys`` fields contain every word of ``words``.

        ``order_by`` "recent": newest first, only ``stream_ordering < before_pos`` when given; "rank": best first
        (ties newest first) among the newest :data:`MAX_RANK_CANDIDATES` matches, skipping ``offset`` hits. At most
        ``limit`` hits. Runs on the read connection.
        """
        if not room_ids or not words or not keys:
            return []
        return await self.db.run_read(
            "search_events", self._search_txn, room_ids, words, keys, order_by, limit, before_pos, offset,
            senders, not_senders)

    async def matching_event_ids(self, room_ids: list[str], words: list[str], keys: list[str], limit: int,
                                 senders: list[str] | None = None,
                                 not_senders: list[str] | None = None) -> list[str]:
        """IDs of at most ``limit`` matching events, newest first (before history-visibility filtering: the
        caller counts only those the user may see). Runs on the read connection."""
        if not room_ids or not words or not keys:
            return []

        def _txn(txn: Txn) -> list[str]:
            where, params = self._where(txn, room_ids, words, keys, senders, not_senders)
            txn.execute(f"SELECT e.event_id FROM {self._from(txn)} WHERE {where} "
                        "ORDER BY e.stream_ordering DESC LIMIT ?", [*params, limit])
            return [r[0] for r in txn.fetchall()]

        return await self.db.run_read("search_matching_ids", _txn)

    @staticmethod
    def _from(txn: Txn) -> str:
        if txn.is_postgres:
            return "event_search s JOIN events e ON e.stream_ordering = s.stream_ordering"
        return "event_search s JOIN events e ON e.stream_ordering = s.rowid"

    @staticmethod
    def _where(txn: Txn, room_ids: list[str], words: list[str], keys: list[str], senders: list[str] | None,
               not_senders: list[str] | None) -> tuple[str, list[Any]]:
        params: list[Any] = []
        if txn.is_postgres:
            clauses = ["s.vector @@ plainto_tsquery('english', ?)"]
            params.append(" ".join(words))
        else:
            # Each word quoted: FTS5 reads it as a plain string, never as an operator or a column filter.
            clauses = ["event_search MATCH ?"]
            params.append(" ".join('"' + w.replace('"', '""') + '"' for w in words))
        room_clause, room_params = txn.in_list("e.room_id", room_ids)
        clauses.append(room_clause)
        params += room_params
        if set(keys) != set(SEARCH_KEYS):
            key_clause, key_params = txn.in_list("s.key", keys)
            clauses.append(key_clause)
            params += key_params
        if senders is not None:
            sender_clause, sender_params = txn.in_list("e.sender", senders)
            clauses.append(sender_clause)
            params += sender_params
        if not_senders:
            sender_clause, sender_params = txn.in_list("e.sender", not_senders)
            clauses.append(f"NOT ({sender_clause})")
            params += sender_params
        return " AND ".join(clauses), params

    def _search_txn(self, txn: Txn, room_ids: list[str], words: list[str], keys: list[str], order_by: str,
                    limit: int, before_pos: int | None, offset: int, senders: list[str] | None,
                    not_senders: list[str] | None) -> list[SearchHit]:
        where, params = self._where(txn, room_ids, words, keys, senders, not_senders)
        if txn.is_postgres:
            rank = "ts_rank_cd(s.vector, plainto_tsquery('english', ?))"
            rank_params: list[Any] = [" ".join(words)]
        else:
            # bm25() is lower-is-better; negate so both engines rank higher-is-better.
            rank = "-bm25(event_search)"
            rank_params = []
        if order_by == "recent":
            if before_pos is not None:
                where += " AND e.stream_ordering < ?"
                params.append(before_pos)
            txn.execute(
                f"SELECT e.event_id, e.room_id, e.stream_ordering, {rank} AS rank FROM {self._from(txn)} "
                f"WHERE {where} ORDER BY e.stream_ordering DESC LIMIT ?",
                rank_params + params + [limit],
            )
        elif txn.is_postgres:
            # Scored after the window is cut, so at most MAX_RANK_CANDIDATES rows are ranked and sorted.
            txn.execute(
                "SELECT c.event_id, c.room_id, c.stream_ordering, ts_rank_cd(c.vector, plainto_tsquery('english', ?))"
                " AS rank FROM (SELECT e.event_id, e.room_id, e.stream_ordering, s.vector FROM "
                f"{self._from(txn)} WHERE {where} ORDER BY e.stream_ordering DESC LIMIT ?) c "
                "ORDER BY rank DESC, c.stream_ordering DESC LIMIT ? OFFSET ?",
                rank_params + params + [MAX_RANK_CANDIDATES, limit, offset],
            )
        else:
            # bm25() is only available in the MATCH query itself, so the window is the inner query.
            txn.execute(
                "SELECT event_id, room_id, stream_ordering, rank FROM (SELECT e.event_id, e.room_id, "
                f"e.stream_ordering, {rank} AS rank FROM {self._from(txn)} WHERE {where} "
                "ORDER BY e.stream_ordering DESC LIMIT ?) ORDER BY rank DESC, stream_ordering DESC LIMIT ? OFFSET ?",
                params + [MAX_RANK_CANDIDATES, limit, offset],
            )
        return [SearchHit(r[0], r[1], int(r[2]), float(r[3] or 0.0)) for r in txn.fetchall()]

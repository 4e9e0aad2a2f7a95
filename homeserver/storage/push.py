"""Push rules, push actions (the source of unread counts and ``/notifications``), read positions, pushers and
pending pushes.

Spec: Client-Server API, "Push Notifications" (push rules, ``/notifications``, pushers, unread counts in /sync) and
the Push Gateway API. All SQL of the push area lives here; rows written together with an event are written by the
``*_txn`` functions inside the event's transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

from homeserver.http.errors import NotFoundError
from homeserver.push import insert_position
from homeserver.storage.database import Database, Txn

JsonDict = dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def upsert_read_position_txn(txn: Txn, user_id: str, room_id: str, thread_id: str, stream_ordering: int) -> None:
    """Move the user's read position in ``room_id``/``thread_id`` ('' = every thread) forward to
    ``stream_ordering``; never backwards."""
    txn.execute_write(
        "INSERT INTO push_read_positions (user_id, room_id, thread_id, stream_ordering) VALUES (?, ?, ?, ?) "
        "ON CONFLICT (user_id, room_id, thread_id) DO UPDATE SET stream_ordering = excluded.stream_ordering "
        "WHERE push_read_positions.stream_ordering < excluded.stream_ordering",
        (user_id, room_id, thread_id, stream_ordering),
    )


@dataclass
class Pusher:
    """One pusher (spec ``POST /pushers/set``). ``data`` includes ``url``; ``pushkey_ts`` is in seconds."""

    user_id: str
    app_id: str
    pushkey: str
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: JsonDict = field(default_factory=dict)
    pushkey_ts: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.app_id, self.pushkey)

    def to_client_json(self) -> JsonDict:
        """The pusher as ``GET /pushers`` lists it."""
        body: JsonDict = {
            "pushkey": self.pushkey,
            "kind": self.kind,
            "app_id": self.app_id,
            "app_display_name": self.app_display_name,
            "device_display_name": self.device_display_name,
            "lang": self.lang,
            "data": dict(self.data),
        }
        if self.profile_tag is not None:
            body["profile_tag"] = self.profile_tag
        return body


@dataclass(frozen=True)
class PendingPush:
    """A push the gateway has not accepted yet. ``actions`` are the matching rule's actions."""

    user_id: str
    app_id: str
    pushkey: str
    event_id: str
    room_id: str
    stream_ordering: int
    actions: list[Any]
    created_ts: int


_PUSHER_COLUMNS = ("user_id, app_id, pushkey, kind, app_display_name, device_display_name, profile_tag, lang, "
                   "data_json, pushkey_ts")


def _row_to_pusher(row: Sequence[Any]) -> Pusher:
    return Pusher(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], json.loads(row[8]), int(row[9]))


class PushStore:
    """SQL for the push area (tables of migration 030)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- push rules ----------------------------------------------------------------------------------------------

    async def get_push_rules(self, user_id: str) -> tuple[list[JsonDict], dict[str, JsonDict]]:
        """``(user_rules, default_overrides)`` as :class:`homeserver.push.PushRuleset` takes them."""

        def _txn(txn: Txn) -> tuple[list[JsonDict], dict[str, JsonDict]]:
            txn.execute(
                "SELECT kind, rule_id, priority, rule_json, enabled FROM push_rules WHERE user_id = ? "
                "ORDER BY kind, priority DESC", (user_id,))
            rules = []
            for kind, rule_id, priority, rule_json, enabled in txn.fetchall():
                rule = json.loads(rule_json)
                rule.update(kind=kind, rule_id=rule_id, priority=int(priority), enabled=bool(enabled))
                rules.append(rule)
            txn.execute("SELECT rule_id, enabled, actions_json FROM push_rule_default_overrides WHERE user_id = ?",
                        (user_id,))
            overrides: dict[str, JsonDict] = {}
            for rule_id, enabled, actions_json in txn.fetchall():
                change: JsonDict = {}
                if enabled is not None:
                    change["enabled"] = bool(enabled)
                if actions_json is not None:
                    change["actions"] = json.loads(actions_json)
                overrides[rule_id] = change
            return rules, overrides

        return await self.db.run_interaction("get_push_rules", _txn)

    async def get_push_rules_for_users(
            self, user_ids: Sequence[str]) -> dict[str, tuple[list[JsonDict], dict[str, JsonDict]]]:
        """:meth:`get_push_rules` of many users in two queries per 500 users (cold caches of a big room).
        Users without any change map to ``([], {})``."""

        def _txn(txn: Txn) -> dict[str, tuple[list[JsonDict], dict[str, JsonDict]]]:
            out: dict[str, tuple[list[JsonDict], dict[str, JsonDict]]] = {u: ([], {}) for u in user_ids}
            for i in range(0, len(user_ids), 500):
                clause, params = txn.in_list("user_id", list(user_ids[i:i + 500]))
                txn.execute(
                    f"SELECT user_id, kind, rule_id, priority, rule_json, enabled FROM push_rules WHERE {clause} "
                    "ORDER BY user_id, kind, priority DESC", params)
                for user_id, kind, rule_id, priority, rule_json, enabled in txn.fetchall():
                    rule = json.loads(rule_json)
                    rule.update(kind=kind, rule_id=rule_id, priority=int(priority), enabled=bool(enabled))
                    out[user_id][0].append(rule)
                txn.execute(
                    f"SELECT user_id, rule_id, enabled, actions_json FROM push_rule_default_overrides WHERE {clause}",
                    params)
                for user_id, rule_id, enabled, actions_json in txn.fetchall():
                    change: JsonDict = {}
                    if enabled is not None:
                        change["enabled"] = bool(enabled)
                    if actions_json is not None:
                        change["actions"] = json.loads(actions_json)
                    out[user_id][1][rule_id] = change
            return out

        return await self.db.run_interaction("get_push_rules_for_users", _txn)

    async def put_push_rule(self, user_id: str, rule: JsonDict, before: str | None, after: str | None) -> None:
        """Add or replace one of the user's own rules (``rule`` from :func:`homeserver.push.validate_rule`).

        With ``before``/``after`` the rule moves next to that user rule of the same kind; without, a new rule
        becomes the most important of its kind and an existing one keeps its place (and its ``enabled``).

        Raises:
            MatrixError: 400 from :func:`homeserver.push.insert_position` when the anchor is unknown or a
                server-default rule; nothing is written then.
        """
        kind, rule_id = rule["kind"], rule["rule_id"]
        body = {k: v for k, v in rule.items() if k in ("actions", "conditions", "pattern")}

        def _txn(txn: Txn) -> None:
            txn.execute("SELECT rule_id, enabled FROM push_rules WHERE user_id = ? AND kind = ? "
                        "ORDER BY priority DESC", (user_id, kind))
            rows = txn.fetchall()
            ids = [r[0] for r in rows]
            existing = {r[0]: bool(r[1]) for r in rows}
            if rule_id in existing and before is None and after is None:
                order = ids
            else:
                others = [i for i in ids if i != rule_id]
                index = insert_position(others, before=before, after=after)
                order = others[:index] + [rule_id] + others[index:]
            enabled = existing.get(rule_id, True)
            # Renumber the kind (a user has a handful of rules): priorities stay dense and distinct.
            for position, rid in enumerate(order):
                priority = len(order) - position
                if rid != rule_id:
                    txn.execute("UPDATE push_rules SET priority = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                                (priority, user_id, kind, rid))
                    continue
                txn.execute(
                    "INSERT INTO push_rules (user_id, kind, rule_id, priority, rule_json, enabled) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (user_id, kind, rule_id) DO UPDATE SET "
                    "priority = excluded.priority, rule_json = excluded.rule_json",
                    (user_id, kind, rid, priority, _dumps(body), int(enabled)))

        await self.db.run_interaction("put_push_rule", _txn)

    async def delete_push_rule(self, user_id: str, kind: str, rule_id: str) -> None:
        """Delete one of the user's own rules; NotFoundError (404 ``M_NOT_FOUND``) if there is none."""

        def _txn(txn: Txn) -> None:
            txn.execute("DELETE FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (user_id, kind, rule_id))
            if txn.rowcount == 0:
                raise NotFoundError("The push rule was not found.")

        await self.db.run_interaction("delete_push_rule", _txn)

    async def set_push_rule_enabled(self, user_id: str, kind: str, rule_id: str, enabled: bool,
                                    is_default: bool) -> None:
        """Enable or disable a rule (a server-default one when ``is_default``); 404 for an unknown user rule."""

        def _txn(txn: Txn) -> None:
            if is_default:
                txn.execute(
                    "INSERT INTO push_rule_default_overrides (user_id, rule_id, enabled, actions_json) "
                    "VALUES (?, ?, ?, NULL) ON CONFLICT (user_id, rule_id) DO UPDATE SET enabled = excluded.enabled",
                    (user_id, rule_id, int(enabled)))
                return
            txn.execute("UPDATE push_rules SET enabled = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (int(enabled), user_id, kind, rule_id))
            if txn.rowcount == 0:
                raise NotFoundError("The push rule was not found.")

        await self.db.run_interaction("set_push_rule_enabled", _txn)

    async def set_push_rule_actions(self, user_id: str, kind: str, rule_id: str, actions: list[Any],
                                    is_default: bool) -> None:
        """Replace a rule's actions (a server-default one when ``is_default``); 404 for an unknown user rule."""

        def _txn(txn: Txn) -> None:
            if is_default:
                txn.execute(
                    "INSERT INTO push_rule_default_overrides (user_id, rule_id, enabled, actions_json) "
                    "VALUES (?, ?, NULL, ?) ON CONFLICT (user_id, rule_id) DO UPDATE SET "
                    "actions_json = excluded.actions_json",
                    (user_id, rule_id, _dumps(actions)))
                return
            txn.execute("SELECT rule_json FROM push_rules WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (user_id, kind, rule_id))
            row = txn.fetchone()
            if row is None:
                raise NotFoundError("The push rule was not found.")
            body = json.loads(row[0])
            body["actions"] = actions
            txn.execute("UPDATE push_rules SET rule_json = ? WHERE user_id = ? AND kind = ? AND rule_id = ?",
                        (_dumps(body), user_id, kind, rule_id))

        await self.db.run_interaction("set_push_rule_actions", _txn)

    # -- push actions and read positions -------------------------------------------------------------------------

    @staticmethod
    def insert_push_actions_txn(txn: Txn, rows: Iterable[tuple[str, str, str, int, str, int, str, int]]) -> None:
        """Insert ``(user_id, room_id, event_id, stream_ordering, thread_id, highlight, actions_json, ts)`` rows
        inside the event's transaction."""
        txn.executemany_write(
            "INSERT INTO event_push_actions (user_id, room_id, event_id, stream_ordering, thread_id, highlight, "
            "actions_json, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )

    async def get_unread_counts(self, user_id: str, room_id: str, upto: int) -> dict[str, tuple[int, int]]:
        """``{thread_id: (notification_count, highlight_count)}`` of the push actions in the room with stream
        ordering ``<= upto`` after the user's read position (the later of the unthreaded one and the thread's).

        One indexed query: actions are only counted after the unthreaded position, and joined with the thread's
        own position.
        """

        def _txn(txn: Txn) -> dict[str, tuple[int, int]]:
            txn.execute(
                "SELECT stream_ordering FROM push_read_positions WHERE user_id = ? AND room_id = ? AND thread_id = ''",
                (user_id, room_id))
            row = txn.fetchone()
            floor = int(row[0]) if row else 0
            txn.execute(
                "SELECT a.thread_id, COUNT(*), SUM(a.highlight) FROM event_push_actions a "
                "LEFT JOIN push_read_positions r ON r.user_id = a.user_id AND r.room_id = a.room_id "
                "AND r.thread_id = a.thread_id "
                "WHERE a.user_id = ? AND a.room_id = ? AND a.stream_ordering > ? AND a.stream_ordering <= ? "
                "AND (r.stream_ordering IS NULL OR a.stream_ordering > r.stream_ordering) "
                "GROUP BY a.thread_id",
                (user_id, room_id, floor, upto))
            return {r[0]: (int(r[1]), int(r[2] or 0)) for r in txn.fetchall()}

        return await self.db.run_interaction("get_unread_counts", _txn)

    async def get_notifications(self, user_id: str, before: int | None, limit: int,
                                only_highlight: bool) -> list[tuple[str, str, int, list[Any], int, bool]]:
        """The user's notifications, newest first: ``(event_id, room_id, stream_ordering, actions, ts, read)``
        with ``stream_ordering < before`` (None: from the newest)."""

        def _txn(txn: Txn) -> list[tuple[str, str, int, list[Any], int, bool]]:
            sql = ("SELECT a.event_id, a.room_id, a.stream_ordering, a.actions_json, a.ts, a.thread_id, "
                   "u.stream_ordering, t.stream_ordering FROM event_push_actions a "
                   "LEFT JOIN push_read_positions u ON u.user_id = a.user_id AND u.room_id = a.room_id "
                   "AND u.thread_id = '' "
                   "LEFT JOIN push_read_positions t ON t.user_id = a.user_id AND t.room_id = a.room_id "
                   "AND t.thread_id = a.thread_id "
                   "WHERE a.user_id = ?")
            params: list[Any] = [user_id]
            if before is not None:
                sql += " AND a.stream_ordering < ?"
                params.append(before)
            if only_highlight:
                sql += " AND a.highlight = 1"
            sql += " ORDER BY a.stream_ordering DESC LIMIT ?"
            params.append(limit)
            txn.execute(sql, params)
            out = []
            for event_id, room_id, so, actions_json, ts, _thread, unthreaded, threaded in txn.fetchall():
                read_upto = max(int(unthreaded or 0), int(threaded or 0))
                out.append((event_id, room_id, int(so), json.loads(actions_json), int(ts), int(so) <= read_upto))
            return out

        return await self.db.run_interaction("get_notifications", _txn)

    async def get_total_unread(self, user_id: str, room_ids: Iterable[str]) -> int:
        """Unread notifications of the user summed over ``room_ids`` (the push gateway's ``counts.unread``)."""
        rooms = list(room_ids)

        def _txn(txn: Txn) -> int:
            if not rooms:
                return 0
            clause, params = txn.in_list("a.room_id", rooms)
            txn.execute(
                "SELECT COUNT(*) FROM event_push_actions a "
                "LEFT JOIN push_read_positions u ON u.user_id = a.user_id AND u.room_id = a.room_id "
                "AND u.thread_id = '' "
                "LEFT JOIN push_read_positions t ON t.user_id = a.user_id AND t.room_id = a.room_id "
                "AND t.thread_id = a.thread_id "
                f"WHERE a.user_id = ? AND {clause} AND a.stream_ordering > COALESCE(u.stream_ordering, 0) "
                "AND a.stream_ordering > COALESCE(t.stream_ordering, 0)",
                [user_id, *params])
            return int(txn.fetchone()[0])  # type: ignore[index]

        return await self.db.run_interaction("get_total_unread", _txn)

    # -- pushers -------------------------------------------------------------------------------------------------

    def get_all_pushers_sync(self) -> list[Pusher]:
        """Every pusher (start-up only)."""
        rows = self.db.run_interaction_sync(
            "get_all_pushers", lambda t: t.execute(f"SELECT {_PUSHER_COLUMNS} FROM pushers").fetchall())
        return [_row_to_pusher(r) for r in rows]

    async def add_pusher(self, pusher: Pusher, append: bool) -> list[tuple[str, str, str]]:
        """Create or replace ``pusher``. Unless ``append``, pushers of OTHER users with the same app_id and
        pushkey are removed (spec). Returns the keys of the pushers removed that way."""

        def _txn(txn: Txn) -> list[tuple[str, str, str]]:
            removed: list[tuple[str, str, str]] = []
            if not append:
                txn.execute("SELECT user_id FROM pushers WHERE app_id = ? AND pushkey = ? AND user_id <> ?",
                            (pusher.app_id, pusher.pushkey, pusher.user_id))
                removed = [(r[0], pusher.app_id, pusher.pushkey) for r in txn.fetchall()]
                for key in removed:
                    _delete_pusher_txn(txn, key)
            txn.execute(
                f"INSERT INTO pushers ({_PUSHER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET kind = excluded.kind, "
                "app_display_name = excluded.app_display_name, device_display_name = excluded.device_display_name, "
                "profile_tag = excluded.profile_tag, lang = excluded.lang, data_json = excluded.data_json, "
                "pushkey_ts = excluded.pushkey_ts",
                (pusher.user_id, pusher.app_id, pusher.pushkey, pusher.kind, pusher.app_display_name,
                 pusher.device_display_name, pusher.profile_tag, pusher.lang, _dumps(pusher.data),
                 pusher.pushkey_ts))
            return removed

        return await self.db.run_interaction("add_pusher", _txn)

    async def delete_pusher(self, key: tuple[str, str, str]) -> bool:
        """Delete the pusher ``(user_id, app_id, pushkey)`` and its pending pushes; False if there was none."""
        return await self.db.run_interaction("delete_pusher", _delete_pusher_txn, key)

    @staticmethod
    def insert_pending_pushes_txn(txn: Txn, rows: Iterable[tuple[str, str, str, str, str, int, str, int]]) -> None:
        """Queue pushes inside the event's transaction: ``(user_id, app_id, pushkey, event_id, room_id,
        stream_ordering, actions_json, created_ts)``."""
        txn.executemany(
            "INSERT INTO pending_pushes (user_id, app_id, pushkey, event_id, room_id, stream_ordering, actions_json, "
            "created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
            rows,
        )

    async def get_pending_pushes(self, key: tuple[str, str, str], limit: int) -> list[PendingPush]:
        """The oldest ``limit`` pending pushes of one pusher, in stream order."""
        rows = await self.db.execute(
            "get_pending_pushes",
            "SELECT event_id, room_id, stream_ordering, actions_json, created_ts FROM pending_pushes "
            "WHERE user_id = ? AND app_id = ? AND pushkey = ? ORDER BY stream_ordering LIMIT ?",
            key[0], key[1], key[2], limit,
        )
        return [PendingPush(key[0], key[1], key[2], r[0], r[1], int(r[2]), json.loads(r[3]), int(r[4]))
                for r in rows]

    async def delete_pending_push(self, key: tuple[str, str, str], event_id: str) -> None:
        """Forget a push the gateway accepted (or that can never be delivered)."""
        await self.db.execute(
            "delete_pending_push",
            "DELETE FROM pending_pushes WHERE user_id = ? AND app_id = ? AND pushkey = ? AND event_id = ?",
            key[0], key[1], key[2], event_id,
        )

    def get_pusher_keys_with_pending_sync(self) -> list[tuple[str, str, str]]:
        """Pushers with pending pushes (start-up only)."""
        rows = self.db.run_interaction_sync(
            "pushers_with_pending",
            lambda t: t.execute("SELECT DISTINCT user_id, app_id, pushkey FROM pending_pushes").fetchall())
        return [(r[0], r[1], r[2]) for r in rows]


def _delete_pusher_txn(txn: Txn, key: tuple[str, str, str]) -> bool:
    txn.execute("DELETE FROM pending_pushes WHERE user_id = ? AND app_id = ? AND pushkey = ?", key)
    txn.execute("DELETE FROM pushers WHERE user_id = ? AND app_id = ? AND pushkey = ?", key)
    return txn.rowcount > 0

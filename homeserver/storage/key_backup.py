"""Server-side key backups: backup versions and the encrypted Megolm session keys stored in them.

Spec: Client-Server API, "Server-side key backups". Versions are integers per user, never reused (deleted ones are
kept as tombstones); ``etag`` is a per-version counter bumped whenever the stored keys change.
"""

from __future__ import annotations

import json
from typing import Any, Callable

from canonicaljson import encode_canonical_json

from homeserver.storage.database import Database, Txn

JsonDict = dict[str, Any]


class KeyBackupStore:
    """SQL for ``e2e_room_keys_versions`` and ``e2e_room_keys``."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create_version(self, user_id: str, algorithm: str, auth_data: JsonDict) -> int:
        """Create a backup version (the new current one) and return its number."""

        def _txn(txn: Txn) -> int:
            txn.execute("SELECT COALESCE(MAX(version), 0) FROM e2e_room_keys_versions WHERE user_id = ?", (user_id,))
            version = int(txn.fetchone()[0]) + 1
            txn.execute("INSERT INTO e2e_room_keys_versions (user_id, version, algorithm, auth_data, etag, deleted)"
                        " VALUES (?, ?, ?, ?, 0, 0)", (user_id, version, algorithm, _encode(auth_data)))
            return version

        return await self.db.run_interaction("create_backup_version", _txn)

    @staticmethod
    def _get_version_txn(txn: Txn, user_id: str, version: int | None) -> JsonDict | None:
        if version is None:
            txn.execute("SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions WHERE user_id = ?"
                        " AND deleted = 0 ORDER BY version DESC LIMIT 1", (user_id,))
        else:
            txn.execute("SELECT version, algorithm, auth_data, etag FROM e2e_room_keys_versions WHERE user_id = ?"
                        " AND version = ? AND deleted = 0", (user_id, version))
        row = txn.fetchone()
        if row is None:
            return None
        txn.execute("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, row[0]))
        count = int(txn.fetchone()[0])
        return {"version": int(row[0]), "algorithm": row[1], "auth_data": json.loads(row[2]), "etag": int(row[3]),
                "count": count}

    async def get_version(self, user_id: str, version: int | None) -> JsonDict | None:
        """``{"version": int, "algorithm", "auth_data", "etag": int, "count": int}`` of ``version`` (None: the
        current one), or None if there is no such live version."""
        return await self.db.run_interaction("get_backup_version", self._get_version_txn, user_id, version)

    async def version_existed(self, user_id: str, version: int) -> bool:
        """True if the version was ever created (live or deleted)."""
        rows = await self.db.execute("backup_version_existed", "SELECT 1 FROM e2e_room_keys_versions WHERE"
                                     " user_id = ? AND version = ?", user_id, version)
        return bool(rows)

    async def update_auth_data(self, user_id: str, version: int, auth_data: JsonDict) -> None:
        """Replace the ``auth_data`` of backup ``version`` of ``user_id`` (spec: "Server-side key backups")."""
        await self.db.execute("update_backup_auth_data", "UPDATE e2e_room_keys_versions SET auth_data = ? WHERE"
                              " user_id = ? AND version = ?", _encode(auth_data), user_id, version)

    async def delete_version(self, user_id: str, version: int) -> None:
        """Mark the version deleted and drop its keys."""

        def _txn(txn: Txn) -> None:
            txn.execute("UPDATE e2e_room_keys_versions SET deleted = 1 WHERE user_id = ? AND version = ?",
                        (user_id, version))
            txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))

        await self.db.run_interaction("delete_backup_version", _txn)

    async def put_keys(self, user_id: str, version: int, sessions: list[tuple[str, str, JsonDict]],
                       is_better: Callable[[JsonDict, JsonDict], bool]) -> tuple[int, int] | None:
        """Store ``[(room_id, session_id, key_backup_data)]`` into ``version`` if it is still the current live
        version; an existing session is replaced only when ``is_better(new, old)``.

        Returns ``(etag, count)`` afterwards, or None if ``version`` is not the current version (the caller reports
        the current one). The check and the writes share one transaction, so keys never land in an old version.
        """

        def _txn(txn: Txn) -> tuple[int, int] | None:
            current = self._get_version_txn(txn, user_id, None)
            if current is None or current["version"] != version:
                return None
            changed = False
            for room_id, session_id, data in sessions:
                txn.execute("SELECT first_message_index, forwarded_count, is_verified, session_data FROM e2e_room_keys"
                            " WHERE user_id = ? AND version = ? AND room_id = ? AND session_id = ?",
                            (user_id, version, room_id, session_id))
                row = txn.fetchone()
                if row is not None:
                    old = {"first_message_index": int(row[0]), "forwarded_count": int(row[1]),
                           "is_verified": bool(row[2]), "session_data": json.loads(row[3])}
                    if not is_better(data, old):
                        continue
                    txn.execute("DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ? AND room_id = ? AND"
                                " session_id = ?", (user_id, version, room_id, session_id))
                txn.execute("INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index,"
                            " forwarded_count, is_verified, session_data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (user_id, version, room_id, session_id, data["first_message_index"],
                             data["forwarded_count"], 1 if data["is_verified"] else 0, _encode(data["session_data"])))
                changed = True
            return self._finish_change_txn(txn, user_id, version, changed)

        return await self.db.run_interaction("put_backup_keys", _txn)

    @staticmethod
    def _finish_change_txn(txn: Txn, user_id: str, version: int, changed: bool) -> tuple[int, int]:
        if changed:
            txn.execute("UPDATE e2e_room_keys_versions SET etag = etag + 1 WHERE user_id = ? AND version = ?",
                        (user_id, version))
        txn.execute("SELECT etag FROM e2e_room_keys_versions WHERE user_id = ? AND version = ?", (user_id, version))
        etag = int(txn.fetchone()[0])
        txn.execute("SELECT COUNT(*) FROM e2e_room_keys WHERE user_id = ? AND version = ?", (user_id, version))
        return etag, int(txn.fetchone()[0])

    async def get_keys(self, user_id: str, version: int, room_id: str | None = None,
                       session_id: str | None = None) -> dict[str, dict[str, JsonDict]]:
        """``{room_id: {session_id: key_backup_data}}`` of the version, optionally of one room / session."""
        sql = ("SELECT room_id, session_id, first_message_index, forwarded_count, is_verified, session_data"
               " FROM e2e_room_keys WHERE user_id = ? AND version = ?")
        params: list[Any] = [user_id, version]
        if room_id is not None:
            sql += " AND room_id = ?"
            params.append(room_id)
            if session_id is not None:
                sql += " AND session_id = ?"
                params.append(session_id)
        rows = await self.db.execute("get_backup_keys", sql, *params)
        out: dict[str, dict[str, JsonDict]] = {}
        for r_id, s_id, fmi, fc, verified, data in rows:
            out.setdefault(r_id, {})[s_id] = {"first_message_index": int(fmi), "forwarded_count": int(fc),
                                              "is_verified": bool(verified), "session_data": json.loads(data)}
        return out

    async def delete_keys(self, user_id: str, version: int, room_id: str | None = None,
                          session_id: str | None = None) -> tuple[int, int]:
        """Delete keys of the version (all, one room or one session); returns ``(etag, count)`` afterwards."""

        def _txn(txn: Txn) -> tuple[int, int]:
            sql = "DELETE FROM e2e_room_keys WHERE user_id = ? AND version = ?"
            params: list[Any] = [user_id, version]
            if room_id is not None:
                sql += " AND room_id = ?"
                params.append(room_id)
                if session_id is not None:
                    sql += " AND session_id = ?"
                    params.append(session_id)
            txn.execute(sql, params)
            return self._finish_change_txn(txn, user_id, version, txn.rowcount > 0)

        return await self.db.run_interaction("delete_backup_keys", _txn)


def _encode(obj: Any) -> str:
    return encode_canonical_json(obj).decode("utf-8")

"""Users, devices and access tokens.

Access-token lookups are on every request, so they are cached in memory; every path that revokes a token goes
through this store and drops it from the cache.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from homeserver.storage.database import Database, Txn
from homeserver.streams import StreamIdGenerator


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What an access token stands for."""

    user_id: str
    device_id: str | None
    token_id: int
    deactivated: bool
    valid_until_ms: int | None


def now_ms() -> int:
    """The wall-clock time in milliseconds since the epoch (row creation timestamps)."""
    return int(time.time() * 1000)


class AccountStore:
    """SQL for ``users``, ``devices`` and ``access_tokens``."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self._token_cache: dict[str, TokenInfo | None] = {}
        rows = db.run_interaction_sync("max_token_id", lambda t: t.execute(
            "SELECT COALESCE(MAX(id), 0) FROM access_tokens").fetchone())
        self._token_ids = StreamIdGenerator(int(rows[0]))

    # -- users -------------------------------------------------------------------------------------------------

    async def create_user(self, user_id: str, password_hash: str | None, appservice_id: str | None = None,
                          admin: bool = False, user_type: str | None = None) -> bool:
        """Insert a user; returns False if the user ID is taken (case-insensitively)."""

        def _txn(txn: Txn) -> bool:
            txn.execute("SELECT 1 FROM users WHERE LOWER(name) = LOWER(?)", (user_id,))
            if txn.fetchone():
                return False
            txn.execute(
                "INSERT INTO users (name, password_hash, creation_ts, admin, deactivated, appservice_id, user_type)"
                " VALUES (?, ?, ?, ?, 0, ?, ?)",
                (user_id, password_hash, now_ms(), 1 if admin else 0, appservice_id, user_type),
            )
            txn.execute("INSERT INTO profiles (user_id, displayname, avatar_url) VALUES (?, ?, NULL)",
                        (user_id, user_id[1:].split(":", 1)[0]))
            return True

        return await self.db.run_interaction("create_user", _txn)

    async def get_user(self, user_id: str) -> dict[str, Any] | None:
        """``{"name", "password_hash", "admin", "deactivated", "appservice_id", "creation_ts"}`` or None."""
        rows = await self.db.execute(
            "get_user",
            "SELECT name, password_hash, admin, deactivated, appservice_id, creation_ts FROM users WHERE name = ?",
            user_id,
        )
        if not rows:
            return None
        name, pw, admin, deactivated, as_id, ts = rows[0]
        return {"name": name, "password_hash": pw, "admin": bool(admin), "deactivated": bool(deactivated),
                "appservice_id": as_id, "creation_ts": ts}

    async def find_user_case_insensitive(self, user_id: str) -> list[str]:
        """Registered user IDs equal to ``user_id`` ignoring case (login and registration treat IDs differing only in
        case as one).
        """
        rows = await self.db.execute("find_user_ci", "SELECT name FROM users WHERE LOWER(name) = LOWER(?)", user_id)
        return [r[0] for r in rows]

    async def is_admin(self, user_id: str) -> bool:
        """True if ``user_id`` exists and is a server admin."""
        rows = await self.db.execute("is_admin", "SELECT admin FROM users WHERE name = ?", user_id)
        return bool(rows and rows[0][0])

    async def get_max_numeric_localpart(self, server_name: str) -> int:
        """The largest all-digit localpart of a user on ``server_name`` (0 if none), to seed generated IDs."""
        suffix = ":" + server_name

        def _txn(txn: Txn) -> int:
            txn.execute("SELECT name FROM users")
            best = 0
            for (name,) in txn.fetchall():
                if name.endswith(suffix):
                    local = name[1:-len(suffix)]
                    if local.isdigit() and len(local) < 19:
                        best = max(best, int(local))
            return best

        return await self.db.run_interaction("get_max_numeric_localpart", _txn)

    async def set_password_hash(self, user_id: str, password_hash: str | None) -> None:
        """Replace the user's bcrypt hash; None removes the password (no password login)."""
        await self.db.execute("set_password_hash", "UPDATE users SET password_hash = ? WHERE name = ?",
                              password_hash, user_id)

    async def set_deactivated(self, user_id: str) -> None:
        """Mark the user deactivated, drop the password hash and forget the user's cached access tokens."""
        await self.db.execute("set_deactivated", "UPDATE users SET deactivated = 1, password_hash = NULL "
                              "WHERE name = ?", user_id)
        self._token_cache = {k: v for k, v in self._token_cache.items() if v is None or v.user_id != user_id}

    async def set_initial_displayname(self, user_id: str, displayname: str) -> None:
        """Set the profile display name written by :meth:`create_user` (admin registration's ``displayname``)."""
        await self.db.execute("set_initial_displayname", "UPDATE profiles SET displayname = ? WHERE user_id = ?",
                              displayname, user_id)

    # -- devices -----------------------------------------------------------------------------------------------

    async def store_device(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """Create the device if it does not exist; returns True if it was created."""

        def _txn(txn: Txn) -> bool:
            txn.execute("SELECT 1 FROM devices WHERE user_id = ? AND device_id = ?", (user_id, device_id))
            if txn.fetchone():
                return False
            txn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, creation_ts) VALUES (?, ?, ?, ?)",
                (user_id, device_id, display_name, now_ms()),
            )
            return True

        return await self.db.run_interaction("store_device", _txn)

    async def get_devices(self, user_id: str) -> list[dict[str, Any]]:
        """Every device of ``user_id``, ordered by ID: ``{device_id, display_name, last_seen_ip, last_seen_ts (ms),
        user_id}``.
        """
        rows = await self.db.execute(
            "get_devices",
            "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = ? "
            "ORDER BY device_id",
            user_id,
        )
        return [{"device_id": d, "display_name": n, "last_seen_ip": ip, "last_seen_ts": ts, "user_id": user_id}
                for d, n, ip, ts in rows]

    async def get_device(self, user_id: str, device_id: str) -> dict[str, Any] | None:
        """One device as in :meth:`get_devices`, or None if the user has no such device."""
        rows = await self.db.execute(
            "get_device",
            "SELECT device_id, display_name, last_seen_ip, last_seen_ts FROM devices WHERE user_id = ? AND "
            "device_id = ?",
            user_id, device_id,
        )
        if not rows:
            return None
        d, n, ip, ts = rows[0]
        return {"device_id": d, "display_name": n, "last_seen_ip": ip, "last_seen_ts": ts, "user_id": user_id}

    async def get_device_connections(self, user_id: str) -> dict[str, list[dict[str, Any]]]:
        """``{device_id: [{"ip", "last_seen" (ms), "user_agent"}]}`` (an empty list for a never-seen device)."""
        rows = await self.db.execute(
            "get_device_connections",
            "SELECT device_id, last_seen_ip, last_seen_ts, last_seen_user_agent FROM devices WHERE user_id = ?",
            user_id,
        )
        return {d: ([{"ip": ip, "last_seen": ts, "user_agent": ua}] if ts is not None else [])
                for d, ip, ts, ua in rows}

    async def update_device_display_name(self, user_id: str, device_id: str, display_name: str | None) -> bool:
        """Set a device's display name (None clears it); False if the device does not exist."""
        def _txn(txn: Txn) -> bool:
            txn.execute("UPDATE devices SET display_name = ? WHERE user_id = ? AND device_id = ?",
                        (display_name, user_id, device_id))
            return txn.rowcount > 0

        return await self.db.run_interaction("update_device_display_name", _txn)

    async def delete_devices(self, user_id: str, device_ids: list[str]) -> None:
        """Delete devices and revoke their access tokens."""

        def _txn(txn: Txn) -> None:
            clause, params = txn.in_list("device_id", device_ids)
            txn.execute(f"DELETE FROM devices WHERE user_id = ? AND {clause}", [user_id, *params])
            txn.execute(f"DELETE FROM access_tokens WHERE user_id = ? AND {clause}", [user_id, *params])

        await self.db.run_interaction("delete_devices", _txn)
        drop = set(device_ids)
        self._token_cache = {
            k: v for k, v in self._token_cache.items()
            if v is None or not (v.user_id == user_id and v.device_id in drop)
        }

    async def record_last_seen(self, user_id: str, device_id: str, ip: str, user_agent: str | None,
                               ts: int) -> None:
        """Store the device's last IP, user agent and ``ts`` (ms since the epoch)."""
        await self.db.execute(
            "record_last_seen",
            "UPDATE devices SET last_seen_ip = ?, last_seen_ts = ?, last_seen_user_agent = ? "
            "WHERE user_id = ? AND device_id = ?",
            ip, ts, user_agent, user_id, device_id,
        )

    # -- access tokens -----------------------------------------------------------------------------------------

    async def add_access_token(self, user_id: str, device_id: str | None, token: str,
                               valid_until_ms: int | None = None) -> int:
        """Store a new access token for ``user_id``/``device_id``, valid until ``valid_until_ms`` (ms since the epoch;
        None: no expiry). Returns the token's row ID.
        """
        token_id = self._token_ids.allocate()
        try:
            await self.db.execute(
                "add_access_token",
                "INSERT INTO access_tokens (id, token, user_id, device_id, valid_until_ms, creation_ts) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                token_id, token, user_id, device_id, valid_until_ms, now_ms(),
            )
        finally:
            self._token_ids.mark_done(token_id)
        self._token_cache.pop(token, None)
        return token_id

    async def get_user_by_access_token(self, token: str) -> TokenInfo | None:
        """The token's owner, or None if the token is unknown, revoked or expired."""
        if token in self._token_cache:
            info = self._token_cache[token]
        else:
            rows = await self.db.execute(
                "get_user_by_access_token",
                "SELECT t.user_id, t.device_id, t.id, u.deactivated, t.valid_until_ms FROM access_tokens t "
                "JOIN users u ON u.name = t.user_id WHERE t.token = ?",
                token,
            )
            info = TokenInfo(rows[0][0], rows[0][1], rows[0][2], bool(rows[0][3]), rows[0][4]) if rows else None
            if len(self._token_cache) > 50_000:
                self._token_cache.clear()
            self._token_cache[token] = info
        if info is not None and info.valid_until_ms is not None and info.valid_until_ms < now_ms():
            return None
        return info

    async def delete_access_token_by_id(self, token_id: int) -> None:
        """Revoke the token with id ``token_id`` (``Requester.access_token_id``)."""
        await self.db.execute("delete_access_token_by_id", "DELETE FROM access_tokens WHERE id = ?", token_id)
        self._token_cache = {k: v for k, v in self._token_cache.items() if v is None or v.token_id != token_id}

    async def delete_access_token(self, token: str) -> None:
        """Revoke ``token`` (no error if unknown) and drop it from the cache."""
        await self.db.execute("delete_access_token", "DELETE FROM access_tokens WHERE token = ?", token)
        self._token_cache.pop(token, None)

    async def delete_access_tokens_for_user(self, user_id: str, except_token_id: int | None = None) -> list[str]:
        """Revoke every token of ``user_id`` except ``except_token_id``; returns the device IDs that lost tokens."""

        def _txn(txn: Txn) -> list[str]:
            txn.execute("SELECT id, device_id FROM access_tokens WHERE user_id = ?", (user_id,))
            rows = [r for r in txn.fetchall() if r[0] != except_token_id]
            for token_id, _ in rows:
                txn.execute("DELETE FROM access_tokens WHERE id = ?", (token_id,))
            return [d for _, d in rows if d is not None]

        devices = await self.db.run_interaction("delete_access_tokens_for_user", _txn)
        self._token_cache = {
            k: v for k, v in self._token_cache.items()
            if v is None or v.user_id != user_id or v.token_id == except_token_id
        }
        return devices

    # -- user-interactive auth sessions -------------------------------------------------------------------------
    # Spec: Client-Server API, "User-Interactive Authentication API". Sessions live in the database so that a
    # restart between the 401 and the completing request does not lose them.

    async def create_ui_auth_session(self, session_id: str, uri: str, method: str, clientdict: dict[str, Any],
                                     user_id: str | None, creation_ts: int, expire_before_ms: int) -> None:
        """Store a new session (``completed`` empty) created at ``creation_ts`` (ms) and drop sessions created
        before ``expire_before_ms``."""

        def _txn(txn: Txn) -> None:
            txn.execute("DELETE FROM ui_auth_sessions WHERE creation_ts < ?", (expire_before_ms,))
            txn.execute(
                "INSERT INTO ui_auth_sessions (session_id, creation_ts, user_id, uri, method, clientdict, serverdict,"
                " completed) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, creation_ts, user_id, uri, method, json.dumps(clientdict), "{}", "[]"),
            )

        await self.db.run_interaction("create_ui_auth_session", _txn)

    async def get_ui_auth_session(self, session_id: str) -> dict[str, Any] | None:
        """``{"session_id", "creation_ts" (ms), "user_id", "uri", "method", "clientdict", "serverdict",
        "completed" (list of stage types)}`` or None for an unknown session."""
        rows = await self.db.execute(
            "get_ui_auth_session",
            "SELECT session_id, creation_ts, user_id, uri, method, clientdict, serverdict, completed "
            "FROM ui_auth_sessions WHERE session_id = ?",
            session_id,
        )
        if not rows:
            return None
        sid, ts, user_id, uri, method, clientdict, serverdict, completed = rows[0]
        return {"session_id": sid, "creation_ts": ts, "user_id": user_id, "uri": uri, "method": method,
                "clientdict": json.loads(clientdict), "serverdict": json.loads(serverdict),
                "completed": json.loads(completed)}

    async def mark_ui_auth_stage_complete(self, session_id: str, stage: str,
                                          serverdict_update: dict[str, Any] | None = None) -> list[str]:
        """Add ``stage`` to the session's completed stages (and merge ``serverdict_update``); returns the
        completed stages."""

        def _txn(txn: Txn) -> list[str]:
            txn.execute("SELECT completed, serverdict FROM ui_auth_sessions WHERE session_id = ?", (session_id,))
            row = txn.fetchone()
            if row is None:
                return [stage]
            completed = json.loads(row[0])
            serverdict = json.loads(row[1])
            if stage not in completed:
                completed.append(stage)
            serverdict.update(serverdict_update or {})
            txn.execute("UPDATE ui_auth_sessions SET completed = ?, serverdict = ? WHERE session_id = ?",
                        (json.dumps(completed), json.dumps(serverdict), session_id))
            return completed

        return await self.db.run_interaction("mark_ui_auth_stage_complete", _txn)

    async def update_ui_auth_clientdict(self, session_id: str, clientdict: dict[str, Any]) -> None:
        """Replace the request body remembered for UIA session ``session_id`` (stored as JSON)."""
        await self.db.execute("update_ui_auth_clientdict",
                              "UPDATE ui_auth_sessions SET clientdict = ? WHERE session_id = ?",
                              json.dumps(clientdict), session_id)

    async def delete_ui_auth_session(self, session_id: str) -> None:
        """Forget UIA session ``session_id`` (once its request has run)."""
        await self.db.execute("delete_ui_auth_session", "DELETE FROM ui_auth_sessions WHERE session_id = ?",
                              session_id)

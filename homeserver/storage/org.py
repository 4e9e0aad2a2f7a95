"""SQL for the organisation structure org_sync manages (issue 9): ``org_departments`` and ``org_people``."""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.storage.database import Database, Txn


@dataclass(frozen=True, slots=True)
class Department:
    """A managed department: its path (``Engineering/Platform``), its space, its default (team) room."""

    path: str
    space_id: str
    room_id: str
    active: bool


class OrgStore:
    """``hs.org_store``: the departments' spaces and rooms, and the people org_sync manages."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def get_departments(self) -> dict[str, Department]:
        """Every department ever created, active or not: ``{path: Department}``."""
        rows = await self.db.execute("org_get_departments",
                                     "SELECT path, space_id, room_id, active FROM org_departments")
        return {r[0]: Department(r[0], r[1], r[2], bool(r[3])) for r in rows}

    async def add_department(self, path: str, space_id: str, room_id: str) -> None:
        """Store an active department at ``path`` with its space and room IDs."""
        await self.db.execute("org_add_department",
                              "INSERT INTO org_departments (path, space_id, room_id, active) VALUES (?, ?, ?, 1)",
                              path, space_id, room_id)

    async def set_department_active(self, path: str, active: bool) -> None:
        """Mark the department at ``path`` active or inactive."""
        await self.db.execute("org_set_department_active", "UPDATE org_departments SET active = ? WHERE path = ?",
                              1 if active else 0, path)

    async def get_people(self) -> dict[str, tuple[str, int | None]]:
        """``{user_id: (department path, left_ts ms or None)}`` of everyone org_sync has managed."""
        rows = await self.db.execute("org_get_people", "SELECT user_id, department, left_ts FROM org_people")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def upsert_person(self, user_id: str, department: str) -> None:
        """Record ``user_id`` as managed, in ``department`` (clears a leaving date)."""

        def _txn(txn: Txn) -> None:
            txn.execute("UPDATE org_people SET department = ?, left_ts = NULL WHERE user_id = ?",
                        (department, user_id))
            if txn.rowcount == 0:
                txn.execute("INSERT INTO org_people (user_id, department, left_ts) VALUES (?, ?, NULL)",
                            (user_id, department))

        await self.db.run_interaction("org_upsert_person", _txn)

    async def mark_left(self, user_id: str, left_ts: int) -> None:
        """Record that ``user_id`` left the organisation at ``left_ts`` (ms since the epoch)."""
        await self.db.execute("org_mark_left", "UPDATE org_people SET left_ts = ? WHERE user_id = ?",
                              left_ts, user_id)

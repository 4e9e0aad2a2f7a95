"""Organisation admin API (issue 9), for server admins only (``users.admin``), used by ``scripts/org_sync``:

- ``POST /_tocsin/admin/v1/org/sync`` ``{"people": [...], "dry_run": bool}`` -> ``{"dry_run", "changes": [...],
  "passwords": {user_id: initial password}}``; a bad chart is 400 ``M_INVALID_PARAM`` with ``errors: [{"line",
  "field", "error"}]`` and nothing changed.
- ``GET /_tocsin/admin/v1/org/departments`` -> ``{"departments": {path: {"space_id", "room_id", "members", "space_members"}}}``.
- ``POST /_tocsin/admin/v1/org/team_room`` ``{"department": "Engineering/Platform"}`` -> ``{"room_id",
  "space_id", "members"}`` (every member of the department joined).
- ``POST /_tocsin/admin/v1/org/dm`` ``{"user_ids": [a, b]}`` -> ``{"room_id", "created"}`` (both joined, both
  users' ``m.direct`` updated).
"""

from __future__ import annotations

from typing import Any

from homeserver.http.errors import BadJsonError, ForbiddenError
from homeserver.http.server import parse_json_object

PREFIX = r"/_tocsin/admin/v1/org"


def register_servlets(hs: Any, router: Any) -> None:
    """Register the organisation admin API under ``/_tocsin/admin/v1/org``: ``POST sync``, ``GET departments``,
    ``POST team_room`` and ``POST dm`` (server admins only) on ``router``, served by ``hs``'s handlers and stores.

    Each servlet returns ``(status, json_body)``; errors are raised as ``MatrixError`` subclasses (spec errcodes).
    Spec: none (Tocsin extension; see the module docstring).
    """
    handler = hs.org_handler

    async def _admin(request: Any) -> Any:
        requester = await hs.auth.get_user_by_req(request)
        if not await hs.account_store.is_admin(requester.user_id):
            raise ForbiddenError("You are not a server admin")
        return requester

    async def sync(request: Any) -> tuple[int, Any]:
        admin = await _admin(request)
        body = parse_json_object(request)
        dry_run = body.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise BadJsonError("dry_run must be true or false")
        return 200, await handler.sync(admin, body.get("people"), dry_run)

    async def departments(request: Any) -> tuple[int, Any]:
        await _admin(request)
        return 200, await handler.describe()

    async def team_room(request: Any) -> tuple[int, Any]:
        admin = await _admin(request)
        department = parse_json_object(request).get("department")
        if not isinstance(department, str) or not department.strip("/ "):
            raise BadJsonError("department must be a department path")
        return 200, await handler.team_room(admin, department)

    async def direct(request: Any) -> tuple[int, Any]:
        admin = await _admin(request)
        users = parse_json_object(request).get("user_ids")
        if not isinstance(users, list) or len(users) != 2 or not all(isinstance(u, str) for u in users):
            raise BadJsonError("user_ids must be a list of two user IDs")
        return 200, await handler.direct_message(admin, users[0], users[1])

    router.register("POST", PREFIX + r"/sync", sync, "org_sync")
    router.register("GET", PREFIX + r"/departments", departments, "org_departments")
    router.register("POST", PREFIX + r"/team_room", team_room, "org_team_room")
    router.register("POST", PREFIX + r"/dm", direct, "org_dm")

"""Organisation structure (issue 9): the org chart as users, profile fields, department spaces and team rooms;
quick conversations (team rooms, DMs with ``m.direct``).

The org chart is a list of people: ``{"username", "displayname", "email", "phone", "title", "department",
"manager", "fields"?: {namespaced key: value}, "line"?: int}``. ``department`` is a path such as
``Engineering/Platform/SRE``; every level is a space (``m.space``) with a default team room; a sub-department's
space is a child of its parent's space. A person is a member of the spaces along their department path and of
their department's team room. Sub-department spaces and team rooms use the ``restricted`` join rule (allowed via
the parent space), so colleagues can browse and join them from ``/hierarchy``.

:meth:`OrgHandler.sync` validates the whole chart first (nothing changes when any entry is bad), then computes the
plan by comparing the chart with the server, then applies it. Everything it changes is derived from the chart, so
running it again with the same chart changes nothing.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer

from homeserver.handlers.profile import (
    FIELD_DEPARTMENT,
    FIELD_EMAIL,
    FIELD_MANAGER,
    FIELD_PHONE,
    FIELD_TITLE,
    KEY_NAME_RE,
    MAX_DISPLAYNAME_LEN,
    MAX_KEY_BYTES,
    PROFILE_FIELDS,
    encoded_size,
)
from homeserver.handlers.registration import check_localpart_grammar
from homeserver.http.auth import Requester
from homeserver.http.errors import BadJsonError, Codes, MatrixError, NotFoundError

logger = logging.getLogger(__name__)

MAX_DEPARTMENT_DEPTH = 6  # levels in a department path
MAX_DEPARTMENT_PART_LEN = 100  # characters of one level's name
MAX_PEOPLE = 100_000
ORG_ROOM_VERSION = "10"
# The local user that creates and administers the department spaces and rooms, so any server admin can run a
# sync (the rooms never depend on which admin ran the first one). Created on first use, without a password.
ORG_BOT_LOCALPART = "tocsin-org"  # restricted joins (v8+) with integer-only power levels
# Chart attributes that become profile fields (the key each one is stored under).
CHART_FIELDS = {"title": FIELD_TITLE, "department": FIELD_DEPARTMENT, "phone": FIELD_PHONE, "email": FIELD_EMAIL,
                "manager": FIELD_MANAGER}
MANAGED_FIELDS = tuple(CHART_FIELDS.values())


class OrgChartError(MatrixError):
    """400 ``M_INVALID_PARAM`` listing every problem of a chart: ``errors: [{"line", "field", "error"}]``."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        where = f"line {first['line']}" if first.get("line") is not None else "chart"
        super().__init__(400, f"{len(errors)} problem(s) in the org chart; first: {where}: {first['error']}",
                         Codes.INVALID_PARAM, errors=errors)


@dataclass
class Person:
    """One validated chart entry; ``department`` normalised (parts stripped, joined by ``/``)."""

    line: int | None
    localpart: str
    user_id: str
    displayname: str
    department: str
    fields: dict[str, Any]  # profile key -> value (org keys and extra namespaced keys); empty values omitted


@dataclass
class Plan:
    """What a sync will do. ``changes`` is the human-readable list (also the dry-run output)."""

    new_departments: list[str] = field(default_factory=list)
    reactivate_departments: list[str] = field(default_factory=list)
    retire_departments: list[str] = field(default_factory=list)
    create_users: list[Person] = field(default_factory=list)
    displaynames: dict[str, str] = field(default_factory=dict)  # existing users only
    set_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    delete_fields: dict[str, list[str]] = field(default_factory=dict)
    record_people: dict[str, str] = field(default_factory=dict)  # user_id -> department
    joins: list[tuple[str, str]] = field(default_factory=list)  # (user_id, department path or "space:" path)
    leaves: list[tuple[str, str]] = field(default_factory=list)  # (user_id, room_id)
    deactivate: list[str] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


def department_prefixes(path: str) -> list[str]:
    """``"A/B/C"`` -> ``["A", "A/B", "A/B/C"]``."""
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def validate_chart(people: Any, server_name: str, max_value_bytes: int) -> list[Person]:
    """Check a whole chart and return it as :class:`Person` list, or raise :class:`OrgChartError` naming every
    bad entry (by its ``line`` when given, else its 1-based position) and key: missing or malformed username,
    duplicate usernames (case-insensitive), missing display name, empty / too deep / empty-part departments,
    unknown managers, manager cycles, values over ``max_value_bytes`` and bad extra keys."""
    if not isinstance(people, list):
        raise BadJsonError("people must be a list")
    if len(people) > MAX_PEOPLE:
        raise BadJsonError(f"at most {MAX_PEOPLE} people per chart")
    errors: list[dict[str, Any]] = []

    def err(line: int | None, key: str | None, msg: str) -> None:
        errors.append({"line": line, "field": key, "error": msg})

    out: list[Person] = []
    seen: dict[str, int | None] = {}
    for index, entry in enumerate(people):
        line = entry.get("line") if isinstance(entry, dict) and isinstance(entry.get("line"), int) else index + 1
        if not isinstance(entry, dict):
            err(line, None, "entry must be an object")
            continue
        bad = False
        username = entry.get("username")
        if not isinstance(username, str) or not username.strip():
            err(line, "username", "username is missing")
            continue
        username = username.strip()
        if username.lower() == ORG_BOT_LOCALPART:
            err(line, "username", f"username {username!r} is reserved for the server's organisation bot")
            bad = True
        try:
            check_localpart_grammar(username, server_name)
        except MatrixError as e:
            err(line, "username", f"username {username!r} is not a valid Matrix localpart: {e.msg}")
            bad = True
        if username.lower() in seen:
            err(line, "username", f"duplicate username {username!r} (first on line {seen[username.lower()]})")
            bad = True
        seen.setdefault(username.lower(), line)
        displayname = entry.get("displayname")
        if not isinstance(displayname, str) or not displayname.strip():
            err(line, "displayname", "display name is missing")
            bad = True
            displayname = ""
        elif len(displayname.strip()) > MAX_DISPLAYNAME_LEN:
            err(line, "displayname", f"display name is longer than {MAX_DISPLAYNAME_LEN} characters")
            bad = True
        department = entry.get("department")
        parts: list[str] = []
        if not isinstance(department, str) or not department.strip():
            err(line, "department", "department is missing")
            bad = True
        else:
            parts = [p.strip() for p in department.strip().strip("/").split("/")] if department.strip("/ ") else []
            if not parts or any(not p for p in parts):
                err(line, "department", f"department path {department!r} has an empty part")
                bad = True
            elif len(parts) > MAX_DEPARTMENT_DEPTH:
                err(line, "department", f"department path {department!r} is deeper than {MAX_DEPARTMENT_DEPTH} "
                                        "levels")
                bad = True
            elif any(len(p) > MAX_DEPARTMENT_PART_LEN for p in parts):
                err(line, "department", f"a part of department path {department!r} is longer than "
                                        f"{MAX_DEPARTMENT_PART_LEN} characters")
                bad = True
        fields: dict[str, Any] = {}
        for attr, key in CHART_FIELDS.items():
            value = entry.get(attr)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                err(line, attr, f"{attr} must be a string")
                bad = True
                continue
            fields[key] = value.strip()
        extra = entry.get("fields") or {}
        if not isinstance(extra, dict):
            err(line, "fields", "fields must be an object")
            bad = True
            extra = {}
        for key, value in extra.items():
            if len(key.encode("utf-8")) > MAX_KEY_BYTES or not KEY_NAME_RE.match(key) or key in PROFILE_FIELDS \
                    or key in MANAGED_FIELDS:
                err(line, key, f"profile key {key!r} is not a namespaced key this chart may set")
                bad = True
                continue
            if value is not None and value != "":
                fields[key] = value
        for key, value in fields.items():
            if encoded_size(value) > max_value_bytes:
                err(line, key, f"value of {key} is larger than {max_value_bytes} bytes")
                bad = True
        if bad:
            continue
        path = "/".join(parts)
        fields[FIELD_DEPARTMENT] = path
        out.append(Person(line, username, f"@{username}:{server_name}", displayname.strip(), path, fields))

    by_name = {p.localpart.lower(): p for p in out}
    for person in out:
        manager = person.fields.get(FIELD_MANAGER)
        if manager is None:
            continue
        name = manager[1:].split(":", 1)[0] if manager.startswith("@") else manager
        if name.lower() == person.localpart.lower():
            err(person.line, "manager", f"{person.localpart} is their own manager")
        elif name.lower() not in by_name and name.lower() not in seen:
            err(person.line, "manager", f"manager {manager!r} is not in the chart")
        elif name.lower() in by_name:
            person.fields[FIELD_MANAGER] = by_name[name.lower()].user_id
    # Manager cycles: follow each chain; a chain that comes back to a person already on it is a cycle.
    managers = {p.user_id: p.fields.get(FIELD_MANAGER) for p in out}
    lines = {p.user_id: p.line for p in out}
    reported: set[str] = set()
    for start in managers:
        chain: list[str] = []
        current: str | None = start
        while current is not None and current in managers and current not in chain and len(chain) <= len(managers):
            chain.append(current)
            current = managers[current]
        if current is not None and current in chain:
            cycle = chain[chain.index(current):]
            if not reported & set(cycle):
                reported.update(cycle)
                names = " -> ".join(u[1:].split(":", 1)[0] for u in cycle + [current])
                err(lines[current], "manager", f"manager cycle: {names}")
    if errors:
        errors.sort(key=lambda e: (e["line"] if e["line"] is not None else 0))
        raise OrgChartError(errors)
    return out


class OrgHandler:
    """``hs.org_handler``.

    Public API:
    - ``await sync(admin: Requester, people: list[dict], dry_run: bool) -> {"dry_run", "changes": [...],
      "passwords": {user_id: initial password}}`` (OrgChartError 400 for a bad chart, nothing changed)
    - ``await team_room(admin, department) -> {"room_id", "space_id", "members"}`` (NotFoundError if unknown)
    - ``await direct_message(admin, user_a, user_b) -> {"room_id", "created": bool}``
    - ``await describe() -> {"departments": {path: {"space_id", "room_id", "members", "space_members"}}}``
      (joined user IDs of the team room and of the space)

    ``admin`` arguments are the server admin who asked (the REST layer checks that); the spaces and rooms are
    created and administered by the organisation bot (:meth:`bot`).
    """

    def __init__(self, hs: Any) -> None:
        self.hs = hs
        self.store = hs.org_store
        self._lock = defer.DeferredLock()

    # -- the org chart -------------------------------------------------------------------------------------------

    async def sync(self, admin: Requester, people: Any, dry_run: bool) -> dict[str, Any]:
        """Make the server match the chart (see the module docstring). One sync at a time."""
        chart = validate_chart(people, self.hs.hostname, self.hs.profile_handler.max_value_bytes)
        await self._lock.acquire()
        try:
            plan = await self._plan(chart)
            passwords: dict[str, str] = {}
            if not dry_run:
                passwords = await self._apply(await self.bot(), chart, plan)
            return {"dry_run": dry_run, "changes": plan.changes, "passwords": passwords}
        finally:
            self._lock.release()

    async def bot(self) -> Requester:
        """The organisation bot (``@tocsin-org:<server>``), created on first use."""
        user_id = f"@{ORG_BOT_LOCALPART}:{self.hs.hostname}"
        if await self.hs.account_store.get_user(user_id) is None:
            await self.hs.registration_handler.register_user(ORG_BOT_LOCALPART, None)
            await self.hs.account_store.set_initial_displayname(user_id, "Organisation")
        return Requester(user_id, None, None)

    async def _memberships(self, room_id: str) -> frozenset[str]:
        joined = await self.hs.room_store.get_users_in_room(room_id)
        invited = await self.hs.room_store.get_invited_users(room_id)
        return joined | invited

    async def _plan(self, chart: list[Person]) -> Plan:
        plan = Plan()
        accounts = self.hs.account_store
        profiles = self.hs.profile_store
        departments = await self.store.get_departments()
        managed = await self.store.get_people()
        wanted_paths: set[str] = set()
        for person in chart:
            wanted_paths.update(department_prefixes(person.department))
        for path in sorted(wanted_paths):
            if path not in departments:
                plan.new_departments.append(path)
                plan.changes.append({"action": "create_department", "department": path})
            elif not departments[path].active:
                plan.reactivate_departments.append(path)
                plan.changes.append({"action": "relink_department", "department": path})
        for path, dept in sorted(departments.items()):
            if dept.active and path not in wanted_paths:
                plan.retire_departments.append(path)
                plan.changes.append({"action": "unlink_department", "department": path})

        # Who is in which managed room now (joined or invited).
        room_members: dict[str, frozenset[str]] = {}
        room_of: dict[str, str] = {}  # managed room_id -> description
        for path, dept in departments.items():
            room_members[dept.space_id] = await self._memberships(dept.space_id)
            room_members[dept.room_id] = await self._memberships(dept.room_id)
            room_of[dept.space_id] = f"space {path}"
            room_of[dept.room_id] = f"room {path}"

        errors = []
        for person in chart:
            user = await accounts.get_user(person.user_id)
            if user is not None and user["deactivated"]:
                errors.append({"line": person.line, "field": "username",
                               "error": f"{person.user_id} is a deactivated account and cannot be reused"})
                continue
            if user is None:
                plan.create_users.append(person)
                plan.changes.append({"action": "create_user", "user_id": person.user_id,
                                     "displayname": person.displayname, "department": person.department})
                plan.set_fields[person.user_id] = dict(person.fields)
            else:
                profile = await profiles.get_profile(person.user_id) or {}
                if profile.get("displayname") != person.displayname:
                    plan.displaynames[person.user_id] = person.displayname
                    plan.changes.append({"action": "set_displayname", "user_id": person.user_id,
                                         "displayname": person.displayname})
                current = await profiles.get_custom_fields(person.user_id)
                changed = {k: v for k, v in person.fields.items() if current.get(k) != v}
                # Only org keys and keys the chart names are managed; a user's own m.tz etc. stay.
                removed = [k for k in MANAGED_FIELDS if k in current and k not in person.fields]
                if changed:
                    plan.set_fields[person.user_id] = changed
                    plan.changes.append({"action": "set_fields", "user_id": person.user_id, "fields": changed})
                if removed:
                    plan.delete_fields[person.user_id] = removed
                    plan.changes.append({"action": "delete_fields", "user_id": person.user_id, "keys": removed})
            if managed.get(person.user_id) != (person.department, None):
                plan.record_people[person.user_id] = person.department
                old = managed.get(person.user_id)
                if old is not None and old[0] != person.department and user is not None:
                    plan.changes.append({"action": "move", "user_id": person.user_id, "from": old[0],
                                         "to": person.department})
            wanted_rooms: set[str] = set()
            for path in department_prefixes(person.department):
                dept = departments.get(path)
                if dept is None or person.user_id not in room_members.get(dept.space_id, frozenset()):
                    plan.joins.append((person.user_id, "space:" + path))
                    plan.changes.append({"action": "join", "user_id": person.user_id, "space": path})
                if dept is not None:
                    wanted_rooms.add(dept.space_id)
            dept = departments.get(person.department)
            if dept is None or person.user_id not in room_members.get(dept.room_id, frozenset()):
                plan.joins.append((person.user_id, "room:" + person.department))
                plan.changes.append({"action": "join", "user_id": person.user_id, "room": person.department})
            if dept is not None:
                wanted_rooms.add(dept.room_id)
            if user is not None:
                for room_id, members in sorted(room_members.items()):
                    if person.user_id in members and room_id not in wanted_rooms:
                        plan.leaves.append((person.user_id, room_id))
                        plan.changes.append({"action": "leave", "user_id": person.user_id,
                                             "room": room_of[room_id]})
        if errors:
            raise OrgChartError(errors)
        in_chart = {p.user_id for p in chart}
        for user_id, (_dept, left_ts) in sorted(managed.items()):
            if left_ts is None and user_id not in in_chart:
                plan.deactivate.append(user_id)
                plan.changes.append({"action": "deactivate", "user_id": user_id})
        return plan

    async def _apply(self, admin: Requester, chart: list[Person], plan: Plan) -> dict[str, str]:
        passwords: dict[str, str] = {}
        departments = await self.store.get_departments()
        for path in plan.new_departments:  # sorted: parents before children
            departments[path] = await self._create_department(admin, path, departments)
        for path in plan.reactivate_departments:
            await self._link_department(admin, path, departments, linked=True)
            await self.store.set_department_active(path, True)
        for path in plan.retire_departments:
            await self._link_department(admin, path, departments, linked=False)
            await self.store.set_department_active(path, False)

        for person in plan.create_users:
            password = secrets.token_urlsafe(12)
            await self.hs.registration_handler.register_user(person.localpart, password)
            await self.hs.account_store.set_initial_displayname(person.user_id, person.displayname)
            passwords[person.user_id] = password
        for user_id, displayname in plan.displaynames.items():
            await self.hs.profile_handler.set_profile_field(Requester(user_id, None, None), user_id,
                                                            "displayname", displayname)
        for user_id, fields in plan.set_fields.items():
            await self.hs.profile_handler.set_fields_as_admin(user_id, fields)
        for user_id, keys in plan.delete_fields.items():
            await self.hs.profile_handler.set_fields_as_admin(user_id, {}, keys)
        for user_id, department in plan.record_people.items():
            await self.store.upsert_person(user_id, department)

        for user_id, room_id in plan.leaves:
            await self._leave(user_id, room_id)
        for user_id, target in plan.joins:
            kind, path = target.split(":", 1)
            dept = departments[path]
            await self._join(admin, user_id, dept.space_id if kind == "space" else dept.room_id)

        now = int(self.hs.clock.seconds() * 1000)
        from homeserver.rest.account import deactivate_account

        for user_id in plan.deactivate:
            await deactivate_account(self.hs, user_id)
            await self.store.mark_left(user_id, now)
        return passwords

    async def _create_department(self, admin: Requester, path: str, departments: dict[str, Any]) -> Any:
        """Create the department's space and team room and link them (parent's space already exists)."""
        name = path.rsplit("/", 1)[-1]
        parent = departments.get(path.rsplit("/", 1)[0]) if "/" in path else None
        host = self.hs.hostname
        creator = self.hs.room_creation_handler
        space_rules: dict[str, Any] = {"join_rule": "invite"}
        if parent is not None:
            space_rules = {"join_rule": "restricted",
                           "allow": [{"type": "m.room_membership", "room_id": parent.space_id}]}
        space_id, _ = await creator.create_room(admin, {
            "name": name, "topic": path, "preset": "private_chat", "room_version": ORG_ROOM_VERSION,
            "creation_content": {"type": "m.space"},
            "power_level_content_override": {"events_default": 100, "invite": 50},
            "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": space_rules},
                              {"type": "m.room.history_visibility", "state_key": "",
                               "content": {"history_visibility": "shared"}},
                              {"type": "m.room.guest_access", "state_key": "",
                               "content": {"guest_access": "forbidden"}}]
            + ([{"type": "m.space.parent", "state_key": parent.space_id,
                 "content": {"via": [host], "canonical": True}}] if parent is not None else []),
        })
        room_id, _ = await creator.create_room(admin, {
            "name": f"{name} team", "topic": f"Team room of {path}", "preset": "private_chat",
            "room_version": ORG_ROOM_VERSION,
            "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                               "content": {"join_rule": "restricted",
                                           "allow": [{"type": "m.room_membership", "room_id": space_id}]}},
                              {"type": "m.room.guest_access", "state_key": "",
                               "content": {"guest_access": "forbidden"}},
                              {"type": "m.space.parent", "state_key": space_id,
                               "content": {"via": [host], "canonical": True}}],
        })
        send = self.hs.event_creation_handler.create_and_send_event
        await send(admin, space_id, "m.space.child", {"via": [host], "suggested": True, "order": "0"},
                   state_key=room_id, ratelimit=False)
        if parent is not None:
            await send(admin, parent.space_id, "m.space.child", {"via": [host], "order": "1" + name[:40]},
                       state_key=space_id, ratelimit=False)
        await self.store.add_department(path, space_id, room_id)
        from homeserver.storage.org import Department

        return Department(path, space_id, room_id, True)

    async def _link_department(self, admin: Requester, path: str, departments: dict[str, Any],
                               linked: bool) -> None:
        """Add back or remove (empty content, per the spec) the parent's ``m.space.child`` of a department."""
        if "/" not in path:
            return
        parent = departments.get(path.rsplit("/", 1)[0])
        dept = departments[path]
        if parent is None:
            return
        name = path.rsplit("/", 1)[-1]
        content = {"via": [self.hs.hostname], "order": "1" + name[:40]} if linked else {}
        await self.hs.event_creation_handler.create_and_send_event(
            admin, parent.space_id, "m.space.child", content, state_key=dept.space_id, ratelimit=False)

    async def _join(self, admin: Requester, user_id: str, room_id: str) -> None:
        """Join ``user_id`` to a managed room: a restricted join vouched for by a member when the user is in an
        allowed room, otherwise an invite by ``admin`` first."""
        members = self.hs.room_member_handler
        user = Requester(user_id, None, None)
        if await self.hs.room_store.get_membership(room_id, user_id) == "join":
            return
        content: dict[str, Any] = {}
        if await self.hs.room_store.get_membership(room_id, user_id) != "invite":
            authoriser = await members.pick_join_authoriser(room_id, user_id)
            if authoriser is None:
                await members.update_membership(admin, user_id, room_id, "invite")
            else:
                content["join_authorised_via_users_server"] = authoriser
        await members.send_membership(user, room_id, user_id, "join", content)

    async def _leave(self, user_id: str, room_id: str) -> None:
        await self.hs.room_member_handler.send_membership(Requester(user_id, None, None), room_id, user_id,
                                                          "leave")

    # -- quick conversations ------------------------------------------------------------------------------------

    async def describe(self) -> dict[str, Any]:
        """The managed departments (active ones) with their joined members, for tools and tests."""
        out: dict[str, Any] = {}
        for path, dept in sorted((await self.store.get_departments()).items()):
            if not dept.active:
                continue
            members = await self.hs.room_store.get_users_in_room(dept.room_id)
            space_members = await self.hs.room_store.get_users_in_room(dept.space_id)
            out[path] = {"space_id": dept.space_id, "room_id": dept.room_id, "members": sorted(members),
                         "space_members": sorted(space_members)}
        return {"departments": out}

    async def team_room(self, admin: Requester, department: str) -> dict[str, Any]:
        """The department's team room with every current member of the department joined (idempotent).
        Raises NotFoundError for a department org_sync does not manage."""
        path = "/".join(p.strip() for p in department.strip("/").split("/"))
        dept = (await self.store.get_departments()).get(path)
        if dept is None or not dept.active:
            raise NotFoundError(f"Unknown department {department!r}")
        people = await self.store.get_people()
        admin = await self.bot()
        for user_id, (user_dept, left_ts) in sorted(people.items()):
            if left_ts is None and user_dept == path:
                for prefix in department_prefixes(path):
                    await self._join(admin, user_id, (await self.store.get_departments())[prefix].space_id)
                await self._join(admin, user_id, dept.room_id)
        members = await self.hs.room_store.get_users_in_room(dept.room_id)
        return {"room_id": dept.room_id, "space_id": dept.space_id, "members": sorted(members)}

    async def direct_message(self, admin: Requester, user_a: str, user_b: str) -> dict[str, Any]:
        """A DM between two local users, both joined, recorded in both users' ``m.direct`` account data.
        Reuses a DM from ``user_a``'s ``m.direct`` where both are still joined. Raises NotFoundError for an
        unknown or deactivated user, BadJsonError for the same user twice."""
        if user_a == user_b:
            raise BadJsonError("A direct message needs two different users")
        for user_id in (user_a, user_b):
            user = await self.hs.account_store.get_user(user_id)
            if user is None or user["deactivated"]:
                raise NotFoundError(f"Unknown user {user_id}")
        data = self.hs.account_data_store
        direct = await data.get_account_data(user_a, "", "m.direct") or {}
        rooms = self.hs.room_store
        for room_id in direct.get(user_b, []) if isinstance(direct.get(user_b), list) else []:
            if user_a in await rooms.get_users_in_room(room_id) and user_b in await rooms.get_users_in_room(room_id):
                await self._add_direct(user_b, user_a, room_id)
                return {"room_id": room_id, "created": False}
        requester_a = Requester(user_a, None, None)
        room_id, _ = await self.hs.room_creation_handler.create_room(
            requester_a, {"preset": "trusted_private_chat", "is_direct": True, "invite": [user_b]})
        await self.hs.room_member_handler.send_membership(Requester(user_b, None, None), room_id, user_b, "join")
        await self._add_direct(user_a, user_b, room_id)
        await self._add_direct(user_b, user_a, room_id)
        return {"room_id": room_id, "created": True}

    async def _add_direct(self, owner: str, other: str, room_id: str) -> None:
        def change(old: dict[str, Any] | None) -> dict[str, Any]:
            content = dict(old or {})
            rooms = list(content.get(other) or []) if isinstance(content.get(other), list) else []
            if room_id not in rooms:
                rooms.append(room_id)
            content[other] = rooms
            return content

        current = await self.hs.account_data_store.get_account_data(owner, "", "m.direct") or {}
        if room_id in (current.get(other) or []):
            return
        await self.hs.account_data_store.update_account_data(owner, "", "m.direct", change)


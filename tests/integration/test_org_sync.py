"""scripts/org_sync end to end (issue 9), on SQLite and PostgreSQL: a 300-person chart in 25 departments is
imported, changed (moves, leavers, new hires, profile edits) and re-imported; after each run the department
spaces and rooms, memberships, profile fields, directory and hierarchy match the chart; an identical second run
changes nothing; bad charts are refused whole, naming the line and key; a client sees it all as a client would."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from typing import Any, Iterator

import pytest

from tests.integration.orglib import login, org_homeserver, register_admin, walk_hierarchy
from tests.support.client import Api, User, q, register
from tests.support.server import ROOT, HomeserverProcess

SCRIPT = os.path.join(ROOT, "scripts", "org_sync")
TOPS = ["Engineering", "Sales", "Finance", "People", "Operations"]
DEPARTMENTS = [d for t in TOPS for d in (t, f"{t}/Alpha", f"{t}/Alpha/Core", f"{t}/Beta", f"{t}/Beta/Core")]
COLUMNS = ["username", "display_name", "email", "phone", "title", "department", "manager"]


def base_chart() -> list[dict[str, str]]:
    """300 people, 12 per department; the first person of each department manages the others."""
    assert len(DEPARTMENTS) == 25
    people = []
    for i in range(300):
        dept = DEPARTMENTS[i % 25]
        people.append({"username": f"p{i:04d}", "display_name": f"Person {i:04d}", "email": f"p{i}@example.com",
                       "phone": f"+1555{i:06d}", "title": f"Title {i % 7}", "department": dept,
                       "manager": "" if i < 25 else f"p{i % 25:04d}"})
    return people


def changed_chart() -> list[dict[str, str]]:
    """Moves (p0030-p0049 to another department), leavers (p0200-p0214), new hires (n0000-n0009), edits."""
    people = [dict(p) for p in base_chart() if not 200 <= int(p["username"][1:]) <= 214]
    for p in people:
        i = int(p["username"][1:])
        if 30 <= i <= 49:
            p["department"] = DEPARTMENTS[(i + 7) % 25]
            p["manager"] = f"p{(i + 7) % 25:04d}"
        if i == 60:
            p["title"] = "Head of Widgets"
        if i == 61:
            p["display_name"] = "Renamed Person"
        if i == 62:
            p["phone"] = ""
    for n in range(10):
        people.append({"username": f"n{n:04d}", "display_name": f"New Hire {n}", "email": f"n{n}@example.com",
                       "phone": f"+1666{n:06d}", "title": "Trainee", "department": DEPARTMENTS[(n * 3) % 25],
                       "manager": f"p{(n * 3) % 25:04d}"})
    return people


def write_csv(path: str, people: list[dict[str, str]], columns: list[str] = COLUMNS) -> str:
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(people)
    return path


def run_sync(hs: HomeserverProcess, admin: User, chart: str, *extra: str) -> tuple[int, Any, str]:
    """Run the real script; returns (exit status, parsed --json reply or None, stderr)."""
    proc = subprocess.run([sys.executable, SCRIPT, "--server", hs.base_url, "--token", admin.access_token,
                           "sync", chart, "--json", *extra], capture_output=True, text=True, timeout=600)
    body = json.loads(proc.stdout) if proc.returncode == 0 else None
    return proc.returncode, body, proc.stderr


@pytest.fixture(scope="module")
def org_hs(database: str) -> Iterator[HomeserverProcess]:
    yield from org_homeserver(database)


def prefixes(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]


def bot(hs: HomeserverProcess) -> str:
    return f"@tocsin-org:{hs.server_name}"


def uid(hs: HomeserverProcess, localpart: str) -> str:
    return f"@{localpart}:{hs.server_name}"


def check_matches(hs: HomeserverProcess, admin: User, people: list[dict[str, str]], gone: list[str],
                  passwords: dict[str, str]) -> dict[str, Any]:
    """Assert the server matches ``people`` exactly; ``gone`` are localparts that left (deactivated)."""
    api = admin.api
    deps = admin.ok("GET", "/_tocsin/admin/v1/org/departments")["departments"]
    wanted = {pre for p in people for pre in prefixes(p["department"])}
    assert set(deps) == wanted
    for path, dept in deps.items():
        in_dept = {uid(hs, p["username"]) for p in people if p["department"] == path}
        assert set(dept["members"]) == in_dept | {bot(hs)}, path
        below = {uid(hs, p["username"]) for p in people if path in prefixes(p["department"])}
        assert set(dept["space_members"]) == below | {bot(hs)}, path
    by_user = {uid(hs, p["username"]): p for p in people}
    for user_id, p in by_user.items():
        profile = admin.ok("GET", f"profile/{q(user_id)}")
        expected = {"displayname": p["display_name"], "io.tocsin.email": p["email"], "io.tocsin.title": p["title"],
                    "io.tocsin.department": p["department"]}
        if p["phone"]:
            expected["io.tocsin.phone"] = p["phone"]
        if p["manager"]:
            expected["io.tocsin.manager"] = uid(hs, p["manager"])
        assert profile == expected, user_id
    # The company directory finds a department's people by its path words, with title and department.
    for path in ("Finance/Alpha/Core", "Sales/Beta", "People"):
        found = admin.ok("POST", "user_directory/search", {"search_term": path.replace("/", " "), "limit": 100})
        hits = {r["user_id"]: r for r in found["results"]}
        want = {u for u, p in by_user.items() if set(path.lower().split("/")) <= set(
            p["department"].lower().split("/"))}
        assert set(hits) == want, path
        for user_id, r in hits.items():
            assert r["io.tocsin.department"] == by_user[user_id]["department"]
            assert r["io.tocsin.title"] == by_user[user_id]["title"]
    for localpart in gone:
        found = admin.ok("POST", "user_directory/search", {"search_term": localpart})
        assert found["results"] == []
        r = api.request("POST", "/_matrix/client/v3/login", {
            "type": "m.login.password", "identifier": {"type": "m.id.user", "user": localpart},
            "password": "x"})
        assert r.status == 403
    # The hierarchy as one member of each department sees it from their top-level space: the spaces and team
    # rooms along their path, plus the sub-department spaces those spaces let them join.
    for path in DEPARTMENTS:
        head = next(p for p in people if p["department"] == path)
        member = login(api, head["username"], passwords[uid(hs, head["username"])])
        chain = prefixes(path)
        expected_ids = {deps[p][k] for p in chain for k in ("space_id", "room_id")}
        expected_ids |= {deps[c]["space_id"] for c in deps if "/" in c and c.rsplit("/", 1)[0] in chain}
        rooms = walk_hierarchy(member, deps[chain[0]]["space_id"], limit=3)
        assert rooms[0]["room_id"] == deps[chain[0]]["space_id"]
        assert [r["room_id"] for r in rooms if r["room_id"] in expected_ids] == [r["room_id"] for r in rooms]
        assert {r["room_id"] for r in rooms} == expected_ids, path
        assert len(rooms) == len(expected_ids)
    return deps


def test_org_chart_import_change_reimport(org_hs: HomeserverProcess, tmp_path: Any) -> None:
    api = Api(org_hs.base_url)
    admin = register_admin(api)
    first = write_csv(str(tmp_path / "chart.csv"), base_chart())

    status, plan, err = run_sync(org_hs, admin, first, "--dry-run")
    assert status == 0, err
    assert plan["dry_run"] is True and plan["passwords"] == {}
    assert sum(1 for c in plan["changes"] if c["action"] == "create_user") == 300
    assert sum(1 for c in plan["changes"] if c["action"] == "create_department") == 25
    assert admin.ok("GET", "/_tocsin/admin/v1/org/departments")["departments"] == {}

    status, body, err = run_sync(org_hs, admin, first)
    assert status == 0, err
    assert len(body["passwords"]) == 300
    passwords = dict(body["passwords"])
    check_matches(org_hs, admin, base_chart(), [], passwords)
    status, again, err = run_sync(org_hs, admin, first)
    assert status == 0 and again["changes"] == [] and again["passwords"] == {}, err

    second = write_csv(str(tmp_path / "chart2.csv"), changed_chart())
    status, body, err = run_sync(org_hs, admin, second)
    assert status == 0, err
    actions = [c["action"] for c in body["changes"]]
    assert actions.count("deactivate") == 15 and actions.count("create_user") == 10 and actions.count("move") == 20
    assert set(body["passwords"]) == {uid(org_hs, f"n{n:04d}") for n in range(10)}
    passwords.update(body["passwords"])
    deps = check_matches(org_hs, admin, changed_chart(), [f"p{i:04d}" for i in range(200, 215)], passwords)
    status, again, err = run_sync(org_hs, admin, second)
    assert status == 0 and again["changes"] == [], (err, again and again["changes"][:5])

    # A client (a new hire in Engineering/Beta) finds everything as a client would.
    hire = next(p for p in changed_chart() if p["username"] == "n0001")  # Engineering/Beta (3 % 25 == 3)
    me = login(api, hire["username"], passwords[uid(org_hs, hire["username"])])
    sync = me.sync()
    joined = sync["rooms"]["join"]
    spaces = {room_id for room_id, room in joined.items()
              if any(e["type"] == "m.room.create" and e["content"].get("type") == "m.space"
                     for e in room.get("state", {}).get("events", []) + room.get("timeline", {}).get("events", []))}
    assert spaces == {deps["Engineering"]["space_id"], deps["Engineering/Beta"]["space_id"]}
    assert deps["Engineering/Beta"]["room_id"] in joined
    # Visible: what they are in, plus what their memberships let them join (restricted via the parent space).
    tree = walk_hierarchy(me, deps["Engineering"]["space_id"])
    visible = {deps["Engineering"]["space_id"], deps["Engineering"]["room_id"], deps["Engineering/Alpha"]["space_id"],
               deps["Engineering/Beta"]["space_id"], deps["Engineering/Beta"]["room_id"],
               deps["Engineering/Beta/Core"]["space_id"]}
    assert {r["room_id"] for r in tree} == visible
    alpha = next(r for r in tree if r["room_id"] == deps["Engineering/Alpha"]["space_id"])
    assert alpha["join_rule"] == "restricted" and alpha["allowed_room_ids"] == [deps["Engineering"]["space_id"]]
    assert alpha["room_type"] == "m.space" and alpha["name"] == "Alpha"
    # Joining a colleague's space and then its team room works (restricted joins vouched for by a member).
    assert me.join(deps["Engineering/Alpha"]["space_id"]) == deps["Engineering/Alpha"]["space_id"]
    tree = walk_hierarchy(me, deps["Engineering"]["space_id"])
    assert deps["Engineering/Alpha"]["room_id"] in {r["room_id"] for r in tree}
    assert me.join(deps["Engineering/Alpha"]["room_id"]) == deps["Engineering/Alpha"]["room_id"]
    team_room = me.req("POST", f"join/{q(deps['Engineering/Alpha/Core']['room_id'])}", {})
    assert team_room.status == 403
    found = me.ok("POST", "user_directory/search", {"search_term": "Sales Alpha Core"})["results"]
    colleague = next(r for r in found if r["user_id"] == uid(org_hs, "p0007"))
    assert colleague["io.tocsin.title"] == "Title 0" and colleague["io.tocsin.department"] == "Sales/Alpha/Core"
    profile = me.ok("GET", f"profile/{q(colleague['user_id'])}")
    assert profile["io.tocsin.phone"] == "+1555000007" and profile["io.tocsin.title"] == "Title 0"
    anonymous = api.request("GET", f"/_matrix/client/v3/profile/{q(colleague['user_id'])}")
    assert anonymous.status == 200 and "io.tocsin.phone" not in anonymous.json
    assert anonymous.json["io.tocsin.title"] == "Title 0"

    # Quick conversations: a department's team room, and a DM with m.direct for both (a second call reuses it).
    proc = subprocess.run([sys.executable, SCRIPT, "--server", org_hs.base_url, "--token", admin.access_token,
                           "team-room", "Sales/Beta"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    team = json.loads(proc.stdout)
    assert team["room_id"] == deps["Sales/Beta"]["room_id"]
    assert set(team["members"]) == {uid(org_hs, p["username"]) for p in changed_chart()
                                    if p["department"] == "Sales/Beta"} | {bot(org_hs)}
    a, b = uid(org_hs, "n0001"), uid(org_hs, "p0007")
    dm = admin.ok("POST", "/_tocsin/admin/v1/org/dm", {"user_ids": [a, b]})
    assert dm["created"] is True
    again = admin.ok("POST", "/_tocsin/admin/v1/org/dm", {"user_ids": [b, a]})
    assert again == {"room_id": dm["room_id"], "created": False}
    colleague_user = login(api, "p0007", passwords[b])
    assert me.ok("GET", f"user/{q(a)}/account_data/m.direct") == {b: [dm["room_id"]]}
    assert colleague_user.ok("GET", f"user/{q(b)}/account_data/m.direct") == {a: [dm["room_id"]]}
    assert set(colleague_user.ok("GET", f"rooms/{q(dm['room_id'])}/joined_members")["joined"]) == {a, b}
    assert admin.req("POST", "/_tocsin/admin/v1/org/team_room", {"department": "No/Such"}).status == 404
    assert me.req("POST", "/_tocsin/admin/v1/org/dm", {"user_ids": [a, b]}).status == 403


def test_bad_charts_change_nothing(org_hs: HomeserverProcess, tmp_path: Any) -> None:
    api = Api(org_hs.base_url)
    admin = register_admin(api)
    before = admin.ok("GET", "/_tocsin/admin/v1/org/departments")
    good = [{"username": "bx1", "display_name": "B One", "email": "", "phone": "", "title": "", "department": "Bad/X",
             "manager": ""},
            {"username": "bx2", "display_name": "B Two", "email": "", "phone": "", "title": "",
             "department": "Bad/X", "manager": "bx1"}]

    missing = write_csv(str(tmp_path / "missing.csv"), good, [c for c in COLUMNS if c != "phone"])
    status, _, err = run_sync(org_hs, admin, missing)
    assert status == 2 and "line 1: missing column(s): phone" in err

    cases = {
        "duplicate": ([dict(good[0]), dict(good[0], display_name="Again")], "line 3 [username]: duplicate username"),
        "cycle": ([dict(good[0], manager="bx2"), good[1]], "manager cycle"),
        "deep": ([dict(good[0], department="A/B/C/D/E/F/G")], "line 2 [department]: department path"),
        "empty_part": ([dict(good[0], department="Bad//X")], "line 2 [department]: department path 'Bad//X' has an "
                                                             "empty part"),
        "too_large": ([good[0], dict(good[1], title="t" * 2000)], "line 3 [io.tocsin.title]: value of "
                                                                  "io.tocsin.title is larger than"),
        "unknown_manager": ([dict(good[0], manager="nobody")], "line 2 [manager]: manager 'nobody' is not in"),
    }
    for name, (people, message) in cases.items():
        status, _, err = run_sync(org_hs, admin, write_csv(str(tmp_path / f"{name}.csv"), people + good[1:]
                                                           if name == "deep" else people))
        assert status == 1, (name, err)
        assert message in err and "nothing was changed" in err, (name, err)
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps([dict(good[0], fields={"com.example.badge": "x" * 5000})]))
    status, _, err = run_sync(org_hs, admin, str(extra))
    assert status == 1 and "line 1 [com.example.badge]" in err
    assert admin.ok("GET", "/_tocsin/admin/v1/org/departments") == before
    assert admin.req("GET", "profile/" + q(uid(org_hs, "bx1"))).status == 404

    # Not an admin: refused.
    plain = register(api)
    r = plain.req("POST", "/_tocsin/admin/v1/org/sync", {"people": [], "dry_run": True})
    assert r.status == 403 and r.json["errcode"] == "M_FORBIDDEN"

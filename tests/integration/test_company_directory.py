"""Company directory (issue 9) on SQLite and PostgreSQL: with ``user_directory.search_all_users`` every active
local user is found, ranked by how well the display name matches, with title and department; department and
title words find people too; deactivated users disappear."""

from __future__ import annotations

import uuid
from typing import Any, Iterator

import pytest

from tests.integration.orglib import org_homeserver, register_admin
from tests.support.client import Api, q, register
from tests.support.server import HomeserverProcess


@pytest.fixture(scope="module")
def directory_hs(database: str) -> Iterator[HomeserverProcess]:
    yield from org_homeserver(database)


def test_company_directory(directory_hs: HomeserverProcess) -> None:
    api = Api(directory_hs.base_url)
    admin = register_admin(api)
    tag = uuid.uuid4().hex[:6]
    people: dict[str, Any] = {}
    for name, title, dept in ((f"Zed {tag}", "SRE", f"Eng{tag}/Platform"),
                              (f"{tag} Exact", "Engineer", f"Eng{tag}/Apps"),
                              (f"{tag}man Prefix", "Analyst", f"Fin{tag}")):
        user = register(api)
        user.ok("PUT", f"profile/{q(user.user_id)}/displayname", {"displayname": name})
        admin.ok("PUT", f"profile/{q(user.user_id)}/io.tocsin.title", {"io.tocsin.title": title})
        admin.ok("PUT", f"profile/{q(user.user_id)}/io.tocsin.department", {"io.tocsin.department": dept})
        people[name] = user
    loner = register(api)  # shares no room with anyone: still in the address book
    found = loner.ok("POST", "user_directory/search", {"search_term": tag})["results"]
    # Name prefix first (whole-word prefix "tag..." of the first word), then a later-word match.
    assert [r["display_name"] for r in found] == [f"{tag} Exact", f"{tag}man Prefix", f"Zed {tag}"]
    exact = found[0]
    assert exact["io.tocsin.title"] == "Engineer" and exact["io.tocsin.department"] == f"Eng{tag}/Apps"

    by_dept = loner.ok("POST", "user_directory/search", {"search_term": f"eng{tag} platform"})["results"]
    assert [r["user_id"] for r in by_dept] == [people[f"Zed {tag}"].user_id]
    by_title = loner.ok("POST", "user_directory/search", {"search_term": f"analyst fin{tag}"})["results"]
    assert [r["user_id"] for r in by_title] == [people[f"{tag}man Prefix"].user_id]
    limited = loner.ok("POST", "user_directory/search", {"search_term": tag, "limit": 1})
    assert len(limited["results"]) == 1 and limited["limited"] is True

    gone = people[f"Zed {tag}"]
    gone.ok("POST", "account/deactivate", {"auth": {"type": "m.login.password", "password": gone.password,
                                                    "identifier": {"type": "m.id.user", "user": gone.user_id}}})
    found = loner.ok("POST", "user_directory/search", {"search_term": tag})["results"]
    assert gone.user_id not in {r["user_id"] for r in found} and len(found) == 2
    assert loner.ok("POST", "user_directory/search", {"search_term": f"eng{tag} platform"})["results"] == []

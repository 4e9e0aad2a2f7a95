"""Extended profile fields (issue 9, spec v1.16) on SQLite and PostgreSQL: custom keys and ``m.tz`` through
GET/PUT/DELETE ``/profile/{userId}/{keyName}``, the ``m.profile_fields`` capability, size and key limits,
admin-only org keys, and phone numbers readable by colleagues (local users) only."""

from __future__ import annotations

from tests.integration.orglib import register_admin
from tests.support.client import Api, q, register


def test_custom_fields_roundtrip_and_limits(api: Api) -> None:
    alice = register(api)
    me = q(alice.user_id)
    caps = alice.ok("GET", "capabilities")["capabilities"]
    assert caps["m.profile_fields"]["enabled"] is True
    assert {"io.tocsin.title", "io.tocsin.department", "io.tocsin.manager"} <= set(
        caps["m.profile_fields"]["disallowed"])

    alice.ok("PUT", f"profile/{me}/m.tz", {"m.tz": "Europe/Berlin"})
    alice.ok("PUT", f"profile/{me}/com.example.pets", {"com.example.pets": ["cat", {"n": 2}]})
    assert alice.ok("GET", f"profile/{me}/m.tz") == {"m.tz": "Europe/Berlin"}
    assert api.request("GET", f"/_matrix/client/v3/profile/{me}/com.example.pets").json == {
        "com.example.pets": ["cat", {"n": 2}]}
    profile = api.request("GET", f"/_matrix/client/v3/profile/{me}").json
    assert profile["m.tz"] == "Europe/Berlin" and profile["com.example.pets"] == ["cat", {"n": 2}]

    alice.ok("DELETE", f"profile/{me}/com.example.pets")
    alice.ok("DELETE", f"profile/{me}/com.example.pets")  # deleting what is not there is fine
    r = api.request("GET", f"/_matrix/client/v3/profile/{me}/com.example.pets")
    assert r.status == 404 and r.errcode() == "M_NOT_FOUND"

    r = alice.req("PUT", f"profile/{me}/NotNamespaced", {"NotNamespaced": 1})
    assert r.status == 400 and r.errcode() == "M_INVALID_PARAM"
    long_key = "com.example." + "k" * 250
    r = alice.req("PUT", f"profile/{me}/{long_key}", {long_key: 1})
    assert r.status == 400 and r.errcode() == "M_KEY_TOO_LARGE"
    r = alice.req("PUT", f"profile/{me}/com.example.big", {"com.example.big": "x" * 2000})
    assert r.status == 400 and r.errcode() == "M_PROFILE_TOO_LARGE"
    r = alice.req("PUT", f"profile/{me}/com.example.x", {})
    assert r.status == 400 and r.errcode() == "M_MISSING_PARAM"
    r = alice.req("PUT", f"profile/{me}/io.tocsin.title", {"io.tocsin.title": "CEO"})
    assert r.status == 403 and r.errcode() == "M_FORBIDDEN"
    bob = register(api)
    r = bob.req("PUT", f"profile/{me}/m.tz", {"m.tz": "UTC"})
    assert r.status == 403
    r = alice.req("PUT", f"profile/{q('@nobody:test.local')}/m.tz", {"m.tz": "UTC"})
    assert r.status == 403
    assert alice.ok("GET", f"profile/{me}/m.tz") == {"m.tz": "Europe/Berlin"}


def test_phone_visible_to_colleagues_only(api: Api) -> None:
    admin = register_admin(api)
    carol = register(api)
    colleague = register(api)
    me = q(carol.user_id)
    carol.ok("PUT", f"profile/{me}/io.tocsin.phone", {"io.tocsin.phone": "+44 20 7946 0000"})
    admin.ok("PUT", f"profile/{me}/io.tocsin.title", {"io.tocsin.title": "On-call lead"})
    assert colleague.ok("GET", f"profile/{me}/io.tocsin.phone") == {"io.tocsin.phone": "+44 20 7946 0000"}
    assert colleague.ok("GET", f"profile/{me}")["io.tocsin.title"] == "On-call lead"
    anonymous = api.request("GET", f"/_matrix/client/v3/profile/{me}/io.tocsin.phone")
    assert anonymous.status == 404
    public = api.request("GET", f"/_matrix/client/v3/profile/{me}").json
    assert "io.tocsin.phone" not in public and public["io.tocsin.title"] == "On-call lead"
    # Display names keep working as before, and DELETE clears them.
    carol.ok("PUT", f"profile/{me}/displayname", {"displayname": "Carol"})
    carol.ok("DELETE", f"profile/{me}/displayname")
    assert api.request("GET", f"/_matrix/client/v3/profile/{me}/displayname").status == 404

"""Helpers for the organisation tests (issue 9): a homeserver with the company directory switched on, server
admins registered through the shared secret, users logged in as a client does."""

from __future__ import annotations

import hashlib
import hmac
import os
import tempfile
import uuid
from typing import Any, Iterator

from tests.support.client import CS, Api, User
from tests.support.server import HomeserverProcess

SECRET = "test-shared-secret"  # what tests/support/server.py writes into the config
PASSWORD = "org test password"


def org_homeserver(database: str) -> Iterator[HomeserverProcess]:
    """A homeserver with ``user_directory.search_all_users`` (the company directory), for a module fixture."""
    with tempfile.TemporaryDirectory(prefix=f"tocsin-org-{database}-") as d:
        hs = HomeserverProcess(data_dir=os.path.join(d, "hs"), database=database,
                               extra_config={"user_directory": {"search_all_users": True}})
        try:
            hs.start()
            yield hs
        finally:
            hs.cleanup()


def register_admin(api: Api, localpart: str | None = None) -> User:
    """A server admin, registered with the shared secret like ``scripts/register_new_user -a`` does."""
    localpart = localpart or "admin" + uuid.uuid4().hex[:8]
    nonce = api.request("GET", "/_synapse/admin/v1/register").json["nonce"]
    mac = hmac.new(SECRET.encode(), b"\x00".join([nonce.encode(), localpart.encode(), PASSWORD.encode(),
                                                  b"admin"]), hashlib.sha1).hexdigest()
    r = api.request("POST", "/_synapse/admin/v1/register",
                    {"nonce": nonce, "username": localpart, "password": PASSWORD, "admin": True, "mac": mac})
    assert r.status == 200, r.json
    return User(api, r.json["user_id"], r.json["access_token"], r.json["device_id"], PASSWORD)


def login(api: Api, localpart: str, password: str) -> User:
    r = api.request("POST", CS + "/login", {"type": "m.login.password",
                                            "identifier": {"type": "m.id.user", "user": localpart},
                                            "password": password})
    assert r.status == 200, f"login {localpart}: {r.status} {r.json}"
    return User(api, r.json["user_id"], r.json["access_token"], r.json["device_id"], password)


def walk_hierarchy(user: User, room_id: str, **params: Any) -> list[dict[str, Any]]:
    """Every room of ``GET /hierarchy`` from ``room_id``, following ``next_batch``."""
    from tests.support.client import q

    rooms: list[dict[str, Any]] = []
    token = None
    for _ in range(1000):
        p = dict(params)
        if token:
            p["from"] = token
        body = user.ok("GET", f"/_matrix/client/v1/rooms/{q(room_id)}/hierarchy", params=p)
        rooms += body["rooms"]
        token = body.get("next_batch")
        if not token:
            return rooms
    raise AssertionError("hierarchy pagination did not end")

"""Server-side key backups: /room_keys/version and /room_keys/keys (spec: "Server-side key backups")."""

from __future__ import annotations

from typing import Any

from tests.support.client import Api, q, register

ALG = "m.megolm_backup.v1.curve25519-aes-sha2"


def _key(fmi: int, fc: int, verified: bool, tag: str) -> dict[str, Any]:
    return {"first_message_index": fmi, "forwarded_count": fc, "is_verified": verified,
            "session_data": {"ephemeral": tag, "ciphertext": tag, "mac": tag}}


def test_versions_lifecycle(api: Api) -> None:
    a, b = register(api), register(api)
    r = a.req("GET", "room_keys/version")
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    v1 = a.ok("POST", "room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "k1"}})["version"]
    v2 = a.ok("POST", "room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "k2"}})["version"]
    assert v1 != v2
    cur = a.ok("GET", "room_keys/version")
    assert (cur["version"], cur["algorithm"], cur["auth_data"], cur["count"]) == (v2, ALG, {"public_key": "k2"}, 0)
    assert isinstance(cur["etag"], str)
    assert a.ok("GET", f"room_keys/version/{v1}")["auth_data"] == {"public_key": "k1"}
    assert b.req("GET", f"room_keys/version/{v1}").status == 404  # another user's backup
    a.ok("PUT", f"room_keys/version/{v2}", {"algorithm": ALG, "auth_data": {"public_key": "k2b"}, "version": v2})
    assert a.ok("GET", "room_keys/version")["auth_data"] == {"public_key": "k2b"}
    r = a.req("PUT", f"room_keys/version/{v2}", {"algorithm": "other", "auth_data": {}})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    r = a.req("PUT", f"room_keys/version/{v2}", {"algorithm": ALG, "auth_data": {}, "version": v1})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")
    r = a.req("PUT", "room_keys/version/999", {"algorithm": ALG, "auth_data": {}})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = a.req("POST", "room_keys/version", {"algorithm": ALG})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    a.ok("DELETE", f"room_keys/version/{v2}")
    a.ok("DELETE", f"room_keys/version/{v2}")  # deleting again succeeds
    assert a.req("DELETE", "room_keys/version/999").status == 404
    assert a.ok("GET", "room_keys/version")["version"] == v1
    assert a.req("GET", f"room_keys/version/{v2}").status == 404


def test_keys_put_get_delete_and_better_session_wins(api: Api) -> None:
    a = register(api)
    old = a.ok("POST", "room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "k"}})["version"]
    v = a.ok("POST", "room_keys/version", {"algorithm": ALG, "auth_data": {"public_key": "k"}})["version"]
    room, room2 = "!r1:test.local", "!r2:test.local"
    path = f"room_keys/keys/{q(room)}/s1"
    put = a.ok("PUT", path, _key(5, 1, False, "a"), params={"version": v})
    assert put["count"] == 1
    etag1 = put["etag"]
    assert a.ok("GET", path, params={"version": v}) == _key(5, 1, False, "a")
    # worse copies are ignored (etag unchanged), better ones replace
    for worse in (_key(6, 0, False, "b"), _key(5, 2, False, "c")):
        r = a.ok("PUT", path, worse, params={"version": v})
        assert (r["etag"], r["count"]) == (etag1, 1)
    assert a.ok("GET", path, params={"version": v})["session_data"]["ciphertext"] == "a"
    a.ok("PUT", path, _key(5, 0, False, "d"), params={"version": v})
    assert a.ok("GET", path, params={"version": v})["session_data"]["ciphertext"] == "d"
    a.ok("PUT", path, _key(9, 3, True, "e"), params={"version": v})  # verified beats unverified
    assert a.ok("GET", path, params={"version": v})["session_data"]["ciphertext"] == "e"
    a.ok("PUT", path, _key(0, 0, False, "f"), params={"version": v})
    assert a.ok("GET", path, params={"version": v})["session_data"]["ciphertext"] == "e"
    etag2 = a.ok("GET", "room_keys/version")["etag"]
    assert etag2 != etag1

    r = a.ok("PUT", f"room_keys/keys/{q(room)}", {"sessions": {"s2": _key(0, 0, False, "g")}}, params={"version": v})
    assert r["count"] == 2
    r = a.ok("PUT", "room_keys/keys", {"rooms": {room2: {"sessions": {"s3": _key(0, 0, True, "h")}}}},
             params={"version": v})
    assert r["count"] == 3
    everything = a.ok("GET", "room_keys/keys", params={"version": v})
    assert {r: sorted(s["sessions"]) for r, s in everything["rooms"].items()} == {room: ["s1", "s2"], room2: ["s3"]}
    assert sorted(a.ok("GET", f"room_keys/keys/{q(room)}", params={"version": v})["sessions"]) == ["s1", "s2"]
    assert a.ok("GET", f"room_keys/keys/{q('!none:test.local')}", params={"version": v}) == {"sessions": {}}
    assert a.req("GET", f"room_keys/keys/{q(room)}/nosuch", params={"version": v}).status == 404
    assert a.ok("GET", "room_keys/version")["count"] == 3

    # writing to an old backup version is refused with the current version
    r = a.req("PUT", path, _key(0, 0, True, "x"), params={"version": old})
    assert (r.status, r.errcode(), r.json.get("current_version")) == (403, "M_WRONG_ROOM_KEYS_VERSION", v)
    r = a.req("PUT", path, _key(0, 0, True, "x"), params={"version": "12345"})
    assert (r.status, r.errcode()) == (404, "M_NOT_FOUND")
    r = a.req("PUT", path, {"first_message_index": -1, "forwarded_count": 0, "is_verified": False,
                            "session_data": {}}, params={"version": v})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = a.req("GET", path)
    assert (r.status, r.errcode()) == (400, "M_MISSING_PARAM")

    r = a.ok("DELETE", path, params={"version": v})
    assert r["count"] == 2
    r = a.ok("DELETE", f"room_keys/keys/{q(room)}", params={"version": v})
    assert r["count"] == 1
    r = a.ok("DELETE", "room_keys/keys", params={"version": v})
    assert r["count"] == 0
    assert a.ok("GET", "room_keys/keys", params={"version": v}) == {"rooms": {}}

"""POST /keys/upload, /keys/query, /keys/claim (spec: Client-Server API, "Key management API")."""

from __future__ import annotations

import concurrent.futures

from signedjson.key import decode_verify_key_bytes
from signedjson.sign import verify_signed_json
from unpaddedbase64 import decode_base64

from tests.integration.e2e_keys_support import (
    SCS,
    DeviceKeys,
    claim,
    login,
    query,
    random_curve_key,
    upload,
    with_password_uia,
)
from tests.support.client import Api, q, register


def _verifies(obj: dict, user_id: str, key_id: str, public: str) -> bool:
    try:
        verify_signed_json(obj, user_id, decode_verify_key_bytes(key_id, decode_base64(public)))
        return True
    except Exception:  # noqa: BLE001 - any failure means "does not verify"
        return False


def test_upload_counts_one_time_keys(api: Api) -> None:
    a = register(api)
    dk = DeviceKeys(a.user_id, a.device_id)
    assert upload(a, dk, otks=5)["one_time_key_counts"] == {SCS: 5}
    r = a.ok("POST", "keys/upload", {"one_time_keys": dk.one_time_keys(3)})
    assert r["one_time_key_counts"] == {SCS: 8}
    assert a.ok("POST", "keys/upload", {})["one_time_key_counts"] == {SCS: 8}
    # the very same keys again (a retried request) change nothing
    again = dk.one_time_keys(2)
    assert a.ok("POST", "keys/upload", {"one_time_keys": again})["one_time_key_counts"] == {SCS: 10}
    assert a.ok("POST", "keys/upload", {"one_time_keys": again})["one_time_key_counts"] == {SCS: 10}


def test_upload_rejects_bad_keys_and_stores_nothing(api: Api) -> None:
    a, b = register(api), register(api)
    dk = DeviceKeys(a.user_id, a.device_id)

    def rejected(body: dict, errcode: str) -> None:
        r = a.req("POST", "keys/upload", body)
        assert (r.status, r.errcode()) == (400, errcode), (body, r.json)

    # keys claiming another user or device
    rejected({"device_keys": DeviceKeys(b.user_id, a.device_id).device_keys()}, "M_INVALID_PARAM")
    rejected({"device_keys": DeviceKeys(a.user_id, "OTHERDEV").device_keys()}, "M_INVALID_PARAM")
    # unsigned and wrongly signed device keys
    unsigned = dk.device_keys()
    del unsigned["signatures"]
    rejected({"device_keys": unsigned}, "M_INVALID_SIGNATURE")
    tampered = dk.device_keys()
    tampered["keys"][f"curve25519:{a.device_id}"] = random_curve_key()
    rejected({"device_keys": tampered}, "M_INVALID_SIGNATURE")
    rejected({"device_keys": "nope"}, "M_BAD_JSON")
    rejected({"one_time_keys": ["x"]}, "M_BAD_JSON")
    # one-time keys cannot be verified before device keys exist
    rejected({"one_time_keys": dk.one_time_keys(1)}, "M_INVALID_SIGNATURE")
    assert query(b, a.user_id)["device_keys"][a.user_id] == {}

    upload(a, dk, otks=2)
    # a one-time key signed by someone else, with a good one in the same request: nothing is stored
    bad = DeviceKeys(a.user_id, a.device_id).one_time_keys(1)
    rejected({"one_time_keys": {**dk.one_time_keys(1), **bad}}, "M_INVALID_SIGNATURE")
    rejected({"one_time_keys": {"signed_curve25519_without_key_id": {"key": "x"}}}, "M_BAD_JSON")
    # the same key ID with different content
    (kid, _), = dk.one_time_keys(1).items()
    first = {kid: dk.ed25519.sign({"key": random_curve_key()}, a.user_id)}
    assert a.ok("POST", "keys/upload", {"one_time_keys": first})["one_time_key_counts"] == {SCS: 3}
    rejected({"one_time_keys": {kid: dk.ed25519.sign({"key": random_curve_key()}, a.user_id)}}, "M_INVALID_PARAM")
    # different identity keys for a device that already has some
    rejected({"device_keys": DeviceKeys(a.user_id, a.device_id).device_keys()}, "M_INVALID_PARAM")
    assert a.ok("POST", "keys/upload", {})["one_time_key_counts"] == {SCS: 3}
    got = query(b, a.user_id)["device_keys"][a.user_id][a.device_id]
    assert got["keys"] == dk.device_keys()["keys"]


def test_query_returns_signed_keys_with_display_name(api: Api) -> None:
    a, b = register(api), register(api)
    dk = DeviceKeys(a.user_id, a.device_id)
    upload(a, dk)
    a.ok("PUT", f"devices/{q(a.device_id)}", {"display_name": "on-call phone"})
    r = query(b, a.user_id)
    got = r["device_keys"][a.user_id][a.device_id]
    sent = dk.device_keys()
    for field in ("user_id", "device_id", "algorithms", "keys"):
        assert got[field] == sent[field]
    assert got["unsigned"] == {"device_display_name": "on-call phone"}
    assert _verifies(got, a.user_id, f"ed25519:{a.device_id}", dk.ed25519.public)
    assert r["failures"] == {}
    one = b.ok("POST", "keys/query", {"device_keys": {a.user_id: [a.device_id]}})
    assert list(one["device_keys"][a.user_id]) == [a.device_id]
    none = b.ok("POST", "keys/query", {"device_keys": {a.user_id: ["NOSUCHDEVICE"], "@ghost:test.local": []}})
    assert none["device_keys"][a.user_id] == {}
    assert none["device_keys"].get("@ghost:test.local", {}) == {}
    remote = b.ok("POST", "keys/query", {"device_keys": {"@x:elsewhere.example": []}})
    assert "elsewhere.example" in remote["failures"]
    r = b.req("POST", "keys/query", {"device_keys": {a.user_id: "all"}})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")
    r = b.req("POST", "keys/query", {})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")


def test_claim_hands_out_each_key_once_then_the_fallback_key(api: Api) -> None:
    a, b = register(api), register(api)
    dk = DeviceKeys(a.user_id, a.device_id)
    uploaded = dk.one_time_keys(3)
    fallback = dk.fallback_key()
    a.ok("POST", "keys/upload", {"device_keys": dk.device_keys(), "one_time_keys": uploaded,
                                 "fallback_keys": fallback})
    claimed = []
    for _ in range(3):
        keys = claim(b, a.user_id, a.device_id)
        ((kid, obj),) = keys.items()
        assert obj == uploaded[kid]
        assert _verifies(obj, a.user_id, f"ed25519:{a.device_id}", dk.ed25519.public)
        claimed.append(kid)
    assert sorted(claimed) == sorted(uploaded)
    assert a.ok("POST", "keys/upload", {})["one_time_key_counts"] == {SCS: 0}
    # one-time keys are gone: the fallback key, again and again, until replaced
    (fb_id, fb), = fallback.items()
    assert claim(b, a.user_id, a.device_id) == {fb_id: fb}
    assert claim(b, a.user_id, a.device_id) == {fb_id: fb}
    new_fallback = dk.fallback_key()
    a.ok("POST", "keys/upload", {"fallback_keys": new_fallback})
    assert claim(b, a.user_id, a.device_id) == new_fallback
    # unknown users, devices and algorithms come back empty, remote servers under failures
    r = b.ok("POST", "keys/claim", {"one_time_keys": {
        a.user_id: {"NOSUCHDEVICE": SCS}, "@ghost:test.local": {"X": SCS}, "@x:elsewhere.example": {"D": SCS}}})
    assert r["one_time_keys"] == {}
    assert list(r["failures"]) == ["elsewhere.example"]
    assert claim(b, a.user_id, a.device_id, "curve25519") == {}
    r = b.req("POST", "keys/claim", {"one_time_keys": {a.user_id: [a.device_id]}})
    assert (r.status, r.errcode()) == (400, "M_BAD_JSON")


def test_concurrent_claims_never_share_a_key(api: Api) -> None:
    """Many parallel claims on one device: every one-time key goes to exactly one claimer."""
    a = register(api)
    claimers = [register(api) for _ in range(4)]
    dk = DeviceKeys(a.user_id, a.device_id)
    uploaded = dk.one_time_keys(40)
    a.ok("POST", "keys/upload", {"device_keys": dk.device_keys(), "one_time_keys": uploaded})
    jobs = 60
    with concurrent.futures.ThreadPoolExecutor(max_workers=12) as pool:
        results = list(pool.map(lambda i: claim(claimers[i % len(claimers)], a.user_id, a.device_id), range(jobs)))
    got = [kid for r in results for kid in r]
    assert len(got) == 40, f"{len(got)} keys handed out for 40 uploaded"
    assert len(set(got)) == 40, "a one-time key was handed out twice"
    assert set(got) == set(uploaded)
    assert sum(1 for r in results if not r) == jobs - 40


def test_deleted_device_keys_are_removed(api: Api) -> None:
    a, b = register(api), register(api)
    a2 = login(a, "old phone")
    dk2 = DeviceKeys(a.user_id, a2.device_id)
    upload(a2, dk2, otks=2, fallback=True)
    upload(a)
    assert set(query(b, a.user_id)["device_keys"][a.user_id]) == {a.device_id, a2.device_id}
    with_password_uia(a, "DELETE", f"devices/{q(a2.device_id)}", {})
    assert set(query(b, a.user_id)["device_keys"][a.user_id]) == {a.device_id}
    assert claim(b, a.user_id, a2.device_id) == {}


def _changed(sync: dict) -> list[str]:
    return sync.get("device_lists", {}).get("changed", [])


def _left(sync: dict) -> list[str]:
    return sync.get("device_lists", {}).get("left", [])


def test_sync_reports_key_counts_and_fallback_types(api: Api) -> None:
    a, b = register(api), register(api)
    s = a.sync()
    assert s["device_one_time_keys_count"] == {SCS: 0}
    assert s["device_unused_fallback_key_types"] == []
    upload(a, DeviceKeys(a.user_id, a.device_id), otks=2, fallback=True)
    s = a.sync(s["next_batch"])
    assert s["device_one_time_keys_count"] == {SCS: 2}
    assert s["device_unused_fallback_key_types"] == [SCS]
    for _ in range(3):
        claim(b, a.user_id, a.device_id)
    s = a.sync(s["next_batch"])
    assert s["device_one_time_keys_count"] == {SCS: 0}
    assert s["device_unused_fallback_key_types"] == []


def test_device_list_changes_reach_room_members_only(api: Api) -> None:
    a, b, c = register(api), register(api), register(api)
    room = a.create_room(invite=[b.user_id])
    b.join(room)
    since_b, since_c = b.sync()["next_batch"], c.sync()["next_batch"]
    assert "device_lists" not in b.sync() or _changed(b.sync()) == []  # nothing on an initial sync
    a2 = login(a, "new phone")
    upload(a2)
    s = b.sync(since_b, timeout=5000)
    assert a.user_id in _changed(s)
    assert a.user_id not in _changed(c.sync(since_c))
    changes = b.ok("GET", "keys/changes", params={"from": since_b, "to": s["next_batch"]})
    assert a.user_id in changes["changed"]
    assert a.user_id not in b.ok("GET", "keys/changes", params={"from": s["next_batch"], "to": s["next_batch"]})[
        "changed"]
    # a deleted device is a change too, and its keys are gone
    with_password_uia(a, "DELETE", f"devices/{q(a2.device_id)}", {})
    s2 = b.sync(s["next_batch"], timeout=5000)
    assert a.user_id in _changed(s2)
    assert a2.device_id not in query(b, a.user_id)["device_keys"][a.user_id]
    r = b.req("GET", "keys/changes", params={"from": "garbage", "to": s["next_batch"]})
    assert (r.status, r.errcode()) == (400, "M_INVALID_PARAM")


def test_joining_and_leaving_rooms_changes_device_lists(api: Api) -> None:
    a, b = register(api), register(api)
    room = a.create_room(invite=[b.user_id])
    since_a, since_b = a.sync()["next_batch"], b.sync()["next_batch"]
    b.join(room)
    # B starts sharing a room with A: each sees the other as changed (their clients fetch the keys)
    assert b.user_id in _changed(a.sync(since_a))
    s_b = b.sync(since_b)
    assert a.user_id in _changed(s_b)
    since_a = a.sync()["next_batch"]
    b.ok("POST", f"rooms/{q(room)}/leave", {})
    s_a = a.sync(since_a)
    assert b.user_id in _left(s_a) and b.user_id not in _changed(s_a)
    assert a.user_id in _left(b.sync(s_b["next_batch"]))

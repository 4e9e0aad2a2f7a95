"""POST /keys/device_signing/upload and /keys/signatures/upload (spec: "Cross-signing")."""

from __future__ import annotations

from tests.integration.e2e_keys_support import (
    DeviceKeys,
    Ed25519Key,
    cross_signing_keys,
    query,
    upload,
    with_password_uia,
)
from tests.support.client import Api, register

UPLOAD = "keys/device_signing/upload"


def test_first_upload_needs_no_uia_and_replacing_needs_password(api: Api) -> None:
    a, b = register(api), register(api)
    (master, ssk, usk), body = cross_signing_keys(a.user_id)
    assert a.ok("POST", UPLOAD, body) == {}
    seen = query(b, a.user_id)
    assert seen["master_keys"][a.user_id]["keys"] == {master.key_id: master.public}
    assert seen["self_signing_keys"][a.user_id]["keys"] == {ssk.key_id: ssk.public}
    assert a.user_id not in seen["user_signing_keys"]
    own = query(a, a.user_id)
    assert own["user_signing_keys"][a.user_id]["keys"] == {usk.key_id: usk.public}
    # the same keys again (a lost response retried) need no UIA either
    assert a.ok("POST", UPLOAD, body) == {}
    (new_master, _, _), new_body = cross_signing_keys(a.user_id)
    r = a.req("POST", UPLOAD, new_body)
    assert r.status == 401 and r.json["flows"] == [{"stages": ["m.login.password"]}]
    assert query(b, a.user_id)["master_keys"][a.user_id]["keys"] == {master.key_id: master.public}
    wrong = dict(new_body, auth={"type": "m.login.password", "session": r.json["session"], "password": "nope",
                                 "identifier": {"type": "m.id.user", "user": a.user_id}})
    assert a.req("POST", UPLOAD, wrong).status == 401
    with_password_uia(a, "POST", UPLOAD, new_body)
    assert query(b, a.user_id)["master_keys"][a.user_id]["keys"] == {new_master.key_id: new_master.public}


def test_bad_cross_signing_keys_are_rejected(api: Api) -> None:
    a, b = register(api), register(api)
    (master, ssk, _), body = cross_signing_keys(a.user_id)

    def rejected(bad: dict, status: int, errcode: str) -> None:
        r = a.req("POST", UPLOAD, bad)
        assert (r.status, r.errcode()) == (status, errcode), (bad, r.json)

    rejected({"self_signing_key": body["self_signing_key"]}, 400, "M_MISSING_PARAM")
    other = Ed25519Key()
    badly_signed = other.sign({"user_id": a.user_id, "usage": ["self_signing"], "keys": {ssk.key_id: ssk.public}},
                              a.user_id)
    rejected({**body, "self_signing_key": badly_signed}, 400, "M_INVALID_SIGNATURE")
    rejected({**body, "master_key": {**body["master_key"], "user_id": b.user_id}}, 400, "M_INVALID_PARAM")
    rejected({**body, "master_key": {**body["master_key"], "usage": ["self_signing"]}}, 400, "M_BAD_JSON")
    rejected({**body, "master_key": {**body["master_key"], "keys": {"ed25519:abc": "def"}}}, 400, "M_BAD_JSON")
    assert query(b, a.user_id)["master_keys"] == {}


def test_signatures_upload_merges_verified_signatures(api: Api) -> None:
    a, b = register(api), register(api)
    dk = DeviceKeys(a.user_id, a.device_id)
    upload(a, dk)
    (a_master, a_ssk, a_usk), body = cross_signing_keys(a.user_id)
    a.ok("POST", UPLOAD, body)
    (b_master, _, _), b_body = cross_signing_keys(b.user_id)
    b.ok("POST", UPLOAD, b_body)

    # A's self-signing key signs A's device; A's device signs A's master key; A's user-signing key signs B
    signed_device = a_ssk.sign(dk.device_keys(), a.user_id)
    signed_own_master = dk.ed25519.sign(body["master_key"], a.user_id)
    signed_b_master = a_usk.sign(b_body["master_key"], a.user_id)
    bogus = Ed25519Key(a_ssk.public).sign(dk.device_keys(), a.user_id)  # right key ID, wrong key
    r = a.ok("POST", "keys/signatures/upload", {
        a.user_id: {a.device_id: signed_device, a_master.public: signed_own_master},
        b.user_id: {b_master.public: signed_b_master, "NOSUCHKEY": signed_b_master},
    })
    assert list(r["failures"]) == [b.user_id]
    assert r["failures"][b.user_id]["NOSUCHKEY"]["errcode"] == "M_NOT_FOUND"

    device = query(b, a.user_id)["device_keys"][a.user_id][a.device_id]
    assert device["signatures"][a.user_id] == {
        dk.ed25519.key_id: dk.device_keys()["signatures"][a.user_id][dk.ed25519.key_id],
        a_ssk.key_id: signed_device["signatures"][a.user_id][a_ssk.key_id]}
    master_seen_by_b = query(b, a.user_id)["master_keys"][a.user_id]
    assert dk.ed25519.key_id in master_seen_by_b["signatures"][a.user_id]
    # A's user-signing signature on B's master key is for A's eyes only
    c = register(api)
    assert a_usk.key_id in query(a, b.user_id)["master_keys"][b.user_id]["signatures"][a.user_id]
    for other in (b, c):
        assert a.user_id not in query(other, b.user_id)["master_keys"][b.user_id].get("signatures", {})

    r = a.ok("POST", "keys/signatures/upload", {a.user_id: {a.device_id: bogus}})
    assert r["failures"][a.user_id][a.device_id]["errcode"] == "M_INVALID_SIGNATURE"
    tampered = a_ssk.sign({**dk.device_keys(), "algorithms": ["x"]}, a.user_id)
    r = a.ok("POST", "keys/signatures/upload", {a.user_id: {a.device_id: tampered}})
    assert r["failures"][a.user_id][a.device_id]["errcode"] == "M_INVALID_PARAM"

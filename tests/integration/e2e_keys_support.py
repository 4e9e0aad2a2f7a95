"""Test helpers for E2E key tests: correctly signed device, one-time, fallback and cross-signing keys.

Built with signedjson/pynacl directly (no client library), so the tests check the server against the spec's
signing rules, not against one client's habits.
"""

from __future__ import annotations

import base64
import os
import uuid
from typing import Any

from signedjson.key import encode_verify_key_base64, generate_signing_key, get_verify_key
from signedjson.sign import sign_json

from tests.support.client import CS, User

SCS = "signed_curve25519"


def random_curve_key() -> str:
    """A stand-in curve25519 public key (the server never uses it, only stores and relays it)."""
    return base64.b64encode(os.urandom(32)).decode().rstrip("=")


class Ed25519Key:
    """An ed25519 signing key whose key ID is ``ed25519:<key_id>`` (the device ID, or the public key itself)."""

    def __init__(self, key_id: str | None = None) -> None:
        self._key = generate_signing_key("tmp")
        self.public = encode_verify_key_base64(get_verify_key(self._key))
        self._key.version = key_id if key_id is not None else self.public
        self.key_id = f"ed25519:{self._key.version}"

    def sign(self, obj: dict[str, Any], user_id: str) -> dict[str, Any]:
        return sign_json(obj, user_id, self._key)


class DeviceKeys:
    """The keys of one device of ``user_id``."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.ed25519 = Ed25519Key(device_id)
        self.curve25519 = random_curve_key()

    def device_keys(self) -> dict[str, Any]:
        return self.ed25519.sign({
            "user_id": self.user_id, "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {f"curve25519:{self.device_id}": self.curve25519, self.ed25519.key_id: self.ed25519.public},
        }, self.user_id)

    def one_time_keys(self, n: int) -> dict[str, Any]:
        return {f"{SCS}:{uuid.uuid4().hex[:12]}": self.ed25519.sign({"key": random_curve_key()}, self.user_id)
                for _ in range(n)}

    def fallback_key(self) -> dict[str, Any]:
        return {f"{SCS}:{uuid.uuid4().hex[:12]}": self.ed25519.sign({"key": random_curve_key(), "fallback": True},
                                                                    self.user_id)}


def upload(user: User, dk: DeviceKeys | None = None, otks: int = 0, fallback: bool = False) -> dict[str, Any]:
    """Upload keys of ``user``'s device; returns the reply (asserts 200)."""
    dk = dk or DeviceKeys(user.user_id, user.device_id)
    body: dict[str, Any] = {"device_keys": dk.device_keys()}
    if otks:
        body["one_time_keys"] = dk.one_time_keys(otks)
    if fallback:
        body["fallback_keys"] = dk.fallback_key()
    return user.ok("POST", "keys/upload", body)


def claim(claimer: User, owner_user_id: str, owner_device_id: str, algorithm: str = SCS) -> dict[str, Any]:
    """Claim one key of a device; returns ``{key_id: key}`` (empty when none)."""
    r = claimer.ok("POST", "keys/claim", {"one_time_keys": {owner_user_id: {owner_device_id: algorithm}}})
    return r["one_time_keys"].get(owner_user_id, {}).get(owner_device_id, {})


def query(querier: User, user_id: str, devices: list[str] | None = None) -> dict[str, Any]:
    return querier.ok("POST", "keys/query", {"device_keys": {user_id: devices or []}})


def cross_signing_keys(user_id: str) -> tuple[tuple[Ed25519Key, Ed25519Key, Ed25519Key], dict[str, Any]]:
    """New master, self-signing and user-signing keys and the ``/keys/device_signing/upload`` body."""
    master, ssk, usk = Ed25519Key(), Ed25519Key(), Ed25519Key()
    body = {
        "master_key": {"user_id": user_id, "usage": ["master"], "keys": {master.key_id: master.public}},
        "self_signing_key": master.sign({"user_id": user_id, "usage": ["self_signing"],
                                         "keys": {ssk.key_id: ssk.public}}, user_id),
        "user_signing_key": master.sign({"user_id": user_id, "usage": ["user_signing"],
                                         "keys": {usk.key_id: usk.public}}, user_id),
    }
    return (master, ssk, usk), body


def password_auth(user: User, session: str | None) -> dict[str, Any]:
    auth = {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
            "password": user.password}
    if session:
        auth["session"] = session
    return auth


def with_password_uia(user: User, method: str, path: str, body: dict[str, Any]) -> Any:
    """Make a request that needs UIA: expect the 401 with an m.login.password flow, then complete it."""
    r = user.req(method, path, body)
    assert r.status == 401, (r.status, r.json)
    assert any("m.login.password" in f["stages"] for f in r.json["flows"]), r.json
    r = user.req(method, path, {**body, "auth": password_auth(user, r.json.get("session"))})
    assert r.status == 200, (r.status, r.json)
    return r.json


__all__ = ["CS", "SCS", "DeviceKeys", "Ed25519Key", "claim", "cross_signing_keys", "query", "upload",
           "with_password_uia"]


def login(user: User, display_name: str = "second device") -> User:
    """A new device of ``user`` through ``POST /login`` with the password."""
    r = user.api.request("POST", CS + "/login", {
        "type": "m.login.password", "identifier": {"type": "m.id.user", "user": user.user_id},
        "password": user.password, "initial_device_display_name": display_name})
    assert r.status == 200, (r.status, r.json)
    return User(user.api, r.json["user_id"], r.json["access_token"], r.json["device_id"], user.password)

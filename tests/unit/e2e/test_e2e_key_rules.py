"""Pure rules of the E2E area: signature checks on uploaded keys and the key-backup "better session" order."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.handlers.e2e_keys import _public_of, signed_by, strip_signatures
from homeserver.handlers.key_backup import check_key_backup_data, is_better_session
from homeserver.http.errors import BadJsonError
from tests.integration.e2e_keys_support import DeviceKeys, Ed25519Key

USER = "@alice:test.local"


def test_signed_by_accepts_only_the_right_key_over_the_right_content() -> None:
    dk = DeviceKeys(USER, "DEV1")
    keys = dk.device_keys()
    assert signed_by(keys, USER, "ed25519:DEV1", dk.ed25519.public)
    assert not signed_by(keys, "@mallory:test.local", "ed25519:DEV1", dk.ed25519.public)
    assert not signed_by(keys, USER, "ed25519:DEV1", Ed25519Key("DEV1").public)
    tampered = {**keys, "algorithms": ["m.megolm.v1.aes-sha2"]}
    assert not signed_by(tampered, USER, "ed25519:DEV1", dk.ed25519.public)
    assert not signed_by(strip_signatures(keys), USER, "ed25519:DEV1", dk.ed25519.public)
    assert not signed_by(keys, USER, "ed25519:DEV1", "not base64!")
    broken = {**keys, "signatures": {USER: {"ed25519:DEV1": "AAAA"}}}
    assert not signed_by(broken, USER, "ed25519:DEV1", dk.ed25519.public)
    # unsigned data is outside the signature
    assert signed_by({**keys, "unsigned": {"device_display_name": "x"}}, USER, "ed25519:DEV1", dk.ed25519.public)


def test_public_of_cross_signing_key() -> None:
    k = Ed25519Key()
    assert _public_of({"keys": {k.key_id: k.public}}) == k.public
    assert _public_of({"keys": {"ed25519:other": k.public}}) is None
    assert _public_of({"keys": {k.key_id: k.public, "ed25519:x": "x"}}) is None
    assert _public_of({"keys": "nope"}) is None
    assert _public_of(None) is None


metadata = st.fixed_dictionaries({
    "is_verified": st.booleans(),
    "first_message_index": st.integers(0, 5),
    "forwarded_count": st.integers(0, 5),
})


@given(metadata, metadata)
def test_better_session_is_a_strict_order(a: dict, b: dict) -> None:
    """Of two different copies exactly one wins; an identical copy never replaces the stored one."""
    if a == b:
        assert not is_better_session(a, b)
    else:
        assert is_better_session(a, b) != is_better_session(b, a)


@given(metadata, metadata, metadata)
def test_better_session_is_transitive(a: dict, b: dict, c: dict) -> None:
    if is_better_session(a, b) and is_better_session(b, c):
        assert is_better_session(a, c)


def test_better_session_follows_the_spec_priorities() -> None:
    def key(v: bool, fmi: int, fc: int) -> dict:
        return {"is_verified": v, "first_message_index": fmi, "forwarded_count": fc}

    assert is_better_session(key(True, 9, 9), key(False, 0, 0))
    assert is_better_session(key(False, 1, 9), key(False, 2, 0))
    assert is_better_session(key(False, 1, 0), key(False, 1, 1))


@pytest.mark.parametrize("data", [
    None, [], {"first_message_index": 0, "forwarded_count": 0, "is_verified": 0, "session_data": {}},
    {"first_message_index": True, "forwarded_count": 0, "is_verified": False, "session_data": {}},
    {"first_message_index": 0, "forwarded_count": -1, "is_verified": False, "session_data": {}},
    {"first_message_index": 0, "forwarded_count": 0, "is_verified": False, "session_data": "x"},
    {"first_message_index": 2**53, "forwarded_count": 0, "is_verified": False, "session_data": {}},
])
def test_bad_key_backup_data_is_rejected(data: object) -> None:
    with pytest.raises(BadJsonError):
        check_key_backup_data(data, "body")

import base64
import copy
import hashlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from signedjson.key import decode_signing_key_base64, generate_signing_key, get_verify_key

from homeserver.events.hashing import (
    EventSignatureError,
    add_hashes_and_signatures,
    check_content_hash,
    compute_content_hash,
    compute_event_id,
    verify_event_signature,
)
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.http.errors import AuthError

V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]

# Spec, Appendices -> "Signing JSON" / "Signing Events": the example key and the minimal event.
SPEC_KEY = decode_signing_key_base64("ed25519", "1", "YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA1")


def spec_minimal_event() -> dict:
    return {
        "auth_events": [],
        "content": {},
        "depth": 3,
        "origin": "domain",
        "origin_server_ts": 1000000,
        "prev_events": [],
        "room_id": "!x:domain",
        "sender": "@a:domain",
        "signatures": {},
        "type": "X",
        "unsigned": {"age_ts": 1000000},
    }


def test_spec_signing_events_vector() -> None:
    # Values printed in the spec's "Signing Events" example; v10 redaction keeps "origin" like the old versions.
    event = add_hashes_and_signatures(V10, spec_minimal_event(), "domain", SPEC_KEY)
    assert event["hashes"] == {"sha256": "5jM4wQpv6lnBo7CLIghJuHdW+s2CMBJPUOGOC89ncos"}
    assert event["signatures"] == {
        "domain": {
            "ed25519:1": "KxwGjPSDEtvnFgU00fwFz+l6d2pJM6XBIaMEn81SXPTRl16AqLAYqfIReFGZlHi5KLjAWbOoMszkwsQma+lYAg"
        }
    }
    assert event["unsigned"] == {"age_ts": 1000000}


def sample_event() -> dict:
    return {
        "auth_events": ["$create", "$pl"],
        "content": {"body": "disk full on db-1 \u26a0", "msgtype": "m.text", "n": 7},
        "depth": 12,
        "origin_server_ts": 1_700_000_000_123,
        "prev_events": ["$prev"],
        "room_id": "!ops:example.org",
        "sender": "@alertbot:example.org",
        "type": "m.room.message",
        "unsigned": {"age": 5, "transaction_id": "t1"},
        "signatures": {"example.org": {"ed25519:x": "sig"}},
        "hashes": {"sha256": "stale"},
    }


def by_hand_canonical(obj: dict) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def test_content_hash_matches_independent_computation() -> None:
    event = sample_event()
    stripped = {k: v for k, v in event.items() if k not in ("unsigned", "signatures", "hashes")}
    expected = base64.b64encode(hashlib.sha256(by_hand_canonical(stripped)).digest()).decode().rstrip("=")
    assert compute_content_hash(event) == expected
    assert len(expected) == 43


def test_event_id_matches_independent_computation_v10_and_v11() -> None:
    event = sample_event()
    # Redacted form of an m.room.message: only protocol keys, empty content, no signatures/unsigned.
    redacted = {
        k: event[k]
        for k in ("auth_events", "depth", "origin_server_ts", "prev_events", "room_id", "sender", "type", "hashes")
    }
    redacted["content"] = {}
    digest = hashlib.sha256(by_hand_canonical(redacted)).digest()
    expected = "$" + base64.urlsafe_b64encode(digest).decode().rstrip("=")
    assert compute_event_id(V10, event) == expected
    assert compute_event_id(V11, event) == expected


def test_event_id_v10_and_v11_differ_when_redaction_rules_differ() -> None:
    event = sample_event()
    event["type"] = "m.room.create"
    event["content"] = {"creator": "@a:example.org", "room_version": "10", "m.federate": False}
    assert compute_event_id(V10, event) != compute_event_id(V11, event)


def test_event_id_ignores_unsigned_signatures_and_message_content() -> None:
    event = sample_event()
    base = compute_event_id(V10, event)
    event["unsigned"] = {"age": 99999}
    event["signatures"] = {}
    event["content"] = {"body": "different"}
    assert compute_event_id(V10, event) == base
    event["depth"] = 13
    assert compute_event_id(V10, event) != base
    assert "+" not in base and "/" not in base and "=" not in base


def test_check_content_hash() -> None:
    event = sample_event()
    event["hashes"] = {"sha256": compute_content_hash(event)}
    assert check_content_hash(event)
    event["content"]["body"] = "tampered"
    assert not check_content_hash(event)
    assert not check_content_hash({"type": "x"})
    assert not check_content_hash({"hashes": {"sha256": "!!not base64!!"}})


def shuffled(obj: object, rnd) -> object:
    if isinstance(obj, dict):
        items = list(obj.items())
        rnd.shuffle(items)
        return {k: shuffled(v, rnd) for k, v in items}
    if isinstance(obj, list):
        return [shuffled(v, rnd) for v in obj]
    return obj


json_leaf = st.none() | st.booleans() | st.integers(-(2**53 - 1), 2**53 - 1) | st.text(max_size=8)
json_values = st.recursive(
    json_leaf,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=60, deadline=None)
@given(
    content=st.dictionaries(st.text(max_size=6), json_values, max_size=5),
    event_type=st.sampled_from(["m.room.message", "m.room.create", "m.room.power_levels", "m.room.member"]),
    randoms=st.randoms(use_true_random=False),
)
def test_event_id_independent_of_key_order(content: dict, event_type: str, randoms) -> None:
    event = sample_event()
    event["type"] = event_type
    event["content"] = content
    reordered = shuffled(event, randoms)
    for version in (V10, V11):
        assert compute_event_id(version, reordered) == compute_event_id(version, event)
    assert compute_content_hash(reordered) == compute_content_hash(event)


def test_signature_round_trip_and_tamper_detection() -> None:
    key = generate_signing_key("abc")
    verify_key = get_verify_key(key)
    for version in (V10, V11):
        event = sample_event()
        event["signatures"] = {"other.org": {"ed25519:o": "keepme"}}
        add_hashes_and_signatures(version, event, "example.org", key)
        assert set(event["signatures"]) == {"other.org", "example.org"}
        assert list(event["signatures"]["example.org"]) == ["ed25519:abc"]
        verify_event_signature(version, event, "example.org", verify_key)

        # The signature covers only the redacted form: editing message content does not break it...
        edited = copy.deepcopy(event)
        edited["content"]["body"] = "edited"
        verify_event_signature(version, edited, "example.org", verify_key)
        # ...but the content hash (which is signed) catches it.
        assert check_content_hash(event) and not check_content_hash(edited)

        for field, value in (("sender", "@mallory:example.org"), ("depth", 1), ("hashes", {"sha256": "x"})):
            tampered = copy.deepcopy(event)
            tampered[field] = value
            with pytest.raises(EventSignatureError):
                verify_event_signature(version, tampered, "example.org", verify_key)

        with pytest.raises(AuthError):
            verify_event_signature(version, event, "missing.org", verify_key)
        with pytest.raises(AuthError):
            verify_event_signature(version, event, "example.org", get_verify_key(generate_signing_key("abc")))


def test_add_hashes_replaces_stale_hash_and_ignores_unsigned() -> None:
    key = generate_signing_key("1")
    a = sample_event()
    b = sample_event()
    b["unsigned"] = {"something": "else"}
    add_hashes_and_signatures(V11, a, "example.org", key)
    add_hashes_and_signatures(V11, b, "example.org", key)
    assert a["hashes"] == b["hashes"] != {"sha256": "stale"}
    assert a["signatures"]["example.org"] == b["signatures"]["example.org"]

import copy

import pytest
from signedjson.key import get_verify_key

from events_testlib import ALICE, SERVER, SIGNING_KEY
from homeserver.events import DEFAULT_ROOM_VERSION, KNOWN_ROOM_VERSIONS, Event, RoomVersion, prune_event
from homeserver.events.builder import build_event
from homeserver.events.canonical import MAX_PDU_SIZE, encode_canonical_json
from homeserver.events.hashing import check_content_hash, compute_event_id, verify_event_signature
from homeserver.http.errors import BadJsonError, TooLargeError

V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]


def build(version: RoomVersion = V10, **overrides) -> Event:
    kwargs = dict(
        room_id="!r:test", type="m.room.message", sender=ALICE, content={"msgtype": "m.text", "body": "CPU high"},
        prev_event_ids=["$p"], auth_event_ids=["$c", "$m"], depth=5, origin_server_ts=1_700_000_000_000,
        server_name=SERVER, signing_key=SIGNING_KEY,
    )
    kwargs.update(overrides)
    return build_event(version, **kwargs)


def test_room_versions() -> None:
    assert DEFAULT_ROOM_VERSION == "10"
    assert set(KNOWN_ROOM_VERSIONS) == {"10", "11"}
    assert not V10.updated_redaction_rules and V11.updated_redaction_rules
    assert not V10.implicit_room_creator and V11.implicit_room_creator
    for v in (V10, V11):
        assert v.strict_canonicaljson and v.integer_power_levels and v.knock_restricted_join_rule
    with pytest.raises(AttributeError):
        V10.identifier = "x"  # type: ignore[misc]


def test_built_message_pdu_shape_and_id() -> None:
    event = build()
    pdu = event.get_pdu_json()
    assert set(pdu) == {"auth_events", "content", "depth", "hashes", "origin_server_ts", "prev_events", "room_id",
                        "sender", "signatures", "type"}
    assert "event_id" not in pdu
    assert event.event_id == compute_event_id(V10, pdu)
    assert check_content_hash(pdu)
    verify_event_signature(V10, pdu, SERVER, get_verify_key(SIGNING_KEY))
    assert (event.room_id, event.type, event.sender, event.depth) == ("!r:test", "m.room.message", ALICE, 5)
    assert event.state_key is None and not event.is_state()
    assert event.prev_event_ids == ["$p"] and event.auth_event_ids == ["$c", "$m"]
    assert event.origin_server_ts == 1_700_000_000_000
    assert event.redacts is None and event.membership is None
    assert event.internal_metadata == {}


@pytest.mark.parametrize("version", [V10, V11])
def test_built_state_event_id_and_signature_match_independent_computation(version: RoomVersion) -> None:
    # The builder signs and hashes the same redacted bytes once; recomputing each separately must agree.
    event = build(version, type="m.room.power_levels", state_key="", content={"users": {ALICE: 100}, "ban": 50},
                  unsigned={"prev_content": {"users": {}}})
    pdu = event.get_pdu_json()
    assert event.event_id == compute_event_id(version, pdu)
    verify_event_signature(version, pdu, SERVER, get_verify_key(SIGNING_KEY))
    assert event.canonical_json() == encode_canonical_json(pdu)
    replaced = event.canonical_json({"replaces_state": "$old"})
    assert replaced == encode_canonical_json({**pdu, "unsigned": {"replaces_state": "$old"}})
    assert event.canonical_json() == encode_canonical_json(pdu)  # the override is not memoized


def test_event_id_computed_lazily_when_not_given() -> None:
    built = build()
    again = Event(built.get_pdu_json(), V10)
    assert again.event_id == built.event_id
    assert Event(built.get_pdu_json(), V10, "$given").event_id == "$given"


def test_get_pdu_json_is_a_copy() -> None:
    event = build()
    pdu = event.get_pdu_json()
    pdu["content"]["body"] = "changed"
    assert event.content["body"] == "CPU high"


def test_state_event_and_membership() -> None:
    event = build(type="m.room.member", content={"membership": "join"}, state_key=ALICE)
    assert event.is_state() and event.state_key == ALICE and event.membership == "join"
    empty_key = build(type="m.room.topic", content={"topic": "t"}, state_key="")
    assert empty_key.is_state() and empty_key.state_key == ""
    assert empty_key.get_pdu_json()["state_key"] == ""


def test_caller_content_not_mutated() -> None:
    content = {"reason": "spam"}
    build(V11, type="m.room.redaction", content=content, redacts="$target")
    assert content == {"reason": "spam"}


def test_redacts_per_version() -> None:
    v10 = build(V10, type="m.room.redaction", content={"reason": "r"}, redacts="$target")
    assert v10.get_pdu_json()["redacts"] == "$target" and "redacts" not in v10.content
    assert v10.redacts == "$target"
    v11 = build(V11, type="m.room.redaction", content={"reason": "r"}, redacts="$target")
    assert "redacts" not in v11.get_pdu_json() and v11.content["redacts"] == "$target"
    assert v11.redacts == "$target"
    v11_in_content = build(V11, type="m.room.redaction", content={"redacts": "$t2"})
    assert v11_in_content.redacts == "$t2"
    with pytest.raises(BadJsonError):
        build(V10, redacts="$target")


@pytest.mark.parametrize("field", ["room_id", "type", "sender", "state_key"])
def test_id_fields_limited_to_255_bytes(field: str) -> None:
    prefix = "!" if field == "room_id" else "@"
    value_255 = prefix + "a" * (255 - len(prefix) - len(":test")) + ":test"
    assert len(value_255.encode()) == 255
    build(**{field: value_255})
    with pytest.raises(BadJsonError):
        build(**{field: value_255 + "x"})
    # Bytes, not characters: 128 two-byte characters are 256 bytes.
    with pytest.raises(BadJsonError):
        build(**{field: "\u00e9" * 128})


@pytest.mark.parametrize(
    "overrides",
    [
        {"content": {"x": 1.5}},
        {"content": {"x": 2**53}},
        {"content": ["not", "an", "object"]},
        {"depth": -1},
        {"depth": 2**53},
        {"depth": True},
        {"origin_server_ts": 1.0},
        {"prev_event_ids": ["not-an-id"]},
        {"auth_event_ids": "$notalist"},
        {"unsigned": {"x": float("nan")}},
    ],
)
def test_bad_values_rejected(overrides: dict) -> None:
    with pytest.raises(BadJsonError):
        build(**overrides)


def overhead() -> int:
    return len(encode_canonical_json(build(content={"body": ""}).get_pdu_json()))


def test_size_limit_is_on_the_whole_signed_pdu() -> None:
    room = MAX_PDU_SIZE - overhead()
    at_limit = build(content={"body": "x" * room})
    assert len(encode_canonical_json(at_limit.get_pdu_json())) == MAX_PDU_SIZE
    with pytest.raises(TooLargeError) as info:
        build(content={"body": "x" * (room + 1)})
    assert info.value.code == 413 and info.value.errcode == "M_TOO_LARGE"
    with pytest.raises(TooLargeError):
        build(content={"body": "x" * (room - 10)}, unsigned={"pad": "y" * 20})


def test_unsigned_is_kept_but_not_hashed() -> None:
    plain = build()
    with_unsigned = build(unsigned={"age_ts": 5})
    assert with_unsigned.get_pdu_json()["unsigned"] == {"age_ts": 5}
    assert with_unsigned.event_id == plain.event_id


def test_prune_event_keeps_id_and_marks_redacted() -> None:
    event = build(V11)
    event.internal_metadata["stream_ordering"] = 7
    pruned = prune_event(event)
    assert pruned.event_id == event.event_id
    assert pruned.content == {} and pruned.is_redacted() and not event.is_redacted()
    assert pruned.internal_metadata["stream_ordering"] == 7
    assert compute_event_id(V11, pruned.get_pdu_json()) == event.event_id


def test_event_equality_and_slots() -> None:
    a = build()
    b = Event(a.get_pdu_json(), V10)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.arbitrary = 1  # type: ignore[attr-defined]
    assert copy.copy(a.signatures) == a.get_pdu_json()["signatures"]


def test_events_share_repeated_strings_and_keep_their_hashes() -> None:
    """share_pdu_strings interns what events repeat (room, sender, type, auth and prev event IDs): two events
    built from separately made strings end up holding the same objects, and nothing about them changes."""
    from homeserver.events.event import share_pdu_strings

    def fresh(s: str) -> str:
        return "".join(list(s))  # an equal string that is a distinct object

    first = build(room_id=fresh("!shared:test"), auth_event_ids=[fresh("$create"), fresh("$pl")])
    second = build(room_id=fresh("!shared:test"), auth_event_ids=[fresh("$create"), fresh("$pl")],
                   content={"msgtype": "m.text", "body": "disk full"})
    assert first.room_id is second.room_id and first.type is second.type and first.sender is second.sender
    assert all(a is b for a, b in zip(first.auth_event_ids, second.auth_event_ids))
    for event in (first, second):
        pdu = event.get_pdu_json()
        assert check_content_hash(pdu)
        assert compute_event_id(V10, pdu) == event.event_id
    pdu = {"room_id": "!r:test", "type": 5, "auth_events": ["$a", 7], "content": {"room_id": "x"}}
    assert share_pdu_strings(copy.deepcopy(pdu)) == pdu


def test_stored_event_forgets_its_canonical_json_and_recomputes_it_the_same() -> None:
    event = build()
    first = event.canonical_json()
    assert event.canonical_json() is first  # kept until stored
    event.forget_canonical_json()
    again = event.canonical_json()
    assert again == first and again is not first
    assert again == encode_canonical_json(event.get_pdu_json())


def test_a_stored_events_pdu_is_compact_and_equal() -> None:
    """What the event store keeps of a row: share_pdu_strings hands back an equal dict, in the same key order,
    no larger than one built item by item (orjson's own dict is over-allocated)."""
    import sys

    import orjson

    from homeserver.events.event import share_pdu_strings

    raw = build().canonical_json()
    parsed = orjson.loads(raw)
    kept = share_pdu_strings(orjson.loads(raw))
    assert kept == parsed and list(kept) == list(parsed)
    assert sys.getsizeof(kept) <= sys.getsizeof({k: v for k, v in parsed.items()}) < sys.getsizeof(parsed)

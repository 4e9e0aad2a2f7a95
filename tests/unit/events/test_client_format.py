import pytest

from events_testlib import ALICE, CAROL, Room
from homeserver.events.client_format import filter_event_fields, serialize_event, split_field_path
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]


def room_with_message(version=V10):
    room = Room(version, join_rule="public")
    room.send("m.room.member", CAROL, {"membership": "join"}, CAROL)
    message = room.send("m.room.message", CAROL, {"msgtype": "m.text", "body": "ack", "m.relates_to": {"x": 1}})
    return room, message


def test_client_event_shape() -> None:
    _, message = room_with_message()
    message.internal_metadata["unsigned"] = {"transaction_id": "txn1"}
    out = serialize_event(message, message.origin_server_ts + 1500)
    assert out == {
        "content": {"msgtype": "m.text", "body": "ack", "m.relates_to": {"x": 1}},
        "event_id": message.event_id,
        "origin_server_ts": message.origin_server_ts,
        "room_id": "!room:test",
        "sender": CAROL,
        "type": "m.room.message",
        "unsigned": {"age": 1500, "transaction_id": "txn1"},
    }
    without_room = serialize_event(message, message.origin_server_ts, include_room_id=False)
    assert "room_id" not in without_room and without_room["unsigned"] == {"age": 0, "transaction_id": "txn1"}


def test_state_event_and_unsigned_extra_overrides() -> None:
    room, _ = room_with_message()
    topic = room.send("m.room.topic", ALICE, {"topic": "new"}, "")
    topic.internal_metadata["unsigned"] = {"replaces_state": "$old", "membership": "leave"}
    out = serialize_event(topic, topic.origin_server_ts + 1,
                          unsigned_extra={"prev_content": {"topic": "old"}, "membership": "join"})
    assert out["state_key"] == ""
    assert out["unsigned"] == {"age": 1, "replaces_state": "$old", "prev_content": {"topic": "old"},
                               "membership": "join"}
    # Serialising does not write into the event.
    out["content"]["topic"] = "changed"
    assert topic.content == {"topic": "new"}
    assert topic.internal_metadata["unsigned"] == {"replaces_state": "$old", "membership": "leave"}


@pytest.mark.parametrize("version", [V10, V11], ids=["v10", "v11"])
def test_redaction_has_top_level_redacts_for_clients(version) -> None:
    room, message = room_with_message(version)
    redaction = room.make("m.room.redaction", CAROL, {"reason": "typo"}, redacts=message.event_id)
    out = serialize_event(redaction, redaction.origin_server_ts)
    assert out["redacts"] == message.event_id
    assert ("redacts" in out["content"]) == (version is V11)


def test_federation_format_is_pdu_plus_event_id() -> None:
    _, message = room_with_message()
    out = serialize_event(message, message.origin_server_ts + 7, event_format="federation")
    pdu = message.get_pdu_json()
    assert out.pop("event_id") == message.event_id
    assert out.pop("unsigned") == {"age": 7}
    assert out == pdu
    with pytest.raises(ValueError):
        serialize_event(message, 0, event_format="nope")


def test_split_field_path_escapes() -> None:
    assert split_field_path("content.body") == ["content", "body"]
    assert split_field_path(r"content.m\.relates_to") == ["content", "m.relates_to"]
    assert split_field_path(r"content.back\\.slash") == ["content", "back\\", "slash"]
    assert split_field_path(r"a\b") == ["a\\b"]
    assert split_field_path("type") == ["type"]


def test_event_fields_filter() -> None:
    _, message = room_with_message()
    out = serialize_event(message, message.origin_server_ts + 3,
                          event_fields=["type", "content.body", r"content.m\.relates_to", "unsigned.age",
                                        "content.missing", "type.not_an_object"])
    assert out == {"type": "m.room.message", "content": {"body": "ack", "m.relates_to": {"x": 1}},
                   "unsigned": {"age": 3}}
    assert serialize_event(message, 0, event_fields=[]) == {}
    assert filter_event_fields({"content": {"m.relates_to": {"x": 1}}}, [r"content.m\.relates_to.x"]) == {
        "content": {"m.relates_to": {"x": 1}}}


def test_filter_returns_copies() -> None:
    source = {"content": {"nested": {"a": 1}}}
    out = filter_event_fields(source, ["content.nested"])
    out["content"]["nested"]["a"] = 2
    assert source["content"]["nested"]["a"] == 1

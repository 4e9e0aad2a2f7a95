"""Filters: validation of uploaded filter JSON and applying filters to room events and dict events."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from homeserver.events.event import Event
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.handlers.filtering import DEFAULT_TIMELINE_LIMIT, Filter, parse_filter_param, validate_filter
from homeserver.http.errors import BadJsonError, InvalidParamError

ROOM_VERSION = KNOWN_ROOM_VERSIONS["10"]


def ev(type_: str, sender: str = "@a:x", room_id: str = "!r:x", content: dict | None = None,
       state_key: str | None = None) -> Event:
    pdu = {"type": type_, "sender": sender, "room_id": room_id, "content": content or {}, "depth": 1,
           "origin_server_ts": 1, "prev_events": [], "auth_events": [], "hashes": {"sha256": "x"},
           "signatures": {}}
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(pdu, ROOM_VERSION, event_id=f"${type_}{sender}{room_id}")


def test_defaults() -> None:
    f = Filter()
    assert f.room_timeline_limit == DEFAULT_TIMELINE_LIMIT
    assert (f.lazy_load_members, f.include_leave, f.event_fields, f.event_format) == (False, False, None, "client")
    assert (f.rooms, f.not_rooms, f.unread_thread_notifications) == (None, [], False)
    events = [ev("m.room.message"), ev("m.reaction")]
    assert f.filter_room_timeline(events) == events


def test_attributes_from_json() -> None:
    f = Filter({"room": {"timeline": {"limit": 3, "unread_thread_notifications": True},
                         "state": {"lazy_load_members": True}, "include_leave": True, "rooms": ["!a:x"]},
                "event_fields": ["content.body"], "event_format": "federation"})
    assert f.room_timeline_limit == 3 and f.lazy_load_members and f.include_leave
    assert f.unread_thread_notifications and f.event_fields == ["content.body"]
    assert f.event_format == "federation" and f.rooms == ["!a:x"]
    assert f.is_room_included("!a:x") and not f.is_room_included("!b:x")


def test_types_with_globs_and_not_types_win() -> None:
    f = Filter({"room": {"timeline": {"types": ["m.room.*", "org.example.alert"], "not_types": ["m.room.member"]}}})
    events = [ev("m.room.message"), ev("m.room.member", state_key="@a:x"), ev("org.example.alert"),
              ev("org.example.alerts"), ev("m.reaction")]
    assert [e.type for e in f.filter_room_timeline(events)] == ["m.room.message", "org.example.alert"]
    # an empty types list allows nothing
    assert Filter({"room": {"timeline": {"types": []}}}).filter_room_timeline(events) == []


def test_senders_rooms_and_contains_url() -> None:
    f = Filter({"room": {"not_rooms": ["!muted:x"],
                         "timeline": {"senders": ["@a:x", "@b:x"], "not_senders": ["@b:x"], "contains_url": True}}})
    events = [ev("m.room.message", "@a:x", content={"url": "mxc://x/y"}),
              ev("m.room.message", "@a:x", content={"body": "no url"}),
              ev("m.room.message", "@b:x", content={"url": "mxc://x/z"}),
              ev("m.room.message", "@c:x", content={"url": "mxc://x/w"}),
              ev("m.room.message", "@a:x", room_id="!muted:x", content={"url": "mxc://x/v"})]
    assert f.filter_room_timeline(events) == [events[0]]
    no_url = Filter({"room": {"timeline": {"contains_url": False}}})
    assert no_url.filter_room_timeline(events[:2]) == [events[1]]


def test_state_filter_is_separate_from_timeline() -> None:
    f = Filter({"room": {"state": {"types": ["m.room.name"]}, "timeline": {"types": ["m.room.message"]}}})
    state = [ev("m.room.name", state_key=""), ev("m.room.topic", state_key="")]
    assert [e.type for e in f.filter_room_state(state)] == ["m.room.name"]


def test_dict_events_presence_account_data_ephemeral() -> None:
    f = Filter({"presence": {"senders": ["@a:x"], "limit": 1},
                "account_data": {"not_types": ["m.push_rules"]},
                "room": {"ephemeral": {"types": ["m.typing"]}, "account_data": {"types": ["m.tag"]},
                         "rooms": ["!r:x"]}})
    presence = [{"type": "m.presence", "sender": "@a:x", "content": {}},
                {"type": "m.presence", "sender": "@b:x", "content": {}},
                {"type": "m.presence", "sender": "@a:x", "content": {"x": 1}}]
    assert f.filter_presence(presence) == [presence[0]]
    data = [{"type": "m.push_rules", "content": {}}, {"type": "m.direct", "content": {}}]
    assert f.filter_account_data(data) == [data[1]]
    ephemeral = [{"type": "m.typing", "content": {}}, {"type": "m.receipt", "content": {}}]
    assert f.filter_room_ephemeral(ephemeral, "!r:x") == [ephemeral[0]]
    assert f.filter_room_ephemeral(ephemeral, "!other:x") == []
    room_data = [{"type": "m.tag", "content": {}}, {"type": "m.fully_read", "content": {}}]
    assert f.filter_room_account_data(room_data, "!r:x") == [room_data[0]]


@pytest.mark.parametrize("bad", [
    [], {"event_format": "xml"}, {"event_fields": [1]}, {"presence": {"limit": True}},
    {"presence": {"limit": 1.5}}, {"account_data": {"types": "m.direct"}}, {"room": {"not_rooms": "!a:x"}},
    {"room": {"timeline": {"contains_url": "yes"}}}, {"room": {"ephemeral": []}}, {"room": {"timeline": {"limit": -2}}},
])
def test_invalid_filters(bad: object) -> None:
    with pytest.raises(BadJsonError):
        validate_filter(bad)


def test_valid_filter_with_unknown_keys() -> None:
    validate_filter({"room": {"timeline": {"limit": 0, "org.example": 1}}, "org.example.future": True})


def test_inline_filter_param() -> None:
    assert parse_filter_param("12") is None
    assert parse_filter_param('{"room": {"timeline": {"limit": 5}}}') == {"room": {"timeline": {"limit": 5}}}
    with pytest.raises(InvalidParamError):
        parse_filter_param("{nope")
    with pytest.raises(BadJsonError):
        parse_filter_param('{"room": 5}')


_word = st.text(alphabet="abc.", min_size=1, max_size=6)


@given(types=st.lists(_word, max_size=4), not_types=st.lists(_word, max_size=4),
       event_types=st.lists(_word, max_size=8))
def test_type_filter_matches_definition(types: list[str], not_types: list[str], event_types: list[str]) -> None:
    """Without globs: an event passes iff its type is listed in types and not in not_types."""
    f = Filter({"room": {"timeline": {"types": types, "not_types": not_types}}})
    events = [ev(t) for t in event_types]
    expected = [e for e in events if e.type in types and e.type not in not_types]
    assert f.filter_room_timeline(events) == expected


@given(prefix=_word, suffix=_word)
def test_star_matches_any_suffix(prefix: str, suffix: str) -> None:
    f = Filter({"account_data": {"types": [prefix + "*"]}})
    assert f.filter_account_data([{"type": prefix + suffix}]) == [{"type": prefix + suffix}]
    assert f.filter_account_data([{"type": prefix}]) == [{"type": prefix}]

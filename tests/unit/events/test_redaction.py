import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from homeserver.events.redaction import prune_event_dict
from homeserver.events.room_versions import KNOWN_ROOM_VERSIONS

V10 = KNOWN_ROOM_VERSIONS["10"]
V11 = KNOWN_ROOM_VERSIONS["11"]

BASE = {
    "auth_events": ["$a"],
    "depth": 4,
    "hashes": {"sha256": "h"},
    "origin": "test",
    "origin_server_ts": 1234,
    "prev_events": ["$p"],
    "prev_state": [],
    "membership": "join",
    "room_id": "!r:test",
    "sender": "@alice:test",
    "signatures": {"test": {"ed25519:1": "s"}},
    "unsigned": {"age": 3},
    "event_id": "$legacy",
    "extra_top_level": "dropped",
    "redacts": "$old",
}
COMMON_V11 = {"auth_events", "depth", "hashes", "origin_server_ts", "prev_events", "room_id", "sender",
              "signatures", "event_id", "type", "content"}


def event(type_: str, content: dict, state_key: str | None = "") -> dict:
    e = copy.deepcopy(BASE)
    e["type"] = type_
    e["content"] = copy.deepcopy(content)
    if state_key is not None:
        e["state_key"] = state_key
    return e


def test_top_level_keys_per_version() -> None:
    e = event("m.room.message", {"body": "hi"}, None)
    assert set(prune_event_dict(V10, e)) == COMMON_V11 | {"origin", "prev_state", "membership"}
    assert set(prune_event_dict(V11, e)) == COMMON_V11
    # "redacts" and "unsigned" are never kept at top level, in either version.
    for version in (V10, V11):
        pruned = prune_event_dict(version, e)
        assert "redacts" not in pruned and "unsigned" not in pruned and "extra_top_level" not in pruned
        assert pruned["content"] == {}


MEMBER = {
    "membership": "invite",
    "displayname": "Bob",
    "avatar_url": "mxc://x/y",
    "join_authorised_via_users_server": "@alice:test",
    "third_party_invite": {"display_name": "b***", "signed": {"mxid": "@bob:test", "token": "t", "signatures": {}}},
    "reason": "on-call",
}
CREATE = {"creator": "@alice:test", "room_version": "11", "m.federate": False, "type": "m.space", "predecessor": {}}
POWER = {"ban": 50, "events": {"m.room.name": 100}, "events_default": 0, "invite": 0, "kick": 50, "redact": 50,
         "state_default": 50, "users": {"@alice:test": 100}, "users_default": 0, "notifications": {"room": 50},
         "historical": 100}


@pytest.mark.parametrize(
    "type_, content, state_key, v10_content, v11_content",
    [
        ("m.room.member", MEMBER, "@bob:test",
         {"membership": "invite", "join_authorised_via_users_server": "@alice:test"},
         {"membership": "invite", "join_authorised_via_users_server": "@alice:test",
          "third_party_invite": {"signed": {"mxid": "@bob:test", "token": "t", "signatures": {}}}}),
        ("m.room.create", CREATE, "", {"creator": "@alice:test"}, CREATE),
        ("m.room.join_rules", {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}], "x": 1}, "",
         {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]},
         {"join_rule": "restricted", "allow": [{"type": "m.room_membership"}]}),
        ("m.room.power_levels", POWER, "",
         {k: v for k, v in POWER.items() if k not in ("invite", "notifications", "historical")},
         {k: v for k, v in POWER.items() if k not in ("notifications", "historical")}),
        ("m.room.history_visibility", {"history_visibility": "shared", "x": 1}, "",
         {"history_visibility": "shared"}, {"history_visibility": "shared"}),
        ("m.room.redaction", {"redacts": "$target", "reason": "spam"}, None, {}, {"redacts": "$target"}),
        ("m.room.aliases", {"aliases": ["#a:test"]}, "test", {}, {}),
        ("m.room.name", {"name": "Incidents"}, "", {}, {}),
        ("m.room.member", {"displayname": "no membership"}, "@bob:test", {}, {}),
    ],
)
def test_content_kept_per_version(type_, content, state_key, v10_content, v11_content) -> None:
    e = event(type_, content, state_key)
    original = copy.deepcopy(e)
    assert prune_event_dict(V10, e)["content"] == v10_content
    assert prune_event_dict(V11, e)["content"] == v11_content
    assert e == original  # input untouched


def test_pruned_is_a_deep_copy() -> None:
    e = event("m.room.create", CREATE)
    pruned = prune_event_dict(V11, e)
    pruned["content"]["predecessor"]["room_id"] = "!changed:test"
    pruned["signatures"]["test"]["ed25519:1"] = "changed"
    assert e["content"]["predecessor"] == {} and e["signatures"]["test"]["ed25519:1"] == "s"


def test_missing_or_bad_content_becomes_empty() -> None:
    e = event("m.room.message", {}, None)
    del e["content"]
    assert prune_event_dict(V10, e)["content"] == {}
    e["content"] = "not an object"
    assert prune_event_dict(V11, e)["content"] == {}


json_leaf = st.none() | st.booleans() | st.integers(-10, 10) | st.text(max_size=4)
json_values = st.recursive(json_leaf, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c,
                                                                                           max_size=3), max_leaves=8)
content_keys = st.sampled_from(["membership", "join_authorised_via_users_server", "third_party_invite", "creator",
                                "join_rule", "allow", "ban", "invite", "users", "redacts", "history_visibility",
                                "body", "signed"]) | st.text(max_size=4)


@settings(max_examples=150, deadline=None)
@given(
    type_=st.sampled_from(["m.room.member", "m.room.create", "m.room.join_rules", "m.room.power_levels",
                           "m.room.history_visibility", "m.room.redaction", "m.room.message", "m.room.aliases"]),
    content=st.dictionaries(content_keys, json_values, max_size=6),
    top=st.dictionaries(st.sampled_from(list(BASE) + ["state_key", "x"]), json_values, max_size=8),
    version=st.sampled_from([V10, V11]),
)
def test_prune_is_idempotent(type_, content, top, version) -> None:
    e = dict(top)
    e["type"] = type_
    e["content"] = content
    once = prune_event_dict(version, e)
    assert prune_event_dict(version, once) == once
    # Pruning never invents keys.
    assert set(once) <= set(e) | {"content"}
    assert set(once["content"]) <= set(content)

"""Each push condition kind, its edge cases, and the action helpers."""

from __future__ import annotations

from typing import Any

import pytest

from homeserver.push import PushRuleEvaluator, actions_to_counts, actions_to_tweaks
from homeserver.push.evaluator import MISSING, compile_glob, parse_member_count, split_property_path
from push_testlib import ALICE, BOB, ROOM, message, state


def matches(event: dict[str, Any], condition: dict[str, Any], **kwargs: Any) -> bool:
    evaluator = PushRuleEvaluator(
        event,
        kwargs.get("member_count", 5),
        kwargs.get("sender_level", 0),
        kwargs.get("power_levels", {}),
    )
    rule = {"rule_id": "r", "actions": ["notify"], "conditions": [condition]}
    return evaluator.run([rule], ALICE, kwargs.get("display_name")) == ["notify"]


def body_match(body: str, pattern: str) -> bool:
    return matches(message(body), {"kind": "event_match", "key": "content.body", "pattern": pattern})


def topic_match(topic: Any, pattern: str) -> bool:
    event = state("m.room.topic", "", {"topic": topic})
    return matches(event, {"kind": "event_match", "key": "content.topic", "pattern": pattern})


# --- event_match -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic,expected",
    [("Lunch plans", True), ("LUNCH", True), (" lunch", False), ("lunc", False), (None, False), (42, False)],
)
def test_event_match_whole_value_spec_examples(topic: Any, expected: bool) -> None:
    assert topic_match(topic, "lunc?*") is expected


@pytest.mark.parametrize(
    "body,expected",
    [
        ("An example event.", True),
        ("exple", True),
        ("An exciting triple-whammy", True),
        ("An examples event", False),  # ends inside a word
        ("counterexample", False),  # starts inside a word
        ("", False),
    ],
)
def test_event_match_body_spec_examples(body: str, expected: bool) -> None:
    assert body_match(body, "ex*ple") is expected


@pytest.mark.parametrize(
    "body,pattern,expected",
    [
        ("the DB is down", "db", True),
        ("dbadmin paged", "db", False),
        ("paged db_admin", "db", False),  # _ is a word character
        ("db-admin paged", "db", True),  # - is not
        ("prod-db", "db", True),
        ("dbx", "db?", True),
        ("db", "db?", False),
        ("checkout: 500 errors", "500 err*", True),
        ("line one\nline two", "one*two", True),  # * crosses newlines
        ("x@room", "@room", False),
        ("hey, @room!", "@room", True),
        ("grün", "gr", False),  # Unicode letters are word characters
        ("Zoë is on call", "zoë", True),
        ("ZOË is on call", "zoë", True),
        ("café", "caf?", True),
        ("a.b", "a.b", True),
        ("axb", "a.b", False),  # regex metacharacters are literal
        ("cost [high]", "[high]", True),  # [ and ] are literal; a space before and the end after are boundaries
        ("cost [high]", "[hig]", False),
    ],
)
def test_event_match_body_word_boundaries(body: str, pattern: str, expected: bool) -> None:
    assert body_match(body, pattern) is expected


@pytest.mark.parametrize(
    "value,pattern,expected",
    [
        ("m.room.message", "m.room.message", True),
        ("m.room.message", "M.ROOM.MESSAGE", True),
        ("m.room.message", "m.room.*", True),
        ("m.room.message", "m.room", False),
        ("m.room.message", "*message", True),
        ("m.room.message", "*mess", False),
        ("m.room.message", "m*e*e", True),
        ("m.room.message", "m*z*e", False),
        ("abc", "a**c", True),
        ("ac", "a*?c", False),
        ("abc", "a*?c", True),
        ("aXbXc", "a*b*c", True),
        ("ab", "ab*ab", False),  # segments must not overlap
        ("abab", "ab*ab", True),
        ("", "*", True),
        ("", "", True),
        ("x", "", False),
        ("m.room.message", "m.room.messag?", True),
        ("m.room.message", "??????????????", True),
        ("m.room.message", "?????????????", False),
    ],
)
def test_event_match_globs_on_whole_value(value: str, pattern: str, expected: bool) -> None:
    assert compile_glob(pattern, False)(value) is expected
    event = {"type": value, "content": {}, "sender": BOB, "room_id": ROOM}
    assert matches(event, {"kind": "event_match", "key": "type", "pattern": pattern}) is expected


def test_event_match_needs_a_string_value_even_for_star() -> None:
    event = message("x", count=3, flag=True, nested={"a": "b"}, items=["a"])
    for key in ("content.count", "content.flag", "content.nested", "content.items", "content.absent"):
        assert not matches(event, {"kind": "event_match", "key": key, "pattern": "*"})


def test_event_match_glob_is_linear_on_hostile_bodies() -> None:
    body = "a " * 30000  # 60 kB of boundaries without the final segment
    assert compile_glob("a*a*a*b", True)(body) is False
    assert compile_glob("*a*b*", False)(body) is False


def test_state_key_empty_pattern_matches_only_empty_state_key() -> None:
    condition = {"kind": "event_match", "key": "state_key", "pattern": ""}
    assert matches(state("m.room.name", "", {"name": "x"}), condition)
    assert not matches(state("m.room.name", "a", {"name": "x"}), condition)
    assert not matches(message("no state key"), condition)


def test_event_match_on_pdu_format() -> None:
    pdu = {
        "type": "m.room.message",
        "content": {"body": "disk full on db1", "msgtype": "m.text"},
        "sender": BOB,
        "room_id": ROOM,
        "auth_events": ["$a", "$b"],
        "prev_events": ["$p"],
        "depth": 12,
        "hashes": {"sha256": "abc"},
        "signatures": {"example.com": {"ed25519:a": "sig"}},
        "origin_server_ts": 1,
    }
    assert matches(pdu, {"kind": "event_match", "key": "content.body", "pattern": "db1"})
    assert matches(pdu, {"kind": "event_match", "key": "hashes.sha256", "pattern": "ABC"})


# --- dotted keys -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key,parts",
    [
        ("content.body", ("content", "body")),
        ("content.m\\.mentions.room", ("content", "m.mentions", "room")),
        ("content.a\\\\.b", ("content", "a\\", "b")),
        ("content.a\\\\\\.b", ("content", "a\\.b")),
        ("content.a\\b", ("content", "a\\b")),  # lone backslash before another character stays literal
        ("type", ("type",)),
        ("content.", ("content", "")),
    ],
)
def test_split_property_path(key: str, parts: tuple[str, ...]) -> None:
    assert split_property_path(key) == parts


def test_escaped_dots_reach_keys_with_dots() -> None:
    event = message("x", **{"m.federate": True, "m": {"federate": False}, "back\\slash": "yes"})
    evaluator = PushRuleEvaluator(event, 2, 0, {})
    assert evaluator.value_at("content.m\\.federate") is True
    assert evaluator.value_at("content.m.federate") is False
    assert evaluator.value_at("content.back\\\\slash") == "yes"
    assert evaluator.value_at("content.nope") is MISSING
    assert evaluator.value_at("content.body.length") is MISSING


# --- event_property_is / event_property_contains -----------------------------------------------------------------


def prop_is(event: dict[str, Any], key: str, value: Any) -> bool:
    return matches(event, {"kind": "event_property_is", "key": key, "value": value})


def test_event_property_is_spec_example_and_no_casting() -> None:
    create = state("m.room.create", "", {"m.federate": True, "room_version": "11"})
    assert prop_is(create, "content.m\\.federate", True)
    assert not prop_is(create, "content.m\\.federate", "true")
    assert not prop_is(create, "content.m\\.federate", 1)
    assert prop_is(create, "content.room_version", "11")
    assert not prop_is(create, "content.room_version", 11)


def test_event_property_is_ints_null_and_compound_values() -> None:
    event = message("x", level=1, nothing=None, flag=False, items=["a"], obj={"a": 1})
    assert prop_is(event, "content.level", 1)
    assert not prop_is(event, "content.level", True)
    assert not prop_is(event, "content.flag", 0)
    assert prop_is(event, "content.flag", False)
    assert prop_is(event, "content.nothing", None)
    assert not prop_is(event, "content.absent", None)  # absent is not null
    assert not prop_is(event, "content.items", ["a"])
    assert not prop_is(event, "content.obj", {"a": 1})
    assert not prop_is(event, "content.body", "X")  # exact, case-sensitive


def test_event_property_is_without_value_never_matches() -> None:
    assert not matches(message("x", nothing=None), {"kind": "event_property_is", "key": "content.nothing"})


def prop_contains(event: dict[str, Any], key: str, value: Any) -> bool:
    return matches(event, {"kind": "event_property_contains", "key": key, "value": value})


def test_event_property_contains_spec_example() -> None:
    aliases = state(
        "m.room.canonical_alias",
        "",
        {"alias": "#somewhere:localhost", "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"]},
    )
    assert prop_contains(aliases, "content.alt_aliases", "#myroom:example.com")
    assert not prop_contains(aliases, "content.alt_aliases", ":example.com")
    assert not prop_contains(aliases, "content.alias", "#somewhere:localhost")  # not an array


def test_event_property_contains_types_exactly() -> None:
    event = message("x", mixed=[1, "2", True, None, {"a": 1}, [3], 2.5])
    assert prop_contains(event, "content.mixed", 1)
    assert prop_contains(event, "content.mixed", "2")
    assert not prop_contains(event, "content.mixed", 2)
    assert prop_contains(event, "content.mixed", True)
    assert prop_contains(event, "content.mixed", None)
    assert not prop_contains(event, "content.mixed", 3)
    bools = message("x", flags=[True])
    assert not prop_contains(bools, "content.flags", 1)
    assert not prop_contains(message("x", ints=[1]), "content.ints", True)


# --- contains_display_name ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body,name,expected",
    [
        ("Dana, can you take this?", "Dana", True),
        ("dana can you take this", "Dana", True),
        ("Danae can you take this", "Dana", False),
        ("ping *Ops* team", "*Ops*", True),
        ("ping XOpsX team", "*Ops*", False),  # the display name is literal, not a glob
        ("ping O? team", "O?", True),
        ("ping Ox team", "O?", False),
        ("Zoë: disk", "Zoë", True),
        ("anything", "", False),
        ("   ", " ", False),
        ("hello", None, False),
    ],
)
def test_contains_display_name(body: str, name: str | None, expected: bool) -> None:
    assert matches(message(body), {"kind": "contains_display_name"}, display_name=name) is expected


def test_contains_display_name_needs_a_string_body() -> None:
    event = {"type": "m.room.message", "content": {"body": 5}, "sender": BOB, "room_id": ROOM}
    assert not matches(event, {"kind": "contains_display_name"}, display_name="5")


# --- room_member_count -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "is_value,count,expected",
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("<2", 1, True),
        ("<2", 2, False),
        ("<=2", 2, True),
        (">2", 3, True),
        (">2", 2, False),
        (">=10", 10, True),
        (">=10", 9, False),
        ("=2", 2, False),
        ("2.0", 2, False),
        ("", 0, False),
        ("-1", 0, False),
        (" 2", 2, False),
        ("two", 2, False),
        ("!=2", 3, False),
    ],
)
def test_room_member_count(is_value: str, count: int, expected: bool) -> None:
    assert matches(message("x"), {"kind": "room_member_count", "is": is_value}, member_count=count) is expected


def test_parse_member_count() -> None:
    assert parse_member_count("2") == ("==", 2)
    assert parse_member_count(">=10") == (">=", 10)
    assert parse_member_count("<") is None


def test_room_member_count_needs_a_string() -> None:
    assert not matches(message("x"), {"kind": "room_member_count", "is": 2}, member_count=2)


# --- sender_notification_permission ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "levels,sender_level,expected",
    [
        ({}, 50, True),  # default notifications.room is 50
        ({}, 49, False),
        ({"notifications": {"room": 0}}, 0, True),
        ({"notifications": {"room": 100}}, 99, False),
        ({"notifications": {"room": "20"}}, 20, True),  # pre-v10 rooms allow string levels
        ({"notifications": {"room": "junk"}}, 49, False),
        ({"notifications": "junk"}, 50, True),
        ({"notifications": {"other": 0}}, 49, False),
    ],
)
def test_sender_notification_permission(levels: dict[str, Any], sender_level: int, expected: bool) -> None:
    condition = {"kind": "sender_notification_permission", "key": "room"}
    assert matches(message("x"), condition, sender_level=sender_level, power_levels=levels) is expected


# --- unknown conditions, rule handling ---------------------------------------------------------------------------


def test_unknown_or_malformed_conditions_never_match() -> None:
    for condition in (
        {"kind": "org.example.shiny"},
        {"kind": "event_match", "key": "type"},
        {"kind": "event_match", "pattern": "*"},
        {"kind": "event_match", "key": 1, "pattern": "*"},
        {"key": "type", "pattern": "*"},
        {"kind": "sender_notification_permission"},
    ):
        assert not matches(message("x"), condition, sender_level=100), condition


def test_first_matching_rule_wins_and_disabled_rules_are_skipped() -> None:
    evaluator = PushRuleEvaluator(message("x"), 5, 0, {})
    rules = [
        {"rule_id": "off", "enabled": False, "actions": ["notify", {"set_tweak": "sound", "value": "a"}], "conditions": []},
        {"rule_id": "first", "actions": ["notify", {"set_tweak": "sound", "value": "b"}], "conditions": []},
        {"rule_id": "second", "actions": ["notify"], "conditions": []},
    ]
    assert evaluator.match(rules, ALICE, None)["rule_id"] == "first"  # type: ignore[index]
    assert evaluator.run(rules, ALICE, None) == ["notify", {"set_tweak": "sound", "value": "b"}]


def test_run_returns_none_for_no_match_and_for_suppressing_rules() -> None:
    evaluator = PushRuleEvaluator(message("x"), 5, 0, {})
    assert evaluator.run([], ALICE, None) is None
    assert evaluator.run([{"rule_id": "mute", "actions": [], "conditions": []}], ALICE, None) is None
    legacy = [{"rule_id": "mute", "actions": ["dont_notify"], "conditions": []}]
    assert evaluator.run(legacy, ALICE, None) is None
    coalesce = [{"rule_id": "c", "actions": ["coalesce", "notify"], "conditions": []}]
    assert evaluator.run(coalesce, ALICE, None) == ["notify"]


def test_rules_without_explicit_conditions() -> None:
    evaluator = PushRuleEvaluator(message("db down"), 5, 0, {})
    assert evaluator.run([{"rule_id": "kw", "pattern": "DB", "actions": ["notify"]}], ALICE, None) == ["notify"]
    assert evaluator.run([{"rule_id": ROOM, "kind": "room", "actions": ["notify"]}], ALICE, None) == ["notify"]
    other_room = [{"rule_id": "!other:example.com", "kind": "room", "actions": ["notify"]}]
    assert evaluator.run(other_room, ALICE, None) is None
    assert evaluator.run([{"rule_id": BOB, "kind": "sender", "actions": ["notify"]}], ALICE, None) == ["notify"]


def test_one_evaluator_serves_many_users() -> None:
    event = state("m.room.member", "@u7:example.com", {"membership": "invite"})
    evaluator = PushRuleEvaluator(event, 10, 0, {})
    invited = []
    for n in range(20):
        user = f"@u{n}:example.com"
        rules = [
            {
                "rule_id": "invite",
                "actions": ["notify"],
                "conditions": [
                    {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
                    {"kind": "event_match", "key": "state_key", "pattern": user},
                ],
            }
        ]
        if evaluator.run(rules, user, None):
            invited.append(user)
    assert invited == ["@u7:example.com"]


# --- actions -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actions,counts",
    [
        (None, (False, False)),
        ([], (False, False)),
        (["notify"], (True, False)),
        (["dont_notify"], (False, False)),
        (["coalesce"], (False, False)),
        (["notify", {"set_tweak": "highlight"}], (True, True)),
        (["notify", {"set_tweak": "highlight", "value": True}], (True, True)),
        (["notify", {"set_tweak": "highlight", "value": False}], (True, False)),
        ([{"set_tweak": "highlight"}], (False, False)),
        (["notify", {"set_tweak": "sound", "value": "default"}], (True, False)),
        (["notify", {"set_tweak": "highlight"}, {"set_tweak": "highlight", "value": False}], (True, False)),
    ],
)
def test_actions_to_counts(actions: list[Any] | None, counts: tuple[bool, bool]) -> None:
    assert actions_to_counts(actions) == counts


def test_actions_to_tweaks() -> None:
    actions = ["notify", {"set_tweak": "sound", "value": "ring"}, {"set_tweak": "highlight"}, "dont_notify"]
    assert actions_to_tweaks(actions) == {"sound": "ring", "highlight": True}
    assert actions_to_tweaks(["notify"]) == {}
